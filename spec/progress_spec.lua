-- lockup.progress: the status line it draws for each kind of event, to a file
-- given, and its silence when stderr is not a terminal. No Docker needed.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"

local WIDTH = 78

-- Feeds events to lockup.progress(label, file) and returns what it wrote.
local function render(label, events)
  local f = assert(io.tmpfile())
  local p = lockup.progress(label, f)
  assert.is_function(p)
  for _, ev in ipairs(events) do p(ev) end
  f:seek("set")
  local out = f:read("a")
  f:close()
  return out
end

-- The status lines drawn: each starts with \r and is padded to the width;
-- returns a list of { text = line without padding, newline = bool }.
local function lines(out)
  local t = {}
  for body, nl in out:gmatch("\r([^\r\n]*)(\n?)") do
    assert.equal(WIDTH, #body, "a status line not padded to the width: " .. body)
    t[#t + 1] = { text = (body:gsub("%s+$", "")), newline = nl == "\n" }
  end
  return t
end

describe("lockup.progress", function()
  it("draws a bar with the percentage and sizes for done/total", function()
    local out = render("put_file", {
      { op = "put_file", done = 0, total = 2 * 1048576 },
      { op = "put_file", done = 1048576, total = 2 * 1048576 },
    })
    local l = lines(out)
    assert.equal(2, #l)
    assert.equal("put_file [........................]   0% 0 B / 2.0 MiB", l[1].text)
    assert.equal("put_file [############............]  50% 1.0 MiB / 2.0 MiB", l[2].text)
    assert.is_false(l[1].newline)
    assert.is_false(l[2].newline)
    assert.is_nil(out:find("\n", 1, true), "no newline before the end")
  end)

  it("ends the line with a newline once done reaches total", function()
    local out = render("get", {
      { op = "get", done = 512, total = 2048 },
      { op = "get", done = 2048, total = 2048 },
    })
    local l = lines(out)
    assert.equal(2, #l)
    assert.equal("get [########################] 100% 2.0 KiB / 2.0 KiB", l[2].text)
    assert.is_true(l[2].newline)
    assert.equal("\n", out:sub(-1))
  end)

  it("shows a byte count alone when there is no total", function()
    local l = lines(render(nil, { { op = "get", done = 100 }, { op = "get", done = 3 * 1048576 } }))
    assert.equal("100 B", l[1].text)
    assert.equal("3.0 MiB", l[2].text)
  end)

  it("shows the current step of a build, then a newline when it finished", function()
    local out = render("build", {
      { op = "context", done = 4608, total = 4608 },
      { op = "build", text = "Step 1/2 : FROM busybox:local", step = "step 1/2 (FROM busybox:local)" },
      { op = "build", text = " ---> 8c9283cf4214", step = "step 1/2 (FROM busybox:local)" },
      { op = "build", text = "Step 2/2 : RUN make", step = "step 2/2 (RUN make)" },
      { op = "build", text = "built sha256:abc", finished = true },
    })
    local l = lines(out)
    assert.equal("build [########################] 100% 4.5 KiB / 4.5 KiB", l[1].text)
    assert.is_true(l[1].newline) -- the context is sent
    -- the same step twice is drawn once
    assert.equal("build step 1/2 (FROM busybox:local)", l[2].text)
    assert.equal("build step 2/2 (RUN make)", l[3].text)
    assert.equal("build built sha256:abc", l[4].text)
    assert.is_true(l[4].newline)
    assert.equal(4, #l)
    assert.equal("\n", out:sub(-1))
  end)

  it("names the layer of a pull", function()
    local l = lines(render("pull", {
      { op = "pull", text = "Pulling fs layer", id = "abc123" },
      { op = "pull", text = "Downloading", id = "abc123", done = 10, total = 20 },
      { op = "pull", text = "done", finished = true },
    }))
    assert.equal("pull abc123: Pulling fs layer", l[1].text)
    assert.matches("^pull %[", l[2].text)
    assert.matches("50%", l[2].text, 1, true)
    assert.equal("pull done", l[3].text)
    assert.is_true(l[3].newline)
  end)

  it("keeps to one line: control characters become spaces, long text is cut", function()
    local out = render("x", {
      { op = "build", text = "a\tb\27[31mred\r\nc", step = nil },
      { op = "build", text = ("y"):rep(200) },
    })
    local l = lines(out)
    assert.equal(2, #l)
    assert.equal("x a b [31mred  c", l[1].text)
    assert.is_nil(l[1].text:find("%c"))
    assert.equal(WIDTH, #l[2].text)
    assert.is_nil(out:find("\27", 1, true))
  end)

  it("draws with no label", function()
    local l = lines(render(nil, { { op = "put", done = 1, total = 1 } }))
    assert.equal("[########################] 100% 1 B / 1 B", l[1].text)
  end)

  it("in this process: draws on stderr only if stderr is a terminal", function()
    local p = lockup.progress("label")
    assert.is_function(p)
    if not core.isatty(2) then
      -- quiet: nothing to see from here, but it takes events without failing
      p { op = "put", done = 1, total = 2 }
      p { op = "build", text = "x", finished = true }
    else
      -- a terminal: it would draw; a line ending in a newline leaves the terminal tidy
      p { op = "put", done = 2, total = 2 }
    end
  end)

  describe("without a file, in a fresh process", function()
    local code = [[
      local p = require("lockup").progress("label")
      p { op = "put", done = 1, total = 2 }
      p { op = "put", done = 2, total = 2 }
      io.stdout:write("end\n")
    ]]

    it("stays quiet when stderr is not a terminal (a file)", function()
      local tmp = os.tmpname()
      local out, ok = helper.sh(helper.lua_cmd(code) .. " 2>" .. helper.shell_quote(tmp))
      local err = helper.read(tmp)
      os.remove(tmp)
      assert.is_true(ok)
      assert.equal("end\n", out)
      assert.equal("", err)
    end)

    it("draws on stderr when it is a terminal (script(1) gives it one)", function()
      local probe, have = helper.sh("command -v script")
      if not have or probe == "" then
        pending("script(1) is not installed")
        return
      end
      local tmp = os.tmpname()
      local cmd = "script -qec " .. helper.shell_quote(helper.lua_cmd(code)) .. " /dev/null </dev/null >"
        .. helper.shell_quote(tmp)
      local _, ok = helper.sh(cmd)
      local typed = helper.read(tmp)
      os.remove(tmp)
      assert.is_true(ok, typed)
      assert.matches("label [############............]  50%", typed, 1, true)
      assert.matches("label [########################] 100%", typed, 1, true)
      assert.matches("end", typed, 1, true)
    end)
  end)
end)
