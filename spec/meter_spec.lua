-- What a call cost (issue 22): cpu_user, cpu_sys and memory_peak in every
-- result, read from the box's cgroup on the host (or the Engine's stats), and
-- a per-step CPU limit. Against the real Engine, on the lane the run picks.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"

local MiB = 1024 * 1024
local now = core.monotime
-- dd's buffer is one block: bs=100M makes it allocate and fill 100 MiB
local ALLOC_100M = "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null"
local SPIN_1S = "timeout 1 sh -c 'while :; do :; done'"
local PROCS = [[for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f"; echo; done 2>/dev/null]]

local function cpu(r) return r.cpu_user + r.cpu_sys end

-- A second of spinning on the box's one CPU (cpus = 1): about a second of CPU
-- time on a quiet machine; under load the box gets less of the host, so the
-- figure must only be a good part of it and never more than the wall time
-- (plus a tick of 10 ms, the v1 counters' step).
local function spun(r)
  return cpu(r) > 0.5 and cpu(r) <= r.duration + 0.02 and r.cpu_user > cpu(r) / 2
end

describe("what a call cost", function()
  local docker, box

  setup(function()
    docker = helper.docker()
    box = assert(docker:start { image = helper.IMAGE })
  end)

  teardown(function()
    if box then box:stop() end
  end)

  it("a step that allocates 100 MiB reports a peak near it, the next step near its own", function()
    local r = assert(box:run(ALLOC_100M))
    assert.equal(0, r.code)
    assert.is_true(r.memory_peak >= 100 * MiB and r.memory_peak < 100 * MiB + 32 * MiB, tostring(r))
    r = assert(box:run("true"))
    assert.is_true(r.memory_peak > 0 and r.memory_peak < 32 * MiB, tostring(r))
    r = assert(box:exec({ "sh", "-c", ALLOC_100M }))
    assert.is_true(r.memory_peak >= 100 * MiB and r.memory_peak < 100 * MiB + 32 * MiB, tostring(r))
    r = assert(box:exec({ "true" }))
    assert.is_true(r.memory_peak < 32 * MiB, tostring(r))
  end)

  it("a CPU-bound second reports about a second of CPU time, mostly user; a sleep close to none", function()
    local r = assert(box:run(SPIN_1S))
    assert.is_true(spun(r), tostring(r))
    r = assert(box:run("sleep 1"))
    assert.is_true(cpu(r) < 0.05, tostring(r))
    r = assert(box:exec({ "sh", "-c", SPIN_1S }))
    assert.is_true(spun(r), tostring(r))
  end)

  it("two steps' figures do not mix, nor do two boxes' at once", function()
    assert(box:run(SPIN_1S .. "; " .. ALLOC_100M))
    local r = assert(box:run("true"))
    assert.is_true(cpu(r) < 0.05 and r.memory_peak < 32 * MiB, tostring(r))
    local other = assert(docker:start { image = helper.IMAGE })
    local busy, idle
    lockup.run(function()
      busy = assert(box:run(SPIN_1S))
    end, function()
      idle = assert(other:run("sleep 1"))
    end)
    other:stop()
    assert.is_true(spun(busy), tostring(busy))
    assert.is_true(cpu(idle) < 0.05, tostring(idle))
  end)

  it("a box cannot fake its figures: they come from the host's count, not from the box", function()
    local r = assert(box:run(ALLOC_100M .. "; for f in /sys/fs/cgroup/memory/memory.max_usage_in_bytes "
      .. "/sys/fs/cgroup/memory.peak /sys/fs/cgroup/cpuacct/cpuacct.stat; do echo 0 >$f; done 2>/dev/null; "
      .. "printf '\\001%032x 0\\ncpu_user 0\\nmemory_peak 0\\n' 0"))
    assert.is_true(r.memory_peak >= 100 * MiB, tostring(r))
    assert.matches("memory_peak 0", r.stdout)
  end)

  it("a step that ends the box has none: its cgroup went with it", function()
    local b = assert(docker:start { image = helper.IMAGE })
    local r = assert(b:run("exit 3"))
    assert.is_true(r.exited)
    assert.is_nil(r.cpu_user)
    assert.is_nil(r.memory_peak)
    b:stop()
  end)

  it("tostring shows the figures", function()
    local r = assert(box:run("true"))
    assert.matches("cpu [%d.]+s user [%d.]+s sys, peak [%d.]+ MiB", tostring(r))
  end)

  describe("cpu_limit", function()
    it("ends a step past its CPU seconds: status cpu_limit, within a second of it, the box goes on", function()
      local before = select(2, assert(box:run(PROCS)).stdout:gsub("\n", ""))
      for _, call in ipairs {
        function(o) return box:run("sh -c 'while :; do :; done'", o) end,
        function(o) return box:exec({ "sh", "-c", "while :; do :; done" }, o) end,
        -- what forks and ignores SIGTERM is ended too, background processes included
        function(o) return box:run("trap '' TERM; (trap '' TERM; while :; do :; done) & sh -c 'while :; do :; done'", o) end,
      } do
        local t0 = now()
        local r = assert(call { cpu_limit = 0.5, timeout = 20 })
        local took = now() - t0
        assert.equal("cpu_limit", r.status, tostring(r))
        assert.is_true(r.cpu_limited)
        assert.is_false(r.ok)
        assert.is_nil(r.timed_out)
        assert.is_nil(r.box_stopped)
        -- on a quiet machine 0.46-0.57 s; under load the box gets its CPU second slower
        assert.is_true(took < 0.5 + 3, "took " .. took .. " s")
        assert.is_true(cpu(r) >= 0.49 and cpu(r) < 1, tostring(r))
        assert.equal("ok\n", assert(box:run("echo ok")).stdout)
        local procs -- as many as before: the spinners are gone
        assert.is_truthy(helper.eventually(function()
          procs = assert(box:run(PROCS)).stdout
          return select(2, procs:gsub("\n", "")) == before
        end, 5), procs)
      end
    end)

    it("leaves alone a step within it, and a step that waits (wall time is the timeout's)", function()
      local r = assert(box:run("sleep 1; echo done", { cpu_limit = 0.2 }))
      assert.equal("ok", r.status)
      assert.equal("done\n", r.stdout)
      r = assert(box:run("sleep 5", { cpu_limit = 10, timeout = 1 }))
      assert.equal("timeout", r.status)
    end)

    it("bad values and a box without accounting: a clear error", function()
      assert.matches("bad option 'cpu_limit' to 'run' %(CPU seconds > 0 expected, got 0%)",
        helper.raised(function() box:run("true", { cpu_limit = 0 }) end))
      assert.matches("bad option 'cpu_limit' to 'exec' %(CPU seconds > 0 expected, got %-1%)",
        helper.raised(function() box:exec({ "true" }, { cpu_limit = -1 }) end))
      assert.matches("bad option 'cpu_limit' to 'run' %(number expected",
        helper.raised(function() box:run("true", { cpu_limit = "1" }) end))
      local plain = assert(docker:start { image = helper.IMAGE, accounting = false })
      assert.matches("this box has no accounting",
        helper.raised(function() plain:run("true", { cpu_limit = 1 }) end))
      plain:stop()
    end)
  end)

  describe("the accounting option", function()
    it("false: no figures", function()
      local plain = assert(docker:start { image = helper.IMAGE, accounting = false })
      local r = assert(plain:run("true"))
      assert.is_nil(r.cpu_user)
      assert.is_nil(r.memory_peak)
      assert.not_matches("cpu", tostring(r))
      plain:stop()
    end)

    it("\"engine\": CPU time from the Engine's stats, no peak (the stats have none to reset)", function()
      local b = assert(docker:start { image = helper.IMAGE, accounting = "engine" })
      local r = assert(b:run(SPIN_1S))
      assert.is_true(spun(r), tostring(r))
      assert.is_nil(r.memory_peak)
      r = assert(b:exec({ "sh", "-c", "while :; do :; done" }, { cpu_limit = 0.5, timeout = 20 }))
      assert.equal("cpu_limit", r.status, tostring(r))
      b:stop()
    end)

    it("anything else: a clear error", function()
      assert.matches("bad option 'accounting' to 'start' %(true, false or \"engine\" expected, got \"cgroup\"%)",
        helper.raised(function() docker:start { image = helper.IMAGE, accounting = "cgroup" } end))
    end)
  end)

  it("under gVisor: the sandbox's own count (its kernel's work is the box's)", function()
    if not helper.has_runsc() then
      pending("no runtime runsc on this Engine")
      return
    end
    local b = assert(docker:start { image = helper.IMAGE, runtime = "runsc", lane = "attach" })
    local r = assert(b:run(SPIN_1S))
    assert.is_true(cpu(r) > 0.5 and cpu(r) < 2.5, tostring(r)) -- the sandbox's own threads count too
    r = assert(b:run(ALLOC_100M))
    assert.is_true(r.memory_peak >= 100 * MiB, tostring(r))
    r = assert(b:run("sh -c 'while :; do :; done'", { cpu_limit = 0.5, timeout = 20 }))
    assert.equal("cpu_limit", r.status, tostring(r))
    b:stop()
  end)
end)

-- The cgroup files' readers on recorded files (this host has cgroup v1 only:
-- README.md, "What a step cost", says why v2 cannot run here).
describe("core.cgroup on recorded files", function()
  local dir
  setup(function() dir = helper.tmpdir() end)
  teardown(function() helper.rm_rf(dir) end)

  local CPU_STAT = "usage_usec %d\nuser_usec %d\nsystem_usec %d\nnr_periods 0\nnr_throttled 0\n"
    .. "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n"

  it("v2: cpu.stat's user_usec and system_usec, the figures between begin and finish", function()
    helper.write(dir .. "/cpu.stat", CPU_STAT:format(9823344, 6517093, 3306251))
    local cg = assert(core.cgroup(2, dir .. "/cpu.stat"))
    assert.equal("cgroup", cg.source)
    cg:begin()
    helper.write(dir .. "/cpu.stat", CPU_STAT:format(11823344, 7517093, 4306251))
    assert.near(2, cg:used(), 1e-9)
    local r = {}
    cg:finish(r)
    assert.near(1, r.cpu_user, 1e-9)
    assert.near(1, r.cpu_sys, 1e-9)
    assert.is_nil(r.memory_peak) -- no peak file given
    cg:close()
    r = {}
    cg:begin()
    cg:finish(r)
    assert.is_nil(r.cpu_user) -- closed: no figures, no error
    assert.is_nil(cg:used())
  end)

  it("v1: cpuacct.stat's user and system, in ticks of 1/USER_HZ s", function()
    local hz = tonumber((helper.sh("getconf CLK_TCK")))
    helper.write(dir .. "/cpuacct.stat", "user 13\nsystem 2\n")
    local cg = assert(core.cgroup(1, dir .. "/cpuacct.stat"))
    cg:begin()
    helper.write(dir .. "/cpuacct.stat", ("user %d\nsystem 2\n"):format(13 + hz))
    local r = {}
    cg:finish(r)
    assert.near(1, r.cpu_user, 1e-12)
    assert.equal(0, r.cpu_sys)
    -- a file that no longer reads as counts: the call gets no figures
    cg:begin()
    helper.write(dir .. "/cpuacct.stat", "gone\n")
    r = {}
    cg:finish(r)
    assert.is_nil(r.cpu_user)
    cg:close()
  end)

  it("refuses what is not a count", function()
    for _, text in ipairs { "", "user -1\nsystem 2\n", "user 1 \nsystem 2\n", "user 1\n\nsystem 2\n",
      "user 99999999999999999999\nsystem 2\n", "user 1\nuser 1\nsystem 2\n", "user 1\n", "x" } do
      helper.write(dir .. "/cpuacct.stat", text)
      local cg, err = core.cgroup(1, dir .. "/cpuacct.stat")
      assert.is_nil(cg, text)
      assert.matches("not a cgroup CPU count", err)
    end
    helper.write(dir .. "/cpu.stat", "usage_usec 1\nuser_usec 2\n")
    assert.is_nil((core.cgroup(2, dir .. "/cpu.stat")))
    local cg, err = core.cgroup(1, dir .. "/none")
    assert.is_nil(cg)
    assert.matches("/none", err)
  end)
end)
