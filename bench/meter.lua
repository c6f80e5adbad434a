-- bench/meter.lua: what accounting costs a trivial step (issue 22: at most
-- 10% on the fifo lane). One box per lane runs `true` in rounds, with its
-- meter (the default: the box's cgroup on this host) and, as the baseline in
-- the same run, with the meter taken away, alternating; so both see the same
-- shell, lane and machine. Also the Engine's stats (accounting = "engine",
-- the way a remote Engine is metered): a few steps, as each waits seconds.
--
--   make bench-meter
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/meter.lua [steps] [image]
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, fmt = core.monotime, string.format

local STEPS = tonumber(arg[1] or 30000)
local IMAGE = arg[2] or "busybox:local"
local ROUND = 100 -- steps in a row on one box before switching

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: steps=%d per box, image=%s, rounds of %d", STEPS, IMAGE, ROUND))
print()
local t_all = now()

-- Median of the per-round mean step time, in ms.
local function median_ms(rounds)
  table.sort(rounds)
  return common.pct(rounds, 0.5) * 1000
end

local rows = { { "lane", "accounting", "step (ms, median of rounds)", "/ no accounting", "target" } }
for _, lane in ipairs { "fifo", "attach" } do
  -- one box, its meter taken away for the baseline's rounds: the same
  -- shell, the same cgroup, the same lane; only the accounting differs
  local box = assert(docker:start { image = IMAGE, lane = lane })
  local meter = box.meter
  assert(meter and meter.source == "cgroup", "no cgroup on this host: nothing to measure")
  assert(box:run("true"))
  local rounds = { {}, {} }
  for r = 1, math.floor(STEPS / ROUND) do
    for k = 1, 2 do
      local i = (r + k) % 2 + 1 -- alternate which goes first
      box.meter = i == 2 and meter or false
      local t0 = now()
      for _ = 1, ROUND do assert(box:run("true")) end
      rounds[i][#rounds[i] + 1] = (now() - t0) / ROUND
    end
  end
  box.meter = meter
  local base = median_ms(rounds[1])
  for i, name in ipairs { "off", "cgroup" } do
    local ms = median_ms(rounds[i])
    rows[#rows + 1] = { lane, name, fmt("%.4f", ms), fmt("%.2fx", ms / base),
      (lane == "fifo" and i == 2) and (ms / base <= 1.10 and "<= 1.10x: met" or "<= 1.10x: NOT met") or "" }
  end
  box:stop()
end
-- The Engine's stats: a request before and one after each call, each
-- waiting for dockerd's next sample; a few steps show the cost.
local box = assert(docker:start { image = IMAGE, accounting = "engine" })
local t = {}
for i = 1, 5 do
  local t0 = now()
  assert(box:run("true"))
  t[i] = now() - t0
end
box:stop()
rows[#rows + 1] = { "default", "engine", fmt("%.1f", median_ms(t)), "", "5 steps; dockerd samples once a second" }
common.print_table(rows)
common.report_leftovers(t_all)
