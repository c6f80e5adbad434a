-- bench/pool.lua: what a fresh box costs from a warm pool, against a cold
-- start and against the Engine's own floor, all measured in one run:
--
--   floor     create + start + DELETE ?force=1 with raw REST calls (the same
--             image, command line and hardened HostConfig as a box, minus
--             lockup's wait call, attach and first step)
--   cold      docker:start + box:run("true") + box:stop()
--   warm      pool:acquire() under a steady load the refill keeps up with:
--             one acquire + run("true") + release every PERIOD seconds
--   inmate    one call with a fresh box, cold (started for the call) and
--             pooled (lockup.inmate{ pool = n }: the runtime is already up)
--
--   cd /work/main && make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/pool.lua [n] [warm_n] [period]
--
--   n       floor/cold iterations (alternating) and inmate calls of each kind (default 15)
--   warm_n  acquires under the steady load                                     (default 200)
--   period  seconds between two acquires of the steady load                    (default 0.25)
--
-- Targets (issue 13): warm acquire p50 <= 5 ms and p99 <= 20 ms; a pooled
-- inmate call's median <= 20 ms; cold <= 1.05x the floor. About 2 minutes.
local here = arg[0]:match("^(.*)[/\\]") or "."
package.path = here .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local hardening = require "lockup.hardening"
local common = require "common"

local now = core.monotime
local fmt = string.format
local pct = common.pct

local N = math.tointeger(tonumber(arg[1] or 15))
local WARM_N = math.tointeger(tonumber(arg[2] or 200))
local PERIOD = tonumber(arg[3] or 0.25)
assert(N and N > 0 and WARM_N and WARM_N > 0 and PERIOD and PERIOD > 0,
  "usage: lua5.4 bench/pool.lua [n>0] [warm_n>0] [period>0]")
local IMAGE = "busybox:local"
local DIR = here .. "/../spec/fixtures/inmates/basic"

local d = assert(lockup.connect())
common.print_machine(d)
local t_all = now()

local function sorted(list)
  local s = {}
  for i = 1, #list do s[i] = list[i] end
  table.sort(s)
  return s
end

local function ms(x) return x * 1000 end

-- The floor: the Engine's own create + start + remove, nothing else.
local config, host = hardening.container({}, d.socket)
host.AutoRemove = false -- removed by the DELETE, which returns once it is gone
local function floor_once()
  local t0 = now()
  local ok, created = d:request("POST", "/containers/create", { body = {
    Image = IMAGE, Entrypoint = { "/bin/sh", "-c", "read x" }, OpenStdin = true, User = config.User,
    WorkingDir = config.WorkingDir, NetworkDisabled = true, HostConfig = host,
  } })
  assert(ok, created)
  assert(d:request("POST", "/containers/" .. created.Id .. "/start"))
  assert(d:request("DELETE", "/containers/" .. created.Id, { query = { force = 1 } }))
  return now() - t0
end

local function cold_once()
  local t0 = now()
  local box = assert(d:start { image = IMAGE })
  assert(box:run("true"))
  assert(box:stop())
  return now() - t0
end

io.stderr:write("floor and cold, alternating...\n")
floor_once()
cold_once() -- warm-up, not counted
local floor, cold = {}, {}
for i = 1, N do
  floor[i] = floor_once()
  cold[i] = cold_once()
end
floor, cold = sorted(floor), sorted(cold)

io.stderr:write("warm pool under a steady load...\n")
local pool = assert(lockup.pool { docker = d, image = IMAGE, size = 4 })
while pool:stats().ready < 4 do lockup.sleep(0.05) end
local warm = {}
local t_load = now()
for i = 1, WARM_N do
  local due = t_load + (i - 1) * PERIOD
  if now() < due then lockup.sleep(due - now()) end -- the refill runs meanwhile
  local t0 = now()
  local box = assert(pool:acquire())
  warm[i] = now() - t0
  assert(box:run("true"))
  pool:release(box)
end
local load_stats = pool:stats()
assert(pool:close())
warm = sorted(warm)

io.stderr:write("inmate calls, cold and pooled...\n")
local cold_jail = lockup.inmate { dir = DIR, docker = d }
local pooled_jail = lockup.inmate { dir = DIR, docker = d, pool = 2 }
cold_jail:reverse("warm-up")
pooled_jail:reverse("warm-up")
local icold, ipooled = {}, {}
for i = 1, N do
  local t0 = now()
  assert(cold_jail:reverse("foobar") == "raboof")
  icold[i] = now() - t0
  while pooled_jail.pool:stats().ready < 1 do lockup.sleep(0.01) end -- calls one at a time, each on a ready box
  t0 = now()
  assert(pooled_jail:reverse("foobar") == "raboof")
  ipooled[i] = now() - t0
end
pooled_jail:close()
cold_jail:close()
icold, ipooled = sorted(icold), sorted(ipooled)

print()
common.print_table {
  { "what", "n", "median ms", "p99 ms", "" },
  { "floor: create+start+DELETE", tostring(N), fmt("%.1f", ms(pct(floor, 0.5))), fmt("%.1f", ms(pct(floor, 0.99))),
    "raw REST" },
  { "cold box: start+run+stop", tostring(N), fmt("%.1f", ms(pct(cold, 0.5))), fmt("%.1f", ms(pct(cold, 0.99))),
    fmt("%.2fx the floor", pct(cold, 0.5) / pct(floor, 0.5)) },
  { "warm pool:acquire()", tostring(WARM_N), fmt("%.3f", ms(pct(warm, 0.5))), fmt("%.3f", ms(pct(warm, 0.99))),
    fmt("one every %g s; hits %d, misses %d, died %d", PERIOD, load_stats.hits, load_stats.misses, load_stats.died) },
  { "inmate call, cold box", tostring(N), fmt("%.1f", ms(pct(icold, 0.5))), fmt("%.1f", ms(pct(icold, 0.99))), "" },
  { "inmate call, pooled", tostring(N), fmt("%.1f", ms(pct(ipooled, 0.5))), fmt("%.1f", ms(pct(ipooled, 0.99))),
    fmt("%.1fx faster than cold", pct(icold, 0.5) / pct(ipooled, 0.5)) },
}
print()
print(fmt("target warm acquire p50 <= 5 ms: %.3f ms; p99 <= 20 ms: %.3f ms", ms(pct(warm, 0.5)), ms(pct(warm, 0.99))))
print(fmt("target pooled inmate call median <= 20 ms: %.1f ms", ms(pct(ipooled, 0.5))))
print(fmt("target cold box <= 1.05x the floor: %.2fx (%.1f ms against %.1f ms)", pct(cold, 0.5) / pct(floor, 0.5),
  ms(pct(cold, 0.5)), ms(pct(floor, 0.5))))
common.report_leftovers(t_all)
