-- bench/fork.lua: prepare once, fork many (issue 23). In one run:
--
-- 1. a conversion (examples/fork.lua's: a thumbnail from a prepared data set)
--    done three ways, alternating: rebuilding the box for each (start from
--    the thumbnail image, put the data set in, prepare, convert, stop: the
--    baseline), a cold box from the committed image (start, convert, stop),
--    and a fresh copy from a pool that resets boxes (acquire, convert, release);
-- 2. what a reset box costs to hand out: pool:acquire() of a size-1 reset
--    pool, back to back (each box just used and released), against a cold
--    start of the same image; target p50 <= 5 ms, p99 <= 20 ms;
-- 3. a pooled inmate call from a plain script (no lockup.run), back to back:
--    a pool of fresh boxes and one of reset boxes, against the same calls
--    inside lockup.run; target <= 20 ms median with reset.
--
--   make bench-fork
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/fork.lua [conversions] [acquires] [calls]
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, fmt = core.monotime, string.format

local CONVERSIONS = tonumber(arg[1] or 30)
local ACQUIRES = tonumber(arg[2] or 300)
local CALLS = tonumber(arg[3] or 100)
local here = arg[0]:match("^(.*)[/\\]") or "."
local EXAMPLES = here .. "/../examples"
local INMATE = here .. "/../spec/fixtures/inmates/basic"
local START = { memory = "256m", pids = 64, timeout = 60 }

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: conversions=%d per way, acquires=%d, inmate calls=%d per way", CONVERSIONS, ACQUIRES, CALLS))
print()
local t_all = now()

local function summary(samples)
  table.sort(samples)
  return common.pct(samples, 0.5) * 1000, common.pct(samples, 0.99) * 1000
end

local function start(image)
  local opts = { image = image }
  for k, v in pairs(START) do opts[k] = v end
  return assert(docker:start(opts))
end

-- The thumbnail image, and the data set the conversions read.
local base = assert(lockup.content_tag(EXAMPLES .. "/thumbnail", "lockup-thumbnail"))
if not docker:image_exists(base) then assert(docker:build { context = EXAMPLES .. "/thumbnail", tag = base }) end
local DATA = { ["photo.jpg"] = { file = EXAMPLES .. "/photo.jpg" }, ["sizes.txt"] = "64\n120\n" }
local PREPARE = "gm convert data/photo.jpg data/photo.miff"
local CONVERT = "thumbnail data/photo.miff out.jpg 120"

local function prepare(box)
  assert(box:put("data", DATA))
  assert(assert(box:run(PREPARE)).ok)
end

local function convert(box)
  local r = assert(box:run(CONVERT))
  assert(r.ok, r.stderr)
end

local prepared = start(base)
prepare(prepared)
local image = assert(prepared:commit())
prepared:stop()

-- 1. Three ways to a conversion in a clean box, alternating.
local pool = assert(lockup.pool { docker = docker, image = image, size = 2, reset = true, start = START })
pool:release(assert(pool:acquire())) -- the pool is up before the clock runs
local ways = {
  { "rebuild: start, put, prepare, convert, stop", function()
    local box = start(base)
    prepare(box)
    convert(box)
    box:stop()
  end },
  { "cold box of the commit: start, convert, stop", function()
    local box = start(image)
    convert(box)
    box:stop()
  end },
  { "reset pool: acquire, convert, release", function()
    local box = assert(pool:acquire())
    convert(box)
    pool:release(box)
  end },
}
local times = { {}, {}, {} }
lockup.run(function()
  for i = 1, CONVERSIONS do
    for k = 1, 3 do
      local w = (i + k) % 3 + 1 -- which goes first rotates
      local t0 = now()
      ways[w][2]()
      times[w][i] = now() - t0
    end
  end
end)
pool:close()
local base_p50 = summary(times[1])
local rows = { { "a conversion in a clean box", "p50 ms", "p99 ms", "/ rebuild" } }
for w, way in ipairs(ways) do
  local p50, p99 = summary(times[w])
  rows[#rows + 1] = { way[1], fmt("%.1f", p50), fmt("%.1f", p99), fmt("%.3fx", p50 / base_p50) }
end
common.print_table(rows)
print()

-- 2. Handing out a reset box, back to back, from a plain script; a cold
-- start of the same image as the baseline (a tenth as many).
pool = assert(lockup.pool { docker = docker, image = image, size = 1, reset = true, start = START })
pool:release(assert(pool:acquire()))
local hand, cold = {}, {}
for i = 1, ACQUIRES do
  local t0 = now()
  local box = assert(pool:acquire())
  hand[i] = now() - t0
  assert(box:run("echo litter > /work/x; sleep 60 &"))
  pool:release(box)
end
local stats = pool:stats()
pool:close()
for i = 1, math.max(3, math.floor(ACQUIRES / 10)) do
  local t0 = now()
  local box = start(image)
  cold[i] = now() - t0
  box:stop()
end
local h50, h99 = summary(hand)
local c50, c99 = summary(cold)
common.print_table {
  { "handing out a clean box", "p50 ms", "p99 ms", "/ cold start", "target" },
  { "cold start of the commit", fmt("%.2f", c50), fmt("%.2f", c99), "1x (baseline)", "" },
  { "reset pool, back to back", fmt("%.2f", h50), fmt("%.2f", h99), fmt("%.3fx", h50 / c50),
    (h50 <= 5 and h99 <= 20) and "p50 <= 5, p99 <= 20: met" or "p50 <= 5, p99 <= 20: NOT met" },
}
print(fmt("  (%d resets, %d boxes replaced)", stats.resets, stats.reset_failed))
print()

-- 3. Pooled inmate calls back to back: from a plain script, and inside lockup.run.
local function calls(jail, inside)
  local t = {}
  local function go()
    for i = 1, CALLS do
      local t0 = now()
      assert(jail:call("reverse", "abc") == "cba")
      t[i] = now() - t0
    end
  end
  if inside then lockup.run(go) else go() end
  return summary(t)
end
rows = { { "pooled inmate call, back to back", "plain script p50 ms", "p99 ms", "in lockup.run p50 ms", "target" } }
for _, reset in ipairs { false, true } do
  local jail = lockup.inmate { dir = INMATE, docker = docker, pool = 2, reset = reset or nil }
  jail:call("reverse", "")
  lockup.sleep(1) -- the pool full before the clock runs
  local p50, p99 = calls(jail, false)
  lockup.sleep(1)
  local r50 = calls(jail, true)
  jail:close()
  rows[#rows + 1] = { reset and "pool = 2, reset = true" or "pool = 2 (a new box each call)", fmt("%.1f", p50),
    fmt("%.1f", p99), fmt("%.1f", r50), reset and (p50 <= 20 and "<= 20 ms: met" or "<= 20 ms: NOT met") or "" }
end
common.print_table(rows)
docker:remove_image(image)
common.report_leftovers(t_all)
