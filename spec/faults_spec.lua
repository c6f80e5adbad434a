-- Faults from outside a box, against the real Engine: the daemon killed under
-- a running step, the container removed or paused behind lockup's back, and
-- the strays a killed owner leaves for prune. Each call must come back (a
-- result or nil, err; never a hang or a Lua error), and nothing of this spec
-- is left behind.
--
-- The daemon test kills the shared dockerd (by the pid in its pid file) and
-- restarts it with scripts/setup.sh: do not run this file alongside other
-- specs or programs using the same Engine.
local helper = require "helper"
local C = require "support.compat"
local lockup = require "lockup"
local core = require "lockup.core"

local now = core.monotime

-- The Docker daemon answers (lockup.connect works).
local function daemon_up()
  local d = lockup.connect()
  return d ~= nil and d:ping() == true
end

-- Brings the daemon back if it is down, and waits until it answers.
local function ensure_daemon()
  if daemon_up() then return true end
  -- setup.sh also clears the pid files a killed daemon leaves (a zombie's too)
  local out = helper.sh("./scripts/setup.sh 2>&1")
  local up = helper.eventually(daemon_up, 60)
  assert(up, "the Docker daemon did not come back: " .. out)
  return true
end

-- The running dockerd's pid, from its pid file, checked against /proc.
local function dockerd_pid()
  local f = assert(io.open("/var/run/docker.pid"))
  local pid = assert(C.tointeger(f:read("l")), "no pid in /var/run/docker.pid")
  f:close()
  local c = assert(io.open("/proc/" .. pid .. "/comm"), "dockerd (pid " .. pid .. ") not running")
  local comm = c:read("l")
  c:close()
  assert(comm == "dockerd", "pid " .. pid .. " is " .. tostring(comm) .. ", not dockerd")
  return pid
end

describe("the Docker daemon killed (SIGKILL) under a box", function()
  local created = {} -- container ids this spec made, removed at the end if still there

  teardown(function()
    ensure_daemon() -- whatever happened above, the daemon is back
    for _, id in ipairs(created) do helper.remove(id) end
  end)

  -- On the attach lane the session runs through dockerd, so its death ends the
  -- step; on the fifo lane the session does not need dockerd at all: steps go
  -- on, and only what needs the Engine (exec, start, stop) fails.
  it("returns from a running step promptly, says so, and works again once the daemon is back", function()
    local undo = helper.undo(finally)
    undo(ensure_daemon)
    local d = assert(lockup.connect())
    local box = assert(d:start { image = helper.IMAGE })
    local idle = assert(d:start { image = helper.IMAGE }) -- a box between steps when it happens
    local fifo = box.lane_name == "fifo"
    created[#created + 1] = box.id
    created[#created + 1] = idle.id
    assert.equal("ok\n", assert(idle:run("echo ok")).stdout)
    local pid = dockerd_pid()

    local outcome, killed_at, returned_at = nil, nil, nil
    lockup.run(function()
      outcome = C.pack(pcall(box.run, box, (fifo and "sleep 5" or "sleep 30") .. "; echo finished"))
      returned_at = now()
    end, function()
      lockup.sleep(1) -- the step is running
      killed_at = now()
      helper.sh("kill -9 " .. pid)
    end)
    -- hang guard: the call came back soon after the daemon died, without a Lua error
    assert.is_true(returned_at - killed_at < 15, "the step took " .. (returned_at - killed_at) .. " s to return")
    assert.is_true(outcome[1], "box:run raised: " .. tostring(outcome[2]))
    local r, err = outcome[2], outcome[3]
    if fifo then
      assert.equal("finished\n", assert(r, err).stdout) -- the step went on without the daemon
    elseif r then
      assert.is_nil(r.stdout:find("finished", 1, true)) -- the step did not complete
      assert.is_false(r.ok)
    else
      assert.is_string(err)
      assert.matches("daemon", err)
    end

    -- with the daemon gone: every call returns, fast, and raises nothing; a
    -- step on the fifo lane still works, one on the attach lane cannot
    local t0 = now()
    local r2, err2 = idle:run("echo again", { timeout = 10 })
    assert.is_true(now() - t0 < 15)
    if fifo then assert.equal("again\n", assert(r2, err2).stdout)
    elseif r2 then assert.is_false(r2.ok) else assert.is_string(err2) end
    r2, err2 = box:run("echo again", { timeout = 10 })
    if fifo then
      assert.equal("again\n", assert(r2, err2).stdout)
      r2, err2 = box:exec({ "true" }, { timeout = 10 }) -- the exec API needs the daemon
      assert.is_nil(r2)
      assert.matches("is dockerd running", err2)
    else
      assert.is_nil(r2)
      assert.is_string(err2)
    end
    local again, serr = d:start { image = helper.IMAGE }
    assert.is_nil(again)
    assert.matches("is dockerd running", serr)
    local ok = pcall(box.stop, box)
    assert.is_true(ok)
    ok = pcall(idle.stop, idle)
    assert.is_true(ok)

    -- the daemon back: a new connection, and the one made before it, both work
    ensure_daemon()
    local d2 = assert(lockup.connect())
    local fresh = assert(d2:start { image = helper.IMAGE })
    undo(function() fresh:stop() end)
    assert.equal("ok\n", assert(fresh:run("echo ok")).stdout)
    local old = assert(d:start { image = helper.IMAGE })
    undo(function() old:stop() end)
    assert.equal("ok\n", assert(old:run("echo ok")).stdout)
    -- the boxes of the killed daemon: gone, or removed now that it is back
    for _, b in ipairs { box, idle } do
      local gone = helper.eventually(function() return not helper.exists(b.id) end, 10)
      if not gone then helper.remove(b.id) end
    end
    fresh:stop()
    old:stop()
    assert.same({}, helper.boxes(helper.owner()))
  end)
end)

describe("the Docker daemon killed (SIGKILL) under a warm pool", function()
  it("never hangs while it is down, and hands out working boxes again once it is back", function()
    local undo, pool = helper.undo(finally), nil
    undo(function() if pool then pool:close() end end)
    undo(ensure_daemon) -- runs first (last first): the pool's close needs the daemon
    pool = assert(lockup.pool { image = helper.IMAGE, size = 2 })
    assert.is_truthy(helper.eventually(function() return pool:stats().ready == 2 end, 60))
    helper.sh("kill -9 " .. dockerd_pid())
    -- down: each acquire comes back within its timeout, with a box (the fifo
    -- lane's boxes outlive the daemon) or a message saying the daemon is gone
    local gave_up = false
    for _ = 1, 4 do
      local t0 = now()
      local ok, box, err = pcall(pool.acquire, pool, 5)
      assert.is_true(ok, tostring(box))
      assert.is_true(now() - t0 < 10, "acquire took " .. (now() - t0) .. " s")
      if box then
        pool:release(box)
      else
        assert.matches("dockerd", err)
        gave_up = true
      end
    end
    assert.is_true(gave_up, "the pool handed out 4 boxes with the daemon down")
    assert.is_true(pool:stats().failed >= 1)
    -- back: the pool starts boxes by itself again, and they work
    ensure_daemon()
    local box = assert(pool:acquire(60))
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    pool:release(box)
    assert(pool:close())
    assert.is_truthy(helper.eventually(function() return #helper.boxes(helper.owner()) == 0 end, 30))
  end)
end)

-- Issue 19: a daemon that stops answering (SIGSTOP) holds no call past its
-- timeout plus 1 s, and once it has been seen silent, a later call that needs
-- it says so at once; the fifo lane's steps do not need it at all.
describe("the Docker daemon stopped (SIGSTOP) under a box", function()
  it("bounds every call by its timeout, fails later calls at once, and works again once it is back", function()
    local undo = helper.undo(finally)
    undo(ensure_daemon)
    local d = assert(lockup.connect())
    local box = assert(d:start { image = helper.IMAGE })
    local fifo = box.lane_name == "fifo"
    local pid = dockerd_pid()
    helper.sh("kill -STOP " .. pid)
    undo(function() helper.sh("kill -CONT " .. pid) end) -- runs before ensure_daemon (last first)

    local t0 = now()
    local r, err = box:exec({ "true" }, { timeout = 3 })
    local took = now() - t0
    assert.is_nil(r)
    assert.matches("timed out after 3s waiting for the Docker daemon", err)
    assert.is_true(took < 4, "box:exec took " .. took .. " s (timeout 3 s)")
    -- seen silent: the next call that needs the daemon says so at once
    t0 = now()
    r, err = box:exec({ "true" }, { timeout = 3 })
    assert.is_nil(r)
    assert.matches("has not answered since", err)
    assert.is_true(now() - t0 < 1, "the second box:exec took " .. (now() - t0) .. " s")
    t0 = now()
    local again, serr = d:start { image = helper.IMAGE }
    assert.is_nil(again)
    assert.matches("has not answered since", serr)
    assert.is_true(now() - t0 < 1, "docker:start took " .. (now() - t0) .. " s")
    -- a step: on the fifo lane no byte goes through dockerd; on the attach
    -- lane its output stalls in dockerd, and the step times out
    t0 = now()
    r, err = box:run("echo ok", { timeout = 3 })
    took = now() - t0
    assert.is_true(took < 4, "box:run took " .. took .. " s (timeout 3 s)")
    if fifo then
      assert.equal("ok\n", assert(r, err).stdout)
    else
      assert.is_true(r == nil or r.status == "timeout", tostring(r or err))
    end

    -- stop: the lane closed, the lifeline ends the container; the Engine
    -- cannot confirm it, which stop says at once (a later stop confirms)
    t0 = now()
    local ok, stop_err = box:stop()
    assert.is_nil(ok)
    assert.matches("has not answered since", stop_err)
    assert.is_true(now() - t0 < 1, "box:stop took " .. (now() - t0) .. " s")

    helper.sh("kill -CONT " .. pid)
    assert.is_truthy(helper.eventually(daemon_up, 10))
    -- back: the same client works again (a ping clears the silence)
    local fresh = assert(d:start { image = helper.IMAGE })
    r, err = fresh:exec({ "echo", "back" }, { timeout = 10 })
    assert.equal("back\n", assert(r, err).stdout)
    assert(fresh:stop())
    assert(box:stop())
    assert.same({}, helper.boxes(helper.owner()))
  end)
end)

describe("a container changed from outside", function()
  local d

  before_each(function()
    d = helper.docker()
  end)

  after_each(function()
    assert.same({}, helper.boxes(helper.owner()))
  end)

  it("removed (docker rm -f) between steps: the next run says the box was killed, not a hang", function()
    local box = assert(d:start { image = helper.IMAGE })
    local _, ok = helper.sh("docker rm -f " .. box.id .. " >/dev/null 2>&1")
    assert.is_true(ok)
    local t0 = now()
    local r, err = box:run("echo hi", { timeout = 20 })
    assert.is_true(now() - t0 < 15)
    if r then
      assert.is_true(r.exited, tostring(r))
      assert.equal(137, r.code)
      assert.equal("", r.stdout)
      r, err = box:run("echo hi")
      assert.is_nil(r)
    end
    assert.matches("removed from outside", err)
    -- exec and kill_processes say it too, with nil, err
    local e, eerr = box:exec({ "echo", "hi" })
    assert.is_nil(e)
    assert.is_string(eerr)
    local k, kerr = box:kill_processes()
    assert.is_nil(k)
    assert.is_string(kerr)
    assert.is_true(box:stop())
    assert.is_false(helper.exists(box.id))
  end)

  it("removed while a step runs: the step comes back as exited, the box says it was killed", function()
    local box = assert(d:start { image = helper.IMAGE })
    local r, err, returned_at, removed_at
    lockup.run(function()
      r, err = box:run("sleep 30; echo finished", { timeout = 60 })
      returned_at = now()
    end, function()
      lockup.sleep(0.5)
      removed_at = now()
      helper.sh("docker rm -f " .. box.id .. " >/dev/null 2>&1")
    end)
    assert.is_true(returned_at - removed_at < 15, "took " .. (returned_at - removed_at) .. " s")
    assert(r, err)
    assert.is_true(r.exited, tostring(r))
    assert.equal(137, r.code)
    assert.equal("", r.stdout)
    local again
    again, err = box:run("echo hi")
    assert.is_nil(again)
    assert.matches("killed", err)
    assert.matches("removed from outside", err)
    assert.is_true(box:stop())
    assert.is_false(helper.exists(box.id))
  end)

  it("paused (docker pause): the step times out and the box is stopped, not a hang", function()
    local box = assert(d:start { image = helper.IMAGE })
    local _, ok = helper.sh("docker pause " .. box.id .. " >/dev/null 2>&1")
    assert.is_true(ok)
    local r = assert(box:run("echo hi", { timeout = 1 }))
    assert.is_true(r.timed_out)
    assert.is_true(r.box_stopped)
    assert.is_true(r.duration < 10)
    local again, err = box:run("echo hi")
    assert.is_nil(again)
    assert.is_string(err)
    assert.is_true(box:stop())
    local gone = helper.eventually(function() return not helper.exists(box.id) end, 10)
    if not gone then helper.remove(box.id) end
    assert.is_truthy(gone)
  end)
end)

-- lockup.prune() removing exactly the strays of dead owners and leaving
-- unrelated containers (and `all = true`) is covered in lifecycle_spec.lua
-- ("prune"), with containers made through the API. Here the stray is a real
-- one: left by a lockup process killed after the Engine created its box and
-- before it was attached (so the lifeline could not take it down).
describe("prune after an owner killed in the middle of docker:start", function()
  local made = {}

  teardown(function()
    for _, id in ipairs(made) do helper.remove(id) end
  end)

  it("removes that stray, and leaves an unrelated container and a live box alone", function()
    local d = helper.docker()
    local code = [[
      io.stdout:setvbuf("no")
      local lockup = require "lockup"
      local Docker = require("lockup.docker").Docker
      local d = assert(lockup.connect())
      local request = Docker.request
      function Docker.request(self, method, path, opts)
        local status, body, h = request(self, method, path, opts)
        if method == "POST" and path == "/containers/create" and status then
          local f = io.open("/proc/self/stat"); local pid = f:read("l"):match("^%d+"); f:close()
          print(pid .. " " .. body.Id)
          os.execute("kill -9 " .. pid)
        end
        return status, body, h
      end
      d:start({ image = "busybox:local" })
      print("RETURNED")
    ]]
    local p = assert(io.popen(helper.lua_cmd(code) .. " 2>&1", "r"))
    local out = p:read("a")
    p:close()
    local pid, stray = out:match("^(%d+) (%x+)\n")
    assert(pid, "the subprocess said: " .. out)
    made[#made + 1] = stray
    assert.is_nil(out:find("RETURNED", 1, true), out)
    local info = assert(helper.inspect(stray), "the stray was not left behind")
    assert.equal(helper.owner(pid), info.Config.Labels["lockup.owner"])
    assert.equal("created", info.State.Status)

    local status, body = d:request("POST", "/containers/create", { body = { Image = helper.IMAGE, Cmd = { "true" } } })
    assert(status, body)
    local unrelated = body.Id
    made[#made + 1] = unrelated
    local live = assert(d:start { image = helper.IMAGE })
    finally(function() live:stop() end)

    local n, err = lockup.prune()
    assert.is_number(n, err)
    assert.is_true(n >= 1)
    assert.is_false(helper.exists(stray))
    assert.is_true(helper.exists(unrelated))
    assert.is_true(helper.exists(live.id))
    assert.equal("ok\n", assert(live:run("echo ok")).stdout)
    live:stop()
    assert.same({}, helper.boxes(helper.owner()))
  end)
end)
