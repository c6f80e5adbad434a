-- What a hostile box can send back through box:get and box:get_file: every
-- buffer the host keeps is bounded, every call ends near its timeout however
-- fast the box writes, and get_file leaves no partial file. The box plays
-- hostile as root on a writable root filesystem: it replaces the `cat` and
-- `stat` that lockup's get script runs (on Debian's dash, where they are not
-- shell builtins as in busybox).
local helper = require "helper"
local core = require "lockup.core"

local now = core.monotime
local MiB = 1024 * 1024

-- A box whose `cat` is the given shell script body ($1 is the file).
local function hostile_box(cat_body, keep_stat)
  local box = assert(helper.docker():start { image = "debian-lua:local", user = "root", read_only = false })
  local r = assert(box:run("rm -f /usr/bin/cat" .. (keep_stat and "" or " /usr/bin/stat")
    .. " && printf '#!/bin/sh\\n%s\\n' '" .. cat_body .. "' >/usr/bin/cat && chmod 755 /usr/bin/cat"
    .. " && printf 'hello' >/work/small"))
  assert.equal(0, r.code, r.stderr)
  return box
end

-- Files in dir, other than . and ..
local function listing(dir)
  local names = {}
  local p = assert(io.popen("ls -A " .. helper.shell_quote(dir)))
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  return names
end

describe("a hostile box's answer to get", function()
  local box, dir
  after_each(function()
    if box then box:stop() end
    box = nil
    if dir then os.execute("rm -rf " .. helper.shell_quote(dir)) end
    dir = nil
  end)

  it("get_file stops when the box sends more than the size it announced, leaving no file", function()
    box = hostile_box("exec yes", true)
    dir = helper.tmpdir()
    local t0 = now()
    local n, err = box:get_file("/work/small", dir .. "/out", { timeout = 30 })
    assert.is_nil(n)
    assert.matches("sent more than the 5 bytes it announced", err, 1, true)
    assert.is_true(now() - t0 < 20, "took " .. (now() - t0) .. " s")
    assert.same({}, listing(dir))
    assert.equal(0, assert(box:run("true")).code) -- the box still runs steps
  end)

  it("get_file has a finite default limit", function()
    box = assert(helper.docker():start { image = "debian-lua:local", ulimits = { fsize = "4g" } })
    assert.equal(0, assert(box:run("truncate -s 2G /work/sparse")).code) -- 2 GiB, no disk used
    dir = helper.tmpdir()
    local n, err = box:get_file("/work/sparse", dir .. "/out", { timeout = 10 })
    assert.is_nil(n)
    assert.matches("larger than max_size (1073741824 bytes)", err, 1, true)
    assert.same({}, listing(dir))
  end)

  it("get_file stops at an explicit max_size too", function()
    box = hostile_box("exec yes", false)
    dir = helper.tmpdir()
    local n, err = box:get_file("/work/small", dir .. "/out", { max_size = 4 * MiB, timeout = 30 })
    assert.is_nil(n)
    assert.matches("larger than max_size (4194304 bytes)", err, 1, true)
    assert.same({}, listing(dir))
  end)

  it("get stops at a flood of stderr, keeping a bounded part of it", function()
    box = hostile_box("exec yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx >&2", true)
    local t0 = now()
    local data, err = box:get("/work/small", { timeout = 30 })
    assert.is_nil(data)
    assert.matches("more than 4096 bytes of errors", err, 1, true)
    assert.is_true(now() - t0 < 20, "took " .. (now() - t0) .. " s")
    assert.equal(0, assert(box:run("true")).code)
  end)

  it("get says so when the box sends less than it announced", function()
    box = hostile_box("exit 0", true)
    local data, err = box:get("/work/small")
    assert.is_nil(data)
    assert.matches("sent 0 of the 5 bytes it announced", err, 1, true)
  end)
end)
