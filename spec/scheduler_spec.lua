-- lockup.scheduler without Docker: many tasks over epoll and a heap of
-- deadlines, a loop that does not grow with the tasks it finished, the user's
-- own coroutines (lockup.wrap/resume), and background tasks. Descriptors are
-- raw pipes (core.pipe). Plain 5.1 syntax: LuaJIT runs it too.
local lockup = require "lockup"
local scheduler = require "lockup.scheduler"
local core = require "lockup.core"

local now = core.monotime
local unpack = table.unpack or unpack -- luacheck: ignore 113 (LuaJIT's)

-- Pipes made by a test, closed after it.
local opened = {}
local function pipe()
  local r, w = assert(core.pipe())
  opened[#opened + 1] = r
  opened[#opened + 1] = w
  return r, w
end

local function close_all()
  for _, fd in ipairs(opened) do core.fd_close(fd) end
  opened = {}
end

-- Everything io.stderr gets while fn runs.
local function stderr_of(fn)
  local saved, got = io.stderr, {}
  local fake = { write = function(self, ...)
    for i = 1, select("#", ...) do got[#got + 1] = tostring((select(i, ...))) end
    return self
  end }
  io.stderr = fake -- luacheck: ignore 122
  local ok, err = pcall(fn)
  io.stderr = saved -- luacheck: ignore 122
  assert(ok, err)
  return table.concat(got)
end

-- The loop holds nothing once every task is done.
local function assert_empty()
  local s = scheduler._stats()
  assert.same({ tasks = 0, ready = 0, timers = 0, fds = 0, tokens = 0 },
    { tasks = s.tasks, ready = s.ready, timers = s.timers, fds = s.fds, tokens = s.tokens })
end

describe("lockup.scheduler", function()
  after_each(close_all)

  describe("many tasks", function()
    it("wakes 1000 tasks waiting on their own pipe and 1000 parked ones, each once", function()
      local n = 1000
      local woke, parked, got = 0, {}, {}
      local fds = {}
      local tasks = {}
      for i = 1, n do
        local r, w = pipe()
        fds[i] = { r, w }
        tasks[#tasks + 1] = function()
          assert.is_true(scheduler.wait(r, "r", now() + 30))
          got[i] = core.fd_read(r)
          woke = woke + 1
        end
        tasks[#tasks + 1] = function()
          parked[i] = coroutine.running()
          assert.is_true(scheduler.park())
          woke = woke + 1
        end
      end
      tasks[#tasks + 1] = function()
        scheduler.yield() -- every other task is waiting by now
        local s = scheduler._stats()
        assert.equal(n, s.fds)
        for i = n, 1, -1 do
          core.fd_write(fds[i][2], tostring(i))
          scheduler.wake(parked[i])
          if i % 100 == 0 then scheduler.yield() end
        end
      end
      lockup.run(unpack(tasks))
      assert.equal(2 * n, woke)
      for i = 1, n do assert.equal(tostring(i), got[i]) end
      assert_empty()
    end)

    it("fires timers in deadline order, also those that expire in the same turn", function()
      local order = {}
      local tasks = {}
      -- Spawned in reverse order of their deadlines, all due while one task
      -- keeps the loop busy: the loop sees them expire together.
      for i = 40, 1, -1 do
        tasks[#tasks + 1] = function()
          scheduler.sleep(i / 1000)
          order[#order + 1] = i
        end
      end
      tasks[#tasks + 1] = function()
        local busy_until = now() + 0.08
        while now() < busy_until do end
      end
      lockup.run(unpack(tasks))
      local want = {}
      for i = 1, 40 do want[i] = i end
      assert.same(want, order)
      assert_empty()
    end)

    it("times a wait on a descriptor out at its deadline", function()
      local r = pipe()
      local t0 = now()
      local ok = lockup.run(function() return scheduler.wait(r, "r", now() + 0.05) end)
      local took = now() - t0
      assert.is_false(ok)
      assert.is_true(took >= 0.045 and took < 1, "took " .. took)
      assert_empty()
    end)

    it("wakes wait_any on either descriptor, and ignores the other one's event later", function()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local woke_on
      lockup.run(function()
        assert.is_true(scheduler.wait_any({ r1, "r", r2, "r" }, now() + 5))
        woke_on = core.fd_read(r2)
        scheduler.sleep(0.02) -- meanwhile r1 becomes ready: nobody waits on it any more
        assert.is_true(scheduler.wait_any({ r1, "r", r2, "r" }, now() + 5))
        woke_on = woke_on .. core.fd_read(r1)
      end, function()
        scheduler.sleep(0.01)
        core.fd_write(w2, "2")
        scheduler.sleep(0.001)
        core.fd_write(w1, "1")
      end)
      assert.equal("21", woke_on)
      assert_empty()
    end)

    it("waits on a descriptor whose number was closed and reused while registered", function()
      local r, w = assert(core.pipe())
      lockup.run(function()
        assert.is_false(scheduler.wait(r, "r", now() + 0.01)) -- leaves r armed in epoll
      end)
      core.fd_close(r)
      core.fd_close(w)
      local r2, w2 = pipe()
      assert.equal(r, r2) -- the lowest free number: the same
      local t0, ok = now(), nil
      lockup.run(function()
        ok = scheduler.wait(r2, "r", now() + 5)
      end, function()
        scheduler.sleep(0.01)
        core.fd_write(w2, "x")
      end)
      assert.is_true(ok)
      assert.is_true(now() - t0 < 2)
      assert_empty()
    end)

    it("counts a regular file as ready at once (epoll refuses it)", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      local fd
      for _, name in ipairs(core.listdir("/proc/self/fd")) do
        if core.realpath("/proc/self/fd/" .. name) == core.realpath(path) then
          fd = tonumber(name)
        end
      end
      assert.is_number(fd)
      local t0 = now()
      local ok = lockup.run(function() return scheduler.wait(fd, "r", now() + 5) end)
      f:close()
      os.remove(path)
      assert.is_true(ok)
      assert.is_true(now() - t0 < 1)
      assert_empty()
    end)
  end)

  describe("a long-lived loop", function()
    it("does not grow with the tasks it finished (10000 spawned)", function()
      local mem = {}
      local done = 0
      lockup.run(function()
        for round = 1, 11 do
          for _ = 1, 1000 do
            scheduler.spawn(function()
              scheduler.yield()
              done = done + 1
            end)
          end
          while scheduler._stats().tasks > 1 do scheduler.sleep(0.001) end
          if round == 1 or round == 11 then
            collectgarbage()
            collectgarbage()
            mem[#mem + 1] = collectgarbage("count")
          end
        end
        local s = scheduler._stats()
        assert.equal(1, s.tasks) -- this one
      end)
      assert.equal(11000, done)
      -- Kept, each would cost a coroutine (about 1 KiB) and its record.
      assert.is_true(mem[2] - mem[1] < 512, string.format("grew %.0f KiB", mem[2] - mem[1]))
      assert_empty()
    end)

    it("counts the failures it does not report", function()
      local err = select(2, pcall(lockup.run, function() error("first") end, function()
        scheduler.sleep(0.01)
        for _ = 1, 3 do scheduler.spawn(function() error("later") end) end
      end))
      assert.matches("first", err)
      assert.matches("%(and 3 more tasks failed%)", err)
      assert_empty()
    end)

    it("still reports a deadlock, and keeps run's results and nested runs", function()
      local err = select(2, pcall(lockup.run, function() scheduler.park() end))
      assert.matches("deadlock", err)
      assert_empty()
      assert.same({ 1, 2 }, { lockup.run(function()
        return lockup.run(function() scheduler.sleep(0.01) return 1 end)
      end, function() return 2 end) })
    end)
  end)

  describe("the user's own coroutines", function()
    it("lets another task's sleep end on time while a wrapped coroutine sleeps", function()
      local t0, b_done = now(), nil
      lockup.run(function()
        local f = lockup.wrap(function(x)
          lockup.sleep(0.3)
          return x * 2
        end)
        assert.equal(42, f(21))
      end, function()
        lockup.sleep(0.1)
        b_done = now() - t0
      end)
      assert.is_true(b_done < 0.25, "task B's 0.1 s sleep ended at " .. b_done)
    end)

    it("passes lockup's waits through lockup.resume and the coroutine's own yields back", function()
      local r, w = pipe()
      local seen = {}
      lockup.run(function()
        local gen = coroutine.create(function(a)
          seen[#seen + 1] = a
          assert.is_true(scheduler.wait(r, "r", now() + 5)) -- the loop's wait, not ours
          local b = coroutine.yield("first", core.fd_read(r))
          -- a wrapped coroutine inside: its waits go through both
          local inner = lockup.wrap(function() lockup.sleep(0.01) return "inner" end)
          seen[#seen + 1] = inner()
          return "done", b
        end)
        assert.same({ true, "first", "x" }, { lockup.resume(gen, "a") })
        assert.same({ true, "done", "b" }, { lockup.resume(gen, "b") })
        assert.same({ false, "cannot resume dead coroutine" }, { lockup.resume(gen) })
      end, function()
        scheduler.sleep(0.01)
        core.fd_write(w, "x")
      end)
      assert.same({ "a", "inner" }, seen)
    end)

    it("raises from a lockup wait in a plain coroutine inside run, naming the way out", function()
      local ok, err
      lockup.run(function()
        ok, err = coroutine.resume(coroutine.create(function() lockup.sleep(0.5) end))
      end)
      assert.is_false(ok)
      assert.matches("use lockup.wrap/lockup.resume for your own coroutines, or lockup.spawn", err, 1, true)
    end)

    it("lets a plain coroutine outside any loop just block, as before", function()
      local t0 = now()
      coroutine.wrap(function() lockup.sleep(0.05) end)()
      assert.is_true(now() - t0 >= 0.045)
    end)

    it("parks, wakes and locks a mutex from wrapped coroutines", function()
      local m = require("lockup.mutex").new()
      local log = {}
      local sleeper
      lockup.run(function()
        lockup.wrap(function()
          assert.is_true(m:lock())
          log[#log + 1] = "a locked"
          lockup.sleep(0.02)
          log[#log + 1] = "a unlocks"
          m:unlock()
        end)()
      end, function()
        lockup.wrap(function()
          assert.is_true(m:lock())
          log[#log + 1] = "b locked"
          m:unlock()
        end)()
      end, function()
        lockup.wrap(function()
          sleeper = coroutine.running()
          assert.is_true(scheduler.park())
          log[#log + 1] = "c woken"
        end)()
      end, function()
        lockup.sleep(0.05)
        scheduler.wake(sleeper)
      end)
      assert.same({ "a locked", "a unlocks", "b locked", "c woken" }, log)
      assert_empty()
    end)
  end)

  describe("background tasks", function()
    after_each(function() -- each test ends its background tasks; give them time to see it
      local deadline = now() + 5
      while scheduler.pending_background() > 0 and now() < deadline do lockup.sleep(0.01) end
      assert.equal(0, scheduler.pending_background())
    end)

    it("progress during a blocking sleep outside run", function()
      local ticks, stop = 0, false
      scheduler.background(function()
        while not stop do
          ticks = ticks + 1
          lockup.sleep(0.01)
        end
      end)
      assert.equal(1, scheduler.pending_background())
      lockup.sleep(0.1)
      assert.is_true(ticks >= 5, "ticks: " .. ticks)
      stop = true
      lockup.sleep(0.02)
    end)

    it("progress while the main thread waits on a descriptor", function()
      local r, w = pipe()
      scheduler.background(function()
        lockup.sleep(0.02)
        core.fd_write(w, "x")
      end)
      local t0 = now()
      assert.is_true(scheduler.wait(r, "r", now() + 5))
      assert.is_true(now() - t0 < 1)
    end)

    it("are not waited for by run, and carry on at the next run", function()
      local steps = {}
      local t0 = now()
      lockup.run(function()
        scheduler.background(function()
          for i = 1, 3 do
            lockup.sleep(0.05)
            steps[#steps + 1] = i
          end
        end)
        lockup.sleep(0.06)
      end)
      assert.is_true(now() - t0 < 0.1)
      assert.same({ 1 }, steps)
      assert.equal(1, scheduler.pending_background())
      lockup.run(function() lockup.sleep(0.15) end)
      assert.same({ 1, 2, 3 }, steps)
    end)

    it("write their error to stderr, and the loop and the caller go on", function()
      local result
      local out = stderr_of(function()
        result = lockup.run(function()
          scheduler.background(function()
            lockup.sleep(0.01)
            error("refill broke")
          end)
          lockup.sleep(0.03)
          return "fine"
        end)
        scheduler.background(function() error("outside too") end)
        lockup.sleep(0.01)
      end)
      assert.equal("fine", result)
      assert.matches("^lockup: background task failed: [^\n]*refill broke\nstack traceback:", out)
      assert.matches("lockup: background task failed: [^\n]*outside too", out)
    end)

    it("park until a foreground call wakes them, and wake a parked foreground caller", function()
      local wanted, have, waiter, waiting = 0, 0, nil, false
      local stop = false
      local refiller
      refiller = scheduler.background(function()
        while not stop do
          while have < wanted do
            lockup.sleep(0.005) -- a start
            have = have + 1
            -- (the main thread is nil on LuaJIT: wake(nil) wakes it)
            if waiting then scheduler.wake(waiter) end
          end
          scheduler.park()
        end
      end)
      local function acquire()
        wanted = wanted + 1
        scheduler.wake(refiller)
        local me = coroutine.running()
        while have < wanted do
          waiter, waiting = me, true
          local ok = scheduler.park(now() + 2)
          waiter, waiting = nil, false
          if not ok then return nil end
        end
        return true
      end
      -- inside run
      assert.is_true(lockup.run(acquire))
      -- outside any loop: the main thread parks and the loop turns
      assert.is_true(acquire())
      assert.equal(2, have)
      -- outside, a wake makes it runnable; it runs at the next blocking call
      stop = true
      scheduler.wake(refiller)
      assert.equal(1, scheduler.pending_background())
      lockup.sleep(0.001)
    end)

    it("let park outside run say it would wait forever when nothing could wake it", function()
      local ok, err = scheduler.park()
      assert.is_nil(ok)
      assert.matches("wait forever", err)
      local bg = scheduler.background(function() scheduler.park() end)
      ok, err = scheduler.park(now() + 5)
      assert.is_nil(ok)
      assert.matches("every background task is parked", err)
      -- and a parked background task can still be woken and finish
      scheduler.wake(bg)
      lockup.sleep(0.001)
    end)
  end)
end)
