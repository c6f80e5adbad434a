-- box:pause() and box:resume(): the Engine's freezer for a box kept between
-- uses (issue 23). Against the real Engine, on the lane the run picks.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"

local now = core.monotime
-- A background process that notes the box's uptime (seconds, to 10 ms) every 50 ms.
local TICKER = "(while :; do read -r u _ </proc/uptime; echo $u >>/tmp/ticks; sleep 0.05; done) >/dev/null 2>&1 &"

-- The longest gap between two ticks, in seconds.
local function longest_gap(ticks)
  local last, gap = nil, 0
  for t in ticks:gmatch("[%d.]+") do
    t = tonumber(t)
    if last then gap = math.max(gap, t - last) end
    last = t
  end
  return gap
end

describe("box:pause and box:resume", function()
  local docker
  setup(function() docker = helper.docker() end)

  it("freeze every process of the box and thaw them; the box goes on", function()
    local box = assert(docker:start { image = helper.IMAGE })
    assert(box:run(TICKER))
    lockup.sleep(0.3)
    assert.is_true(box:pause())
    assert.is_true(helper.inspect(box.id).State.Paused)
    assert.matches("paused", tostring(box))
    lockup.sleep(1)
    assert.is_true(box:resume())
    assert.is_false(helper.inspect(box.id).State.Paused)
    lockup.sleep(0.3)
    local ticks = assert(box:run("cat /tmp/ticks")).stdout
    local gap = longest_gap(ticks)
    assert.is_true(gap >= 0.9, "the ticker ran while paused: longest gap " .. gap .. " s")
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    assert.is_true(box:stop())
  end)

  it("while paused, calls fail at once saying so; pausing twice or resuming a running box too", function()
    local box = assert(docker:start { image = helper.IMAGE })
    local r, err = box:resume()
    assert.is_nil(r)
    assert.equal("the box is not paused", err)
    assert.is_true(box:pause())
    r, err = box:pause()
    assert.is_nil(r)
    assert.equal("the box is already paused", err)
    local t0 = now()
    for _, call in ipairs {
      function() return box:run("true") end,
      function() return box:exec({ "true" }) end,
      function() return box:put("f", "x") end,
      function() return box:get("f") end,
      function() return box:kill_processes() end,
    } do
      r, err = call()
      assert.is_nil(r)
      assert.matches("the box is paused", err, 1, true)
    end
    assert.is_true(now() - t0 < 0.5)
    assert.is_true(box:resume())
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    assert.is_true(box:stop())
  end)

  it("stop() removes a paused box, and leaves nothing behind", function()
    local box = assert(docker:start { image = helper.IMAGE })
    assert(box:run("sleep 600 &"))
    assert.is_true(box:pause())
    local t0 = now()
    assert.is_true(box:stop())
    assert.is_true(now() - t0 < 10)
    assert.is_false(helper.exists(box.id))
    local r, err = box:resume()
    assert.is_nil(r)
    assert.equal("the box was stopped", err)
  end)

  it("under gVisor too, where a paused sandbox must be thawed before it can be killed", function()
    if not helper.has_runsc() then
      pending("no runtime runsc on this Engine")
      return
    end
    local box = assert(docker:start { image = helper.IMAGE, runtime = "runsc", lane = "attach" })
    assert(box:run("sleep 600 &"))
    assert.is_true(box:pause())
    assert.is_true(box:resume())
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    assert.is_true(box:pause())
    local t0 = now()
    assert.is_true(box:stop())
    assert.is_true(now() - t0 < 5, "stop took " .. (now() - t0) .. " s")
    assert.is_false(helper.exists(box.id))
  end)

  it("waits for another coroutine's call in flight, then pauses", function()
    local box = assert(docker:start { image = helper.IMAGE })
    local r, paused_after
    lockup.run(function()
      r = assert(box:run("sleep 0.5; echo done"))
    end, function()
      lockup.sleep(0.1)
      local t0 = now()
      assert.is_true(box:pause())
      paused_after = now() - t0
    end)
    assert.equal("done\n", r.stdout)
    assert.is_true(paused_after >= 0.3, "paused after " .. paused_after .. " s")
    assert.is_true(box:resume())
    assert.is_true(box:stop())
  end)
end)
