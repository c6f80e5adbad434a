-- bench/scheduler.lua: what one busy task's wakeup costs in lockup.run while
-- N other tasks wait on descriptors that never get ready. The loop must not
-- scan them: the cost should stay flat in N (target: at 1000 idle waiters at
-- most 2x the cost with none).
--
--   cd /work/main && make bench-scheduler      # raises `ulimit -n` first
-- or
--   ulimit -n 20000   # N = 5000 takes 10000 descriptors (a pipe each)
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/scheduler.lua [rounds] [sizes]
--
--   rounds  ping-pong round trips per measurement         (default 2000)
--   sizes   idle waiters, comma-separated                  (default 0,100,1000,5000)
--
-- Idle waiters: N tasks, each waiting on the read end of a pipe of its own
-- that nobody writes to; every other one with a deadline an hour away (so
-- the heap holds N/2 deadlines), the rest with none. The busy pair: two tasks
-- playing ping-pong over two more pipes (write a byte, wait for the answer):
-- each round trip is two wakeups, each through the loop's wait. Also the
-- cost of lockup.yield() (sleep(0)) in a loop: one task, through the heap.
-- Each figure is the best of 7 runs of `rounds` round trips (the sizes
-- interleaved, each run with its waiters set up anew), the median beside it;
-- the ratios are of the best, which other load on the machine disturbs
-- least. Sizes that do
-- not fit the descriptor limit are skipped, with a note. Runs in a few
-- seconds; under LuaJIT too (LUA_CPATH='build-luajit/?.so;;', `make luajit`).
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local scheduler = require "lockup.scheduler"
local core = require "lockup.core"
local common = require "common"

local now, fmt = core.monotime, string.format
local unpack = table.unpack or unpack -- luacheck: ignore 113 (LuaJIT's)
local pct, print_table = common.pct, common.print_table

local ROUNDS = math.floor(tonumber(arg[1] or 2000))
local SIZES = {}
for n in (arg[2] or "0,100,1000,5000"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(n) end
assert(ROUNDS > 0 and #SIZES > 0, "usage: lua5.4 bench/scheduler.lua [rounds>0] [sizes, e.g. 0,100,1000]")
local REPEATS = 7

-- The soft limit on open descriptors, from /proc (no setrlimit here: the
-- Makefile's target raises it before it starts us).
local function fd_limit()
  local f = io.open("/proc/self/limits")
  if not f then return math.huge end
  local text = f:read("*a")
  f:close()
  local soft = text:match("Max open files%s+(%S+)")
  return soft == "unlimited" and math.huge or tonumber(soft) or math.huge
end

local function median(list)
  table.sort(list)
  return pct(list, 0.5)
end

-- One measurement at n idle waiters: seconds per wakeup of the ping-pong and
-- per yield.
local function measure(n)
  local idle = {}
  for i = 1, n do
    local r, w = assert(core.pipe())
    idle[i] = { r, w }
  end
  local a_r, a_w = assert(core.pipe())
  local b_r, b_w = assert(core.pipe())
  local pingpong, yields
  lockup.run(function()
    for i = 1, n do
      local r = idle[i][1]
      local deadline = i % 2 == 0 and now() + 3600 or nil
      scheduler.spawn(function()
        scheduler.wait(r, "r", deadline)
      end)
    end
    scheduler.yield() -- every idle task is waiting from here on
    local s = scheduler._stats()
    assert(s.fds == n, "idle waiters: " .. s.fds .. " descriptors registered, " .. n .. " expected")
    local stop = false
    -- the answering side: wait for a byte on a, answer on b
    scheduler.spawn(function()
      while true do
        assert(scheduler.wait(a_r, "r"))
        local got = core.fd_read(a_r)
        if stop or got == "" then return end
        core.fd_write(b_w, "o")
      end
    end)
    local function round_trips(k)
      for _ = 1, k do
        core.fd_write(a_w, "i")
        assert(scheduler.wait(b_r, "r"))
        core.fd_read(b_r)
      end
    end
    round_trips(200) -- warm up
    local t0 = now()
    round_trips(ROUNDS)
    pingpong = (now() - t0) / (2 * ROUNDS)
    t0 = now()
    for _ = 1, ROUNDS do scheduler.yield() end
    yields = (now() - t0) / ROUNDS
    stop = true
    core.fd_write(a_w, "x")
    for i = 1, n do core.fd_write(idle[i][2], "x") end -- the idle ones end too
  end)
  for i = 1, n do
    core.fd_close(idle[i][1])
    core.fd_close(idle[i][2])
  end
  for _, fd in ipairs({ a_r, a_w, b_r, b_w }) do core.fd_close(fd) end
  local s = scheduler._stats()
  assert(s.tasks == 0 and s.fds == 0 and s.timers == 0, "the loop kept something")
  return pingpong, yields
end

print(fmt("machine: nproc=%s; %s; %s; kernel %s; loadavg %s", common.sh("nproc"):gsub("%s+$", ""), _VERSION,
  lockup._VERSION, (common.sh("uname -r"):gsub("%s+$", "")), (common.sh("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", ""))))
print(fmt("one busy task's wakeup with N idle waiters (ping-pong over a pipe; best of %d runs of %d round trips)",
  REPEATS, ROUNDS))
local rows = { { "idle waiters", "us/wakeup", "median", "x N=0", "us/yield", "x N=0", "" } }
local limit = fd_limit()
-- The sizes interleaved, REPEATS times over: a machine that gets busier
-- meanwhile weighs on every size alike.
local wakes, yields = {}, {}
for _ = 1, REPEATS do
  for _, n in ipairs(SIZES) do
    if 2 * n + 64 <= limit then
      local w, y = measure(n)
      wakes[n] = wakes[n] or {}
      yields[n] = yields[n] or {}
      table.insert(wakes[n], w)
      table.insert(yields[n], y)
    end
  end
end
local base, base_y, at1000
for _, n in ipairs(SIZES) do
  if not wakes[n] then
    rows[#rows + 1] = { tostring(n), "-", "-", "-", "-", "-",
      fmt("skipped: needs %d descriptors, the limit is %d (ulimit -n 20000, or make bench-scheduler)", 2 * n + 64, limit) }
  else
    local wake, yield = math.min(unpack(wakes[n])), math.min(unpack(yields[n]))
    base, base_y = base or wake, base_y or yield
    if n == 1000 then at1000 = wake / base end
    rows[#rows + 1] = { tostring(n), fmt("%.1f", wake * 1e6), fmt("%.1f", median(wakes[n]) * 1e6),
      fmt("%.2f", wake / base), fmt("%.1f", yield * 1e6), fmt("%.2f", yield / base_y), n == 0 and "the base" or "" }
  end
end
print_table(rows)
if at1000 then
  print(fmt("ratio at 1000 idle: %.2f (target <= 2)", at1000))
else
  print("ratio at 1000 idle: not measured (give sizes with 0 and 1000)")
end
