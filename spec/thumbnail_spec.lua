-- The seed article's job end to end: examples/thumbnail.lua turns a JPEG into
-- a 120x120 thumbnail in a box built from debian-gm:local (scripts/setup.sh).
local helper = require "helper"
local C = require "support.compat"

-- Width and height from a JPEG's start-of-frame segment, decoded here on the
-- host (not by the tool that made it); nil, why if it is not a JPEG.
local function jpeg_size(data)
  if data:sub(1, 2) ~= "\255\216" then return nil, "no SOI marker" end
  local i = 3
  while i + 8 <= #data do
    if data:byte(i) ~= 0xFF then return nil, "bad marker at byte " .. i end
    local marker = data:byte(i + 1)
    if marker == 0xFF then
      i = i + 1 -- fill byte
    else
      local len = C.bin_unpack(">I2", data, i + 2)
      -- SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC)
      if marker >= 0xC0 and marker <= 0xCF and marker ~= 0xC4 and marker ~= 0xC8 and marker ~= 0xCC then
        local h, w = C.bin_unpack(">I2I2", data, i + 5)
        return w, h
      end
      i = i + 2 + len
    end
  end
  return nil, "no start-of-frame segment"
end

local function read(path)
  return (assert(helper.read(path), "cannot read " .. path))
end

-- The lockup boxes on the Engine (any owner: the examples run as processes
-- of their own), as a set; and those of them not in `before`.
local function all_boxes()
  local set = {}
  for _, id in ipairs(helper.boxes()) do set[id] = true end
  return set
end

local function new_since(before)
  local left = {}
  for id in pairs(all_boxes()) do
    if not before[id] then left[#left + 1] = id end
  end
  return left
end

describe("examples/thumbnail.lua", function()
  local dir, input, output
  before_each(function()
    dir = helper.sh("mktemp -d"):gsub("%s+$", "")
    input, output = dir .. "/in put.jpg", dir .. "/in put-thumb.jpg"
    helper.write(input, read("examples/photo.jpg")) -- (LuaJIT's file:write returns true, not the file)
  end)
  after_each(function()
    helper.sh("rm -rf " .. helper.shell_quote(dir))
  end)

  local function run_example(path)
    local code = string.format("arg = { [0] = 'examples/thumbnail.lua', %q }; dofile(arg[0])", path)
    return helper.sh(helper.lua_cmd(code) .. " 2>&1")
  end

  it("writes a 120x120 JPEG next to its input, from a box with no network", function()
    local w, h = jpeg_size(read(input))
    assert.same({ 800, 600 }, { w, h }) -- the input is not already a thumbnail
    local out, ok = run_example(input)
    assert.is_true(ok, out)
    w, h = jpeg_size(read(output))
    assert.same({ 120, 120 }, { w, h })
    -- the box's own report: GraphicsMagick's view, and its only interface
    assert.matches("JPEG 120x120", out, 1, true)
    assert.matches("the box's network: lo)", out, 1, true)
  end)

  it("fails clearly on an input that is not an image, and leaves nothing behind", function()
    helper.write(input, "not a jpeg at all")
    -- Compared as sets: a box of an earlier spec may still be in removal.
    local before = all_boxes()
    local out, ok = run_example(input)
    assert.is_false(ok)
    assert.matches("conversion failed", out, 1, true)
    assert.is_nil(io.open(output, "rb"))
    assert.same({}, new_since(before))
  end)
end)

describe("examples/fork.lua", function()
  it("commits a prepared box and converts in fresh copies, leaving no box behind", function()
    local before = all_boxes()
    local out, ok = helper.sh(helper.lua_cmd("arg = { [0] = 'examples/fork.lua', '12' }; dofile(arg[0])") .. " 2>&1")
    assert.is_true(ok, out)
    assert.matches("prepared and committed lockup%-commit:%x+", out)
    -- each conversion littered; the next one saw none of it (the example asserts that)
    assert.matches("12 conversions, each in a fresh copy", out, 1, true)
    -- boxes were reused (how many resets are done when it prints depends on timing)
    local resets = tonumber(out:match("(%d+) resets, 0 boxes replaced"))
    assert.is_true(resets ~= nil and resets >= 6, out)
    assert.same({}, new_since(before))
  end)
end)

describe("examples/repl.lua", function()
  it("drives Lua's REPL in a box line by line, then on a terminal where Ctrl-C interrupts a loop", function()
    local before = all_boxes()
    local out, ok = helper.sh(helper.lua_cmd("arg = { [0] = 'examples/repl.lua' }; dofile(arg[0])") .. " 2>&1")
    assert.is_true(ok, out)
    assert.matches("> print(x)\n42\n", out, 1, true)
    assert.matches("> error('boom')\nstdin:1: boom\n", out, 1, true)
    assert.matches("> print(x + 1)\n43\n", out, 1, true)
    assert.matches("a step beside it, in the same box", out, 1, true)
    assert.matches("<- the REPL", out, 1, true)
    assert.matches("on a terminal, Ctrl-C: interrupted!", out, 1, true)
    assert.matches("still here", out, 1, true)
    assert.same({}, new_since(before))
  end)
end)
