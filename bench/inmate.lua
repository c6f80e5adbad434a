-- bench/inmate.lua: what one inmate call costs (a fresh box per call), against
-- a bare `docker run --rm` of the same image running Lua, measured in the same
-- run; the same call in local mode; and N calls at once.
--
--   cd /work/main && make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/inmate.lua [n] [conc] [secs] [local_n]
--
--   n        jail calls and `docker run` iterations, alternating  (default 10 each)
--   conc     calls at once in the concurrency run                (default 20)
--   secs     what each of those sleeps in the jail               (default 1)
--   local_n  local-mode calls                                    (default 1000)
--
-- The inmate is spec/fixtures/inmates/basic (its image is built the first time,
-- outside the timings). The defaults take about 20 s. See bench/README.md.
-- bench/common.lua, wherever the script is run from.
local here = arg[0]:match("^(.*)[/\\]") or "."
package.path = here .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, clock = core.monotime, os.clock
local fmt = string.format
local pct, print_table, sh = common.pct, common.print_table, common.sh

local N = math.tointeger(tonumber(arg[1] or 10))
local CONC = math.tointeger(tonumber(arg[2] or 20))
local SECS = tonumber(arg[3] or 1)
local LOCAL_N = math.tointeger(tonumber(arg[4] or 1000))
assert(N and N > 0 and CONC and CONC > 0 and SECS and SECS >= 0 and LOCAL_N and LOCAL_N > 0,
  "usage: lua5.4 bench/inmate.lua [n>0] [conc>0] [secs>=0] [local_n>0]")
local DIR = here .. "/../spec/fixtures/inmates/basic"

local function stats(samples)
  local s = table.move(samples, 1, #samples, 1, {})
  table.sort(s)
  return { n = #s, median = pct(s, 0.5), p90 = pct(s, 0.9), min = s[1], max = s[#s] }
end

local function ms(s) return fmt("%.3f", s * 1000) end

local function ratio_text(x, base, what)
  if x == base then return "1x (baseline)" end
  local r = x / base
  if r >= 1 then return fmt("%.2fx %s", r, what) end
  if r < 0.01 then return fmt("%.0fx faster than %s", 1 / r, what) end
  return fmt("%.2fx %s (%.1fx faster)", r, what, 1 / r)
end

local function row(name, x, note)
  return { name, tostring(x.n), ms(x.median), ms(x.p90), ms(x.min), ms(x.max), note }
end

local docker = assert(lockup.connect())
common.print_machine(docker)

local t_all = now()

local function bench()
  local t0 = now()
  local jail = lockup.inmate { dir = DIR, docker = docker }
  print(fmt("parameters: n=%d conc=%d secs=%g local_n=%d inmate=%s image=%s (ready in %.2f s)",
    N, CONC, SECS, LOCAL_N, DIR, jail.image, now() - t0))
  print()

  -- 1. One call, fresh box each time, against docker run --rm of the same image.
  local cli = fmt("docker run --rm --network none %s lua5.4 -e 'print(1)'", jail.image)
  local function call_once()
    local r = jail:reverse("foobar")
    if r ~= "raboof" then error("jail:reverse returned " .. tostring(r), 0) end
  end
  local function cli_once()
    local out, ok, how, code = sh(cli)
    if not ok or out ~= "1\n" then
      error(fmt("%s: %s %s, output %q%s", cli, tostring(how), tostring(code), out,
        common.KILLED_HINT[code] or ""), 0)
    end
  end
  call_once() -- warm-up: the image's layers in page cache, the daemon's paths
  cli_once()
  local call_s, cli_s, call_cpu = {}, {}, 0
  for i = 1, N do -- alternating, so that a slow patch of the machine hits both alike
    local c0, s0 = clock(), now()
    call_once()
    call_s[i], call_cpu = now() - s0, call_cpu + (clock() - c0)
    s0 = now()
    cli_once()
    cli_s[i] = now() - s0
  end
  local call, base = stats(call_s), stats(cli_s)

  -- 2. The same call in local mode (the runner in this process, no container).
  local loc = lockup.inmate { dir = DIR, local_mode = true }
  assert(loc:reverse("foobar") == "raboof")
  local local_s = {}
  for i = 1, LOCAL_N do
    local s0 = now()
    loc:reverse("foobar")
    local_s[i] = now() - s0
  end
  local lo = stats(local_s)

  print(fmt("one call of reverse(\"foobar\"), %d each, alternating with the baseline; ms", N))
  print_table {
    { "what", "n", "median", "p90", "min", "max", "median vs docker run" },
    row('jail:reverse("foobar") (fresh box)', call, ratio_text(call.median, base.median, "docker run")),
    row("docker run --rm --network none IMAGE lua5.4 -e 'print(1)'", base, "1x (baseline)"),
    row('local mode: loc:reverse("foobar")', lo, ratio_text(lo.median, base.median, "docker run")),
  }
  print(fmt("  (a jail call's cpu in this Lua process: %.1f ms; local mode does the same framing and codec work,"
    .. " so its row is the protocol's own cost)", call_cpu / N * 1000))
  print()

  -- 3. CONC calls at once, each sleeping SECS in its own box.
  local results, tasks = {}, {}
  for i = 1, CONC do
    tasks[i] = function()
      local ok, a, b = pcall(jail.sleep, jail, SECS, i)
      results[i] = ok and (a == SECS and b == i) or tostring(a)
    end
  end
  local c0 = now()
  lockup.run(table.unpack(tasks))
  local wall = now() - c0
  local bad = 0
  for i = 1, CONC do
    if results[i] ~= true then
      bad = bad + 1
      io.stderr:write(fmt("concurrent call %d: %s\n", i, tostring(results[i])))
    end
  end
  local seq = CONC * (call.median + SECS)
  print(fmt("%d calls at once of sleep(%g) in one lockup.run; s", CONC, SECS))
  print_table {
    { "what", "wall s", "vs one call", "note" },
    { fmt("%d concurrent jail:sleep(%g)", CONC, SECS), fmt("%.2f", wall),
      fmt("%.1fx", wall / (call.median + SECS)), fmt("%d of %d correct", CONC - bad, CONC) },
    { "one call (median call + sleep)", fmt("%.2f", call.median + SECS), "1x", "" },
    { fmt("%d one after another", CONC), fmt("%.2f", seq), fmt("%.1fx", seq / (call.median + SECS)),
      "ESTIMATED: n x (median call + sleep), not measured" },
  }
  print()
  if bad > 0 then error(bad .. " concurrent calls failed", 0) end
end

local ok, err = pcall(bench)

-- Every call's box is stopped by the jail (a <close> variable), even on error.
local n_mine = common.report_leftovers(t_all)
if not ok then
  io.stderr:write("bench/inmate.lua failed: ", tostring(err), "\n")
  os.exit(1)
end
if n_mine > 0 then os.exit(1) end
