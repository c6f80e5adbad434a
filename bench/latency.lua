-- bench/latency.lua: what one command costs, three ways, on the same box.
--
--   cd /work/main && make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/latency.lua [runs] [execs] [starts] [mib]
--
--   runs    box:run("true") iterations                      (default 2000)
--   execs   box:exec({"true"}) and `docker exec` iterations  (default 30 each)
--   starts  box start+stop and `docker run --rm` iterations  (default 5 each)
--   mib     MiB read from /dev/zero for the throughput test  (default 100; 0 skips it)
--
-- The defaults take about 30 s. See bench/README.md for how to read the output.
-- bench/common.lua, wherever the script is run from.
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, clock = core.monotime, os.clock
local fmt = string.format
local sh, pct, print_table, KILLED_HINT = common.sh, common.pct, common.print_table, common.KILLED_HINT

local RUNS = math.tointeger(tonumber(arg[1] or 2000))
local EXECS = math.tointeger(tonumber(arg[2] or 30))
local STARTS = math.tointeger(tonumber(arg[3] or 5))
local MIB = math.tointeger(tonumber(arg[4] or 100))
assert(RUNS and RUNS > 0 and EXECS and EXECS > 0 and STARTS and STARTS > 0 and MIB and MIB >= 0,
  "usage: lua5.4 bench/latency.lua [runs>0] [execs>0] [starts>0] [mib>=0]")
local IMAGE = "busybox:local"

-- Statistics ------------------------------------------------------------------

