-- bench/lanes.lua: a step's cost and output throughput on each lane, against
-- baselines measured in the same run.
--
--   make bench-lanes        (builds build/probe, then runs this)
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/lanes.lua [runs] [mib]
--
--   runs  round trips per row, in interleaved rounds   (default 3000)
--   mib   MiB of stdout for the throughput rows         (default 100; 0 skips them)
--
-- Round trip: box:run("true") on the fifo and the attach lane; the same
-- command line (lockup's own, sentinel and all) sent by build/probe, a C
-- program with no Lua, over a raw attach connection (to a container with the
-- same PID 1 as an attach box) and to a local `sh` over pipes (the floor: no
-- container, no relay). Throughput: box:run of `head -c`
-- on each lane, against `docker exec ... | wc -c` and a host pipe
-- (`head -c N /dev/zero | cat >/dev/null`), with this Lua process's CPU.
-- It prints the targets of issue 10 as ratios from this one run.
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local session = require "lockup.session"
local common = require "common"

local now, clock = core.monotime, os.clock
local fmt = string.format
local sh, pct, print_table = common.sh, common.pct, common.print_table

local RUNS = math.tointeger(tonumber(arg[1] or 3000))
local MIB = math.tointeger(tonumber(arg[2] or 100))
assert(RUNS and RUNS >= 100 and MIB and MIB >= 0, "usage: lua5.4 bench/lanes.lua [runs>=100] [mib>=0]")
local IMAGE = "busybox:local"
local ROUNDS = 10
local PROBE = "build/probe"

local function median(samples)
  local s = {}
  for i, v in ipairs(samples) do s[i] = v end
  table.sort(s)
  return pct(s, 0.5)
end

local function must(cmd)
  local out, ok = sh(cmd)
  if not ok then error(fmt("%q failed: %s", cmd, out), 2) end
  return out
end

local function check(what, r, err)
  if not r then error(what .. ": " .. tostring(err), 2) end
  if not r.ok then error(fmt("%s: code %s, stderr %q", what, tostring(r.code), r.stderr), 2) end
  return r
end

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: runs=%d (in %d rounds) mib=%d image=%s", RUNS, ROUNDS, MIB, IMAGE))
print()
local t_all = now()
local ratios = {}

-- 1. Round trip -----------------------------------------------------------------

-- lockup's command line for `true`, as the probe sends it: the token is the
-- probe's to fill in, and the session shell's pid is the shell's own ($$).
local function probe_template()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write((session.command_line("true", "@TOKEN@", nil, 999999):gsub("999999", "$$$$")))
  f:close()
  return path
end

-- The probe's median for n round trips, in ms.
local function probe(n, mode, template, ...)
  local out = must(table.concat({ PROBE, mode, tostring(n), template, ... }, " "))
  return assert(tonumber(out:match("median_ms=([%d.]+)")), "probe said: " .. out)
end

local function round_trip()
  local template = probe_template()
  local fifo_box <close> = assert(docker:start { image = IMAGE, lane = "fifo" })
  local attach_box <close> = assert(docker:start { image = IMAGE, lane = "attach" })
  -- The raw probe's container: the same image, limits and PID 1 (the
  -- lifeline, which relays stdin to the session shell) an attach box has.
  local lifeline = session.lifeline("attach"):gsub("'", "'\\''")
  local raw = must(fmt("docker run -d -i --rm --network none --read-only --cap-drop ALL "
    .. "--security-opt no-new-privileges -u 65534:65534 --log-driver none --entrypoint /bin/sh %s -c '%s' /bin/sh",
    IMAGE, lifeline)):match("%x+")
  local rows = { fifo = {}, attach = {}, raw = {}, pipe = {} }
  local cpu = { fifo = 0, attach = 0 }
  local per = RUNS // ROUNDS
  local ok, err = pcall(function()
    for _, b in ipairs { fifo_box, attach_box } do
      for _ = 1, 100 do check("warm-up", b:run("true")) end
    end
    for _ = 1, ROUNDS do
      for name, b in pairs { fifo = fifo_box, attach = attach_box } do
        local c0 = clock()
        for _ = 1, per do
          local t0 = now()
          check("box:run", b:run("true"))
          rows[name][#rows[name] + 1] = now() - t0
        end
        cpu[name] = cpu[name] + clock() - c0
      end
      rows.raw[#rows.raw + 1] = probe(per, "attach", template, raw) / 1000
      rows.pipe[#rows.pipe + 1] = probe(per, "pipe", template, "/bin/busybox", "sh") / 1000
    end
  end)
  sh("docker rm -f " .. raw)
  os.remove(template)
  if not ok then error(err, 0) end
  local m = { fifo = median(rows.fifo), attach = median(rows.attach), raw = median(rows.raw), pipe = median(rows.pipe) }
  local function ms(s) return fmt("%.4f", s * 1000) end
  print(fmt("round trip of one step, `true` (lockup's command line, sentinel and all); %d rounds; ms", ROUNDS))
  print_table {
    { "how", "n", "median", "cpu/op", "vs local sh over pipes" },
    { 'box:run("true"), fifo lane', tostring(#rows.fifo), ms(m.fifo), ms(cpu.fifo / #rows.fifo),
      fmt("%.2fx", m.fifo / m.pipe) },
    { 'box:run("true"), attach lane', tostring(#rows.attach), ms(m.attach), ms(cpu.attach / #rows.attach),
      fmt("%.2fx (%.2fx the raw attach probe)", m.attach / m.pipe, m.attach / m.raw) },
    { "raw attach probe (build/probe, no Lua)", tostring(per * ROUNDS), ms(m.raw), "-", fmt("%.2fx", m.raw / m.pipe) },
    { "local sh over pipes (build/probe)", tostring(per * ROUNDS), ms(m.pipe), "-", "1x (the floor)" },
  }
  print("  (probe rows: the median of each round's median)")
  print()
  ratios[#ratios + 1] = { "fifo round trip / local pipe", m.fifo / m.pipe, "<=", 1.5 }
  ratios[#ratios + 1] = { "attach round trip / raw attach probe", m.attach / m.raw, "<=", 1.2 }
end

-- 2. Throughput -------------------------------------------------------------------

local function throughput()
  if MIB == 0 then return end
  local bytes = MIB * 1048576
  -- The same producer in the box and on the host: busybox dd in 1 MiB blocks
  -- (busybox head -c writes 4 KiB at a time and cannot do 150 MiB/s anywhere).
  local cmd = fmt("dd if=/dev/zero bs=1048576 count=%d 2>/dev/null", MIB)
  local rows = { { "how", "wall s", "MiB/s", "Lua CPU s per 100 MiB", "bytes" } }
  -- A baseline's best wall time of three, and the byte count it printed.
  local function best_of_3(command)
    local best, len = math.huge, nil
    for _ = 1, 3 do
      local t0 = now()
      local out = must(command)
      best = math.min(best, now() - t0)
      len = tonumber(out:match("%d+"))
    end
    return best, nil, len
  end
  local rates, cpus = {}, {}
  local function row(name, wall, cpu, len)
    rates[name] = len / 1048576 / wall
    cpus[name] = cpu and cpu * 100 / MIB
    rows[#rows + 1] = { name, fmt("%.3f", wall), fmt("%.0f", rates[name]),
      cpu and fmt("%.3f", cpu * 100 / MIB) or "-", len == bytes and "exact" or fmt("WRONG: %d", len) }
  end
  -- Each lane twice: collected into r.stdout (100 MiB held, twice: the
  -- buffer, then the Lua string), and streamed to on_stdout, which counts and
  -- drops the chunks as the baselines' `wc -c` and `cat >/dev/null` do.
  local names = {}
  for _, lane in ipairs { "fifo", "attach" } do
    local box <close> = assert(docker:start { image = IMAGE, lane = lane })
    check("warm-up", box:run("head -c 1048576 /dev/zero"))
    for _, how in ipairs { "collected", "streamed" } do
      local best
      for _ = 1, 3 do -- the best of three
        collectgarbage()
        local n = 0
        local opts = how == "collected" and { max_output = bytes + 1 }
          or { on_stdout = function(chunk) n = n + #chunk end }
        local c0, t0 = clock(), now()
        local r = check("box:run", box:run(cmd, opts))
        local wall, cpu = now() - t0, clock() - c0
        if how == "collected" then n = #r.stdout end
        r = nil -- luacheck: ignore 311
        if not best or wall < best[1] then best = { wall, cpu, n } end
      end
      collectgarbage()
      names[lane .. " " .. how] = fmt("box:run(%q), %s lane, %s", cmd, lane, how)
      row(names[lane .. " " .. how], best[1], best[2], best[3])
    end
    if lane == "attach" then
      names.exec = fmt("docker exec ID %s | wc -c", cmd)
      row(names.exec, best_of_3(fmt("docker exec %s %s | wc -c", box.id, cmd)))
    end
  end
  names.host = fmt("host: busybox %s | cat >/dev/null", cmd)
  row(names.host, best_of_3(fmt("busybox %s | cat >/dev/null; echo %d", cmd, bytes)))
  row(fmt("host: head -c %d /dev/zero | cat >/dev/null", bytes),
    best_of_3(fmt("head -c %d /dev/zero | cat >/dev/null; echo %d", bytes, bytes)))
  print(fmt("output throughput, %d MiB of zeros on stdout", MIB))
  print_table(rows)
  print()
  local function rate(key) return rates[names[key]] end
  ratios[#ratios + 1] = { "fifo throughput / host pipe, streamed", rate("fifo streamed") / rate("host"), ">=", 0.7 }
  ratios[#ratios + 1] = { "fifo throughput / host pipe, collected", rate("fifo collected") / rate("host"), ">=", 0.7 }
  ratios[#ratios + 1] = { "attach throughput / docker exec | wc -c, streamed", rate("attach streamed") / rate("exec"),
    ">=", 0.95 }
  ratios[#ratios + 1] = { "attach throughput / docker exec | wc -c, collected",
    rate("attach collected") / rate("exec"), ">=", 0.95 }
  for _, key in ipairs { "fifo collected", "attach collected" } do
    ratios[#ratios + 1] = { "Lua CPU s per 100 MiB, " .. key, cpus[names[key]], "<=", 0.65 }
  end
end

local ok, err = pcall(function()
  round_trip()
  throughput()
end)
if ok then
  print("targets (issue 10), from this run")
  local t = { { "ratio", "value", "target", "met" } }
  for _, r in ipairs(ratios) do
    local met = (r[3] == "<=" and r[2] <= r[4]) or (r[3] == ">=" and r[2] >= r[4])
    t[#t + 1] = { r[1], fmt("%.2f", r[2]), r[3] .. " " .. r[4], met and "yes" or "NO" }
  end
  print_table(t)
  print()
end
local n_mine = common.report_leftovers(t_all)
if not ok then
  io.stderr:write("bench/lanes.lua failed: ", tostring(err), "\n")
  os.exit(1)
end
if n_mine > 0 then os.exit(1) end
