-- bench/runtimes.lua: a box's start and a step's round trip under gVisor
-- (runtime "runsc", registered by scripts/setup.sh) against runc, alternating
-- in one run, both on the attach lane (the only one gVisor can take).
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/runtimes.lua [boxes=5] [runs=300]
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local now = require("lockup.core").monotime
local common = require "common"

local fmt = string.format
local BOXES = math.tointeger(tonumber(arg[1] or 5))
local RUNS = math.tointeger(tonumber(arg[2] or 300))
assert(BOXES and BOXES > 0 and RUNS and RUNS > 0, "usage: lua5.4 bench/runtimes.lua [boxes>0] [runs>0]")

local d = assert(lockup.connect())
common.print_machine(d)
local status, info = d:request("GET", "/info")
assert(status, info)
if not (info.Runtimes or {}).runsc then
  print("the Engine has no runtime runsc: run ./scripts/setup.sh with Debian's runsc installed")
  os.exit(1)
end

local RUNTIMES = { "runc", "runsc" }
local starts, trips = { runc = {}, runsc = {} }, { runc = {}, runsc = {} }
local t_all = now()
for _ = 1, BOXES do
  for _, runtime in ipairs(RUNTIMES) do -- alternating, so that load hits both alike
    local t0 = now()
    local box = assert(d:start { image = "busybox:local", runtime = runtime, lane = "attach", pids = 128 })
    local started = now() - t0
    local ok, err = pcall(function()
      assert(box:run("true"))
      local t1 = now()
      for _ = 1, RUNS do assert(box:run("true")) end
      trips[runtime][#trips[runtime] + 1] = (now() - t1) / RUNS
    end)
    box:stop()
    assert(ok, err)
    starts[runtime][#starts[runtime] + 1] = started
  end
end

local rows = { { "what", "runc", "runsc", "runsc / runc" } }
local function row(name, t)
  table.sort(t.runc)
  table.sort(t.runsc)
  local a, b = common.pct(t.runc, 0.5), common.pct(t.runsc, 0.5)
  rows[#rows + 1] = { name, fmt("%.3f ms", a * 1000), fmt("%.3f ms", b * 1000), fmt("%.1fx", b / a) }
end
row(fmt("box:run(\"true\"), attach lane, median over %d boxes of the mean of %d", BOXES, RUNS), trips)
row(fmt("docker:start, attach lane, median of %d", BOXES), starts)
print("gVisor (runsc, ptrace platform) against runc")
common.print_table(rows)
if common.report_leftovers(t_all) > 0 then os.exit(1) end