local function stats(samples)
  local s = table.move(samples, 1, #samples, 1, {})
  table.sort(s)
  local sum = 0
  for _, v in ipairs(s) do sum = sum + v end
  return { n = #s, median = pct(s, 0.5), p90 = pct(s, 0.9), mean = sum / #s, min = s[1], max = s[#s] }
end

local function ms(s) return fmt("%.3f", s * 1000) end

local function ratio_text(x, base, what)
  if x == base then return "1x (baseline)" end
  local r = x / base
  if r >= 1 then return fmt("%sx slower than %s", r >= 10 and fmt("%.0f", r) or fmt("%.1f", r), what) end
  return fmt("%.1fx faster than %s", 1 / r, what)
end

-- Helpers -----------------------------------------------------------------------

-- Runs a shell command line, failing loudly if it does not exit 0.
local function must(cmd)
  local ok, how, code = os.execute(cmd)
  if not ok then error(fmt("%q failed (%s %s)", cmd, tostring(how), tostring(code)), 2) end
end

-- Times `fn` n times; returns wall samples and this process's CPU seconds in all.
local function measure(n, fn)
  local samples = {}
  local c0 = clock()
  for i = 1, n do
    local t0 = now()
    fn(i)
    samples[i] = now() - t0
  end
  return samples, clock() - c0
end

local function check_result(what, r, err)
  if not r then error(what .. ": " .. tostring(err), 2) end
  if not r.ok then error(fmt("%s: code %s, stderr %q%s", what, tostring(r.code), r.stderr or "", KILLED_HINT[r.code] or ""), 2) end
  return r
end

-- Main ----------------------------------------------------------------------------

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: runs=%d execs=%d starts=%d mib=%d image=%s", RUNS, EXECS, STARTS, MIB, IMAGE))
print()

local t_all = now()

-- 1. Per-command round trip, on one box --------------------------------------------
local function per_command()
  local box <close> = assert(docker:start { image = IMAGE })
  local cli = fmt("docker exec %s true", box.id)

  -- Warm-up: the box's shell, the daemon's exec path, the CLI binary in page cache.
  for _ = 1, 50 do check_result("warm-up run", box:run("true")) end
  for _ = 1, 3 do check_result("warm-up exec", box:exec({ "true" })) end
  for _ = 1, 2 do must(cli) end

  -- Interleaved in rounds (each round: a share of the runs, one exec, one CLI
  -- exec) so that a slow patch of the machine hits all three alike.
  local run_s, exec_s, cli_s = {}, {}, {}
  local run_cpu, exec_cpu, cli_cpu = 0, 0, 0
  local rounds = math.max(EXECS, 1)
  local done_runs = 0
  for round = 1, rounds do
    local share = (RUNS * round) // rounds - done_runs
    local s, c = measure(share, function() check_result("box:run", box:run("true")) end)
    table.move(s, 1, #s, #run_s + 1, run_s)
    run_cpu, done_runs = run_cpu + c, done_runs + share
    if round <= EXECS then
      s, c = measure(1, function() check_result("box:exec", box:exec({ "true" })) end)
      exec_s[#exec_s + 1], exec_cpu = s[1], exec_cpu + c
      s, c = measure(1, function() must(cli) end)
      cli_s[#cli_s + 1], cli_cpu = s[1], cli_cpu + c
    end
  end

  local run, exec, clix = stats(run_s), stats(exec_s), stats(cli_s)
  print(fmt("per-command round trip on one box (%s, %s lane), interleaved; ms; cpu = this Lua process's CPU per op",
    box.id:sub(1, 12), box.lane_name))
  print_table {
    { "command", "n", "median", "p90", "mean", "min", "max", "cpu/op", "median vs box:run" },
    { 'box:run("true")', tostring(run.n), ms(run.median), ms(run.p90), ms(run.mean), ms(run.min), ms(run.max),
      ms(run_cpu / run.n), ratio_text(run.median, run.median, "run") },
    { 'box:exec({"true"})', tostring(exec.n), ms(exec.median), ms(exec.p90), ms(exec.mean), ms(exec.min),
      ms(exec.max), ms(exec_cpu / exec.n), "exec API: " .. ratio_text(exec.median, run.median, "run") },
    { "docker exec ID true", tostring(clix.n), ms(clix.median), ms(clix.p90), ms(clix.mean), ms(clix.min),
      ms(clix.max), ms(cli_cpu / clix.n), "CLI exec: " .. ratio_text(clix.median, run.median, "run") },
  }
  print(fmt("  (box:run cpu/op is %.0f%% of its median wall time; the CLI row's cpu is only the fork/wait in Lua,"
    .. " not the docker CLI's own)", 100 * (run_cpu / run.n) / run.median))
  print()
end

-- 2. Box start + stop vs docker run --rm ---------------------------------------------
local function start_stop()
  local start_s, run1_s, stop_s, total_s, total_run_s = {}, {}, {}, {}, {}
  local cli_s = {}
  local cli = fmt("docker run --rm --network none %s true", IMAGE)
  do -- warm-up, one of each
    local b <close> = assert(docker:start { image = IMAGE })
    check_result("warm-up run", b:run("true"))
    assert(b:stop())
    must(cli)
  end
  for i = 1, STARTS do
    local t0 = now()
    local b <close> = assert(docker:start { image = IMAGE })
    local t1 = now()
    check_result("first run", b:run("true"))
    local t2 = now()
    assert(b:stop())
    local t3 = now()
    start_s[i], run1_s[i], stop_s[i] = t1 - t0, t2 - t1, t3 - t2
    total_s[i], total_run_s[i] = (t1 - t0) + (t3 - t2), t3 - t0
    local c0 = now()
    must(cli)
    cli_s[i] = now() - c0
  end
  local st, r1, sp, tot, totr, c = stats(start_s), stats(run1_s), stats(stop_s), stats(total_s),
    stats(total_run_s), stats(cli_s)
  print(fmt("box lifecycle, %d each, alternating; ms (start+stop excludes the first run's time)", STARTS))
  local function row(name, x, note)
    return { name, tostring(x.n), ms(x.median), ms(x.p90), ms(x.mean), ms(x.min), ms(x.max), note or "" }
  end
  print_table {
    { "phase", "n", "median", "p90", "mean", "min", "max", "median vs docker run --rm" },
    row("docker:start", st),
    row('first box:run("true")', r1),
    row("box:stop", sp),
    row("start+stop", tot, ratio_text(tot.median, c.median, "docker run --rm")),
    row('start+run("true")+stop', totr, ratio_text(totr.median, c.median, "docker run --rm")),
    row("docker run --rm --network none", c, "1x (baseline)"),
  }
  print()
end

-- 3. Output throughput ------------------------------------------------------------------
local function throughput()
  if MIB == 0 then return end
  local bytes = MIB * 1048576
  local box <close> = assert(docker:start { image = IMAGE })
  check_result("warm-up", box:run("head -c 1048576 /dev/zero"))
  local rows = { { "command", "bytes", "wall s", "cpu s", "MiB/s", "MB/s", "length check" } }
  local function one(name, fn)
    collectgarbage()
    local c0, t0 = clock(), now()
    local r = check_result(name, fn())
    local wall, cpu = now() - t0, clock() - c0
    local len = #r.stdout
    rows[#rows + 1] = { name, tostring(len), fmt("%.3f", wall), fmt("%.3f", cpu), fmt("%.1f", len / 1048576 / wall),
      fmt("%.1f", len / 1e6 / wall), len == bytes and "ok (exact)" or fmt("WRONG: want %d", bytes) }
    r = nil -- luacheck: ignore
    collectgarbage()
  end
  local cmd = fmt("head -c %d /dev/zero", bytes)
  local cap = { max_output = bytes + 1 } -- above the default cap (64 MiB) for 100 MiB
  one(fmt('box:run("%s")', cmd), function() return box:run(cmd, cap) end)
  one(fmt('box:run("%s") again', cmd), function() return box:run(cmd, cap) end)
  one(fmt('box:exec({"head","-c","%d","/dev/zero"})', bytes), function()
    return box:exec({ "head", "-c", tostring(bytes), "/dev/zero" }, cap)
  end)
  -- The same bytes through the CLI, counted by wc (for scale, not lockup).
  local t0 = now()
  local out = sh(fmt("docker exec %s head -c %d /dev/zero | wc -c", box.id, bytes))
  local wall = now() - t0
  local len = tonumber(out:match("%d+")) or -1
  rows[#rows + 1] = { fmt("docker exec ID head -c %d /dev/zero | wc -c", bytes), tostring(len), fmt("%.3f", wall), "-",
    fmt("%.1f", len / 1048576 / wall), fmt("%.1f", len / 1e6 / wall),
    len == bytes and "ok (exact)" or fmt("WRONG: want %d", bytes) }
  print(fmt("output throughput, %d MiB of zeros on stdout; cpu = this Lua process", MIB))
  print_table(rows)
  print()
end

local ok, err = pcall(function()
  per_command()
  start_stop()
  throughput()
end)

-- Every box above is stopped by its <close> (even on error); check none is left.
local n_mine = common.report_leftovers(t_all)
if not ok then
  io.stderr:write("bench/latency.lua failed: ", tostring(err), "\n")
  os.exit(1)
end
if n_mine > 0 then os.exit(1) end
