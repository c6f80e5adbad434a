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
-- Round trip: box:run("true") on a fifo box of busybox sh, dash and bash
-- (busybox:local, debian-lua:local, bash:local), each against the same shell
-- on the host over pipes, driven by build/probe, a C program with no Lua:
-- the floor is the bare `true` there, followed by the article's sentinel
-- (`true; echo "<token> $?"`, stdout only); a second baseline sends lockup's
-- own command line (sentinels on both streams, guard and all). The attach
-- lane on busybox, against lockup's line over a raw attach connection (to a
-- container with the same PID 1 as an attach box). Columns: this Lua
-- process's CPU per step, and the shell's (the box's session shell, from
-- /proc/PID/schedstat on the host; the probe's shell likewise).
-- Throughput: box:run of `dd` on each lane, against `docker exec ... | wc -c`
-- and a host pipe, with this Lua process's CPU.
-- It prints the targets of issues 10 and 19 as ratios from this one run.
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local shell_text = require "lockup.shell"
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

-- The shells a round trip is measured on: a fifo box of each image against
-- the same shell on the host over pipes (build/probe, no Lua). The floor is
-- the bare `true` there, followed by the article's sentinel, `echo` of a
-- token and $? on stdout (probe -1: stderr is not waited for): the least a
-- caller can send to learn that a command ended. The second baseline is
-- lockup's own command line for `true` to the same shell, sentinels on both
-- streams, guard and all, with its once-per-session definition sent first
-- (bash), so the difference from the box is the lane, the container and Lua.
local SHELLS = {
  { name = "busybox sh", image = IMAGE, argv = "/bin/busybox sh", bash = false },
  { name = "dash", image = "debian-lua:local", argv = "dash", bash = false },
  { name = "bash", image = "bash:local", argv = "bash", bash = true },
}

local function write_file(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- lockup's command line for `true`, as the probe sends it: the token is the
-- probe's to fill in, and the session shell's pid is the shell's own ($$).
-- Returns the template's path and the preamble's (or nil).
local FAKE_PID = 999999
local function lockup_template(bash)
  local shell = { shell_pid = FAKE_PID, step_fn = bash, unalias = true }
  local line = shell_text.command_line("true", "@TOKEN@", nil, shell):gsub(tostring(FAKE_PID), "$$")
  return write_file(line), bash and write_file((shell_text.definition(FAKE_PID):gsub(tostring(FAKE_PID), "$$")) .. "\n") or nil
end
local FLOOR = write_file('true; echo "\1@TOKEN@ $?"\n')

-- The probe's median for n round trips, in ms, and its own and (pipe mode)
-- the shell's CPU seconds per round trip.
local function probe(n, mode, template, ...)
  local out = must(table.concat({ PROBE, mode, tostring(n), template, ... }, " "))
  local mine, shell = out:match("probe_cpu_us=([%d.]+)"), out:match("shell_cpu_us=([%d.]+)")
  return assert(tonumber(out:match("median_ms=([%d.]+)")), "probe said: " .. out),
    mine and tonumber(mine) / 1e6, shell and tonumber(shell) / 1e6
end

-- A box's session shell, as a host pid (its CPU time is in /proc/PID/schedstat):
-- the process in the container's cgroup whose pid in the box is box.shell_pid.
local function host_pid(box)
  for _, dir in ipairs { "/sys/fs/cgroup/cpuacct/docker/", "/sys/fs/cgroup/system.slice/docker-" } do
    local f = io.open(dir .. box.id .. (dir:find("slice") and ".scope" or "") .. "/cgroup.procs")
    if f then
      for pid in f:lines() do
        local st = io.open("/proc/" .. pid .. "/status")
        local text = st and st:read("a") or ""
        if st then st:close() end
        if tonumber((text:match("NSpid:[^\n]-(%d+)%s*\n"))) == box.shell_pid then
          f:close()
          return pid
        end
      end
      f:close()
    end
  end
end

-- CPU seconds a process has run (nil when unknown).
local function cpu_of(pid)
  local f = pid and io.open("/proc/" .. pid .. "/schedstat")
  if not f then return nil end
  local ns = tonumber(f:read("l"):match("^%d+"))
  f:close()
  return ns / 1e9
end

local function available(s)
  local _, has_image = sh("docker image inspect " .. s.image .. " >/dev/null")
  local _, has_shell = sh("command -v " .. s.argv:match("^%S+"))
  return has_image and has_shell
end

local function round_trip()
  local shells = {}
  for i, s in ipairs(SHELLS) do
    if i == 1 or available(s) then shells[#shells + 1] = s -- busybox is the bench's own image
    else print(fmt("(no %s rows: needs the image %s and %s on the host; scripts/setup.sh builds the images)",
      s.name, s.image, s.argv)) end
  end
  local boxes, cleanup = {}, {}
  local rows, cpu, shell_cpu = {}, {}, {}
  local function add(key, v) rows[key] = rows[key] or {}; rows[key][#rows[key] + 1] = v end
  local function add_cpu(t, key, v) if v then t[key] = (t[key] or 0) + v end end
  local per = RUNS // ROUNDS
  local ok, err = pcall(function()
    for _, s in ipairs(shells) do
      s.template, s.preamble = lockup_template(s.bash)
      cleanup[#cleanup + 1] = s.template
      cleanup[#cleanup + 1] = s.preamble
      boxes[#boxes + 1] = { key = s.name .. " fifo", box = assert(docker:start { image = s.image, lane = "fifo" }) }
    end
    -- The attach lane, and the raw probe's container: the same image, limits
    -- and PID 1 (the lifeline, which relays stdin to the session shell) an
    -- attach box has. busybox only.
    boxes[#boxes + 1] = { key = "attach", box = assert(docker:start { image = IMAGE, lane = "attach" }) }
    local lifeline = shell_text.lifeline("attach"):gsub("'", "'\\''")
    local raw = must(fmt("docker run -d -i --rm --network none --read-only --cap-drop ALL "
      .. "--security-opt no-new-privileges -u 65534:65534 --log-driver none --entrypoint /bin/sh %s -c '%s' /bin/sh",
      IMAGE, lifeline)):match("%x+")
    cleanup.raw = raw
    for _, b in ipairs(boxes) do
      b.pid = host_pid(b.box)
      for _ = 1, 100 do check("warm-up", b.box:run("true")) end
    end
    for _ = 1, ROUNDS do
      for _, b in ipairs(boxes) do
        local c0, s0 = clock(), cpu_of(b.pid)
        for _ = 1, per do
          local t0 = now()
          check("box:run", b.box:run("true"))
          add(b.key, now() - t0)
        end
        add_cpu(cpu, b.key, clock() - c0)
        local s1 = cpu_of(b.pid)
        add_cpu(shell_cpu, b.key, s0 and s1 and s1 - s0)
      end
      local function probed(key, ...)
        local m, mine, shell = probe(per, ...)
        add(key, m / 1000)
        add_cpu(cpu, key, mine and mine * per)
        add_cpu(shell_cpu, key, shell and shell * per)
      end
      probed("raw", "attach", shells[1].template, raw)
      for _, s in ipairs(shells) do
        probed(s.name .. " floor", "-1 pipe", FLOOR, s.argv)
        probed(s.name .. " line", s.preamble and ("-p " .. s.preamble .. " pipe") or "pipe", s.template, s.argv)
      end
    end
  end)
  for _, b in ipairs(boxes) do b.box:stop() end
  if cleanup.raw then sh("docker rm -f " .. cleanup.raw) end
  for _, path in ipairs(cleanup) do os.remove(path) end
  if not ok then error(err, 0) end
  local m = {}
  for key, samples in pairs(rows) do m[key] = median(samples) end
  local function ms(s) return s and fmt("%.4f", s * 1000) or "-" end
  local n_all = per * ROUNDS
  -- CPU per round trip, the client's and the shell's, and their sum (nil
  -- when the shell's is unknown).
  local function cpus(key)
    local c, sc = cpu[key] and cpu[key] / n_all, shell_cpu[key] and shell_cpu[key] / n_all
    return c, sc, c and sc and c + sc
  end
  local function x(a, b) return a and b and fmt("%.2fx", a / b) or "-" end
  print(fmt("round trip of one step, `true`; %d rounds; ms", ROUNDS))
  local t = { { "how", "n", "median", "client cpu", "shell cpu", "x floor", "x floor, cpu", "x lockup's line" } }
  local function row(name, key, floor, line)
    local c, sc, sum = cpus(key)
    local _, _, floor_sum = cpus(floor)
    t[#t + 1] = { name, tostring(key:find("fifo") and #rows[key] or n_all), ms(m[key]), ms(c), ms(sc),
      floor and x(m[key], m[floor]) or "1x", floor and x(sum, floor_sum) or "1x", line and x(m[key], m[line]) or "-" }
  end
  for _, s in ipairs(shells) do
    local key = s.name
    row(fmt('box:run("true"), fifo lane, %s (%s)', key, s.image), key .. " fifo", key .. " floor", key .. " line")
    row(fmt("local %s over pipes, lockup's command line", s.argv), key .. " line", key .. " floor")
    row(fmt("local %s over pipes, bare `true` (the floor)", s.argv), key .. " floor")
    ratios[#ratios + 1] = { fmt("fifo step / floor, %s (issue 19)", key), m[key .. " fifo"] / m[key .. " floor"],
      "<=", s.name ~= "dash" and 2 or nil }
  end
  local floor1 = shells[1].name .. " floor"
  row(fmt('box:run("true"), attach lane, %s', IMAGE), "attach", floor1, "raw")
  row("raw attach probe (build/probe, no Lua), lockup's line", "raw", floor1)
  print_table(t)
  print("  (probe rows: the median of each round's median. cpu per round trip: the client's (this Lua process,")
  print("   or build/probe) and the shell's (the box's session shell, or the host's), both from the kernel's")
  print("   accounting; \"x floor, cpu\" compares their sums, which move less than the medians with where the")
  print("   scheduler puts the two processes: on one CPU a round trip is two context switches, on two it is")
  print("   two wakeups by IPI, dearer on a VM)")
  print()
  local line1 = shells[1].name
  ratios[#ratios + 1] = { "fifo step / lockup's line over local pipes, " .. line1 .. " (issue 10)",
    m[line1 .. " fifo"] / m[line1 .. " line"], "<=", 1.5 }
  ratios[#ratios + 1] = { "attach round trip / raw attach probe (issue 10)", m.attach / m.raw, "<=", 1.2 }
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
  print("targets (issues 10 and 19), from this run")
  local t = { { "ratio", "value", "target", "met" } }
  for _, r in ipairs(ratios) do
    local met = r[4] and ((r[3] == "<=" and r[2] <= r[4]) or (r[3] == ">=" and r[2] >= r[4]))
    t[#t + 1] = { r[1], fmt("%.2f", r[2]), r[4] and (r[3] .. " " .. r[4]) or "-", r[4] and (met and "yes" or "NO") or "-" }
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
