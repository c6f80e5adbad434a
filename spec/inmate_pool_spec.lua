-- lockup.inmate{ pool = n } against the real Engine: calls take boxes from a
-- warm pool whose boxes have the runtime already started, each box serves
-- one call, and nothing is left once the jail is closed.
local helper = require "helper"
local lockup = require "lockup"

local BASIC = "spec/fixtures/inmates/basic"

-- The error a call raised: an InmateError of `kind`.
local function fails(kind, fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error of kind " .. kind .. ", the call returned")
  assert.equal("lockup.inmate.error", (getmetatable(e) or {}).__name, tostring(e))
  assert.equal(kind, e.kind, tostring(e))
  return e
end

describe("lockup.inmate with a pool", function()
  local before

  before_each(function()
    before = helper.box_set()
  end)

  after_each(function()
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  -- A jail whose pool records the id of every box it hands out.
  local function jail_of(n)
    local jail = lockup.inmate { dir = BASIC, docker = helper.docker(), pool = n,
      start = helper.RUNTIME and { runtime = helper.RUNTIME } or nil }
    local handed, acquire = {}, jail.pool.acquire
    jail.pool.acquire = function(pool, ...)
      local box, err = acquire(pool, ...)
      if box then handed[#handed + 1] = box.id end
      return box, err
    end
    return jail, handed
  end

  it("answers each call from a box of its own, prepared ahead", function()
    local jail, handed = jail_of(2)
    finally(function() jail:close() end)
    assert.is_truthy(helper.eventually(function() return jail.pool:stats().ready == 2 end, 60))
    for i = 1, 4 do
      assert.equal("raboof", jail:reverse("foobar"))
      assert.equal(1, jail:bump()) -- a fresh Lua every call
      assert.equal(2 * i, #handed)
    end
    local seen = {}
    for _, id in ipairs(handed) do
      assert.is_nil(seen[id], "a box served two calls")
      seen[id] = true
    end
    local s = jail.pool:stats()
    assert.equal(8, s.hits + s.misses)
    assert.equal(0, s.in_use) -- each released once its call ended
    -- each box is removed after its call
    assert.is_truthy(helper.eventually(function()
      for _, id in ipairs(handed) do if helper.exists(id) then return false end end
      return true
    end, 20))
  end)

  it("raises the jail's errors, crashes and timeouts as without a pool, and goes on", function()
    local jail = jail_of(1)
    finally(function() jail:close() end)
    local e = fails("error", jail.fail, jail, "on purpose")
    assert.matches("on purpose", e.message)
    fails("crashed", jail.exit, jail, 3)
    fails("timeout", jail.call, jail, { "nap", timeout = 1 }, 30)
    assert.equal("raboof", jail:reverse("foobar"))
    -- yields reach the host as they come, from a pooled box too
    local got = {}
    jail:count(3, function(v) got[#got + 1] = v end)
    assert.same({ 1, 2, 3 }, got)
  end)

  it("serves calls at once from lockup.run, each its own box", function()
    local jail, handed = jail_of(2)
    finally(function() jail:close() end)
    local tasks = {}
    for i = 1, 4 do tasks[i] = function() return jail:reverse("ab" .. i) end end
    assert.same({ "1ba", "2ba", "3ba", "4ba" }, { lockup.run(tasks[1], tasks[2], tasks[3], tasks[4]) })
    assert.equal(4, #handed)
  end)

  it("close() removes the pool's boxes, and later calls raise kind closed", function()
    local jail = jail_of(2)
    assert.is_truthy(helper.eventually(function() return jail.pool:stats().ready == 2 end, 60))
    jail:close()
    assert.equal(0, jail.pool:stats().ready)
    fails("closed", jail.reverse, jail, "x")
  end)

  it("refuses a bad pool size, and a pool in local mode", function()
    assert.matches("'pool'", helper.raised(function() lockup.inmate { dir = BASIC, pool = 0 } end))
    assert.matches("'pool'", helper.raised(function() lockup.inmate { dir = BASIC, pool = 1.5 } end))
    assert.matches("not with local_mode",
      helper.raised(function() lockup.inmate { dir = BASIC, pool = 1, local_mode = true } end))
  end)
end)
