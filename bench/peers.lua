-- bench/peers.lua: lockup against its peers, side by side in one run, on the
-- same image and machine: dockerode and docker-exec (Node.js), the Docker SDK
-- for Python, the docker CLI, and the Engine's own floor (raw REST calls).
-- Writes bench/results/peers.csv, peers.md, latency.png and scaling.png.
--
--   make bench-peers      (installs what is missing, then runs this)
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/peers.lua [scale] [ns]
--
--   scale  multiplies every sample count (default 1; 0.2 for a quick look)
--   ns     the concurrency levels, comma-separated   (default 1,10,50,100)
--
-- The peers run as subprocesses (bench/peers/node/harness.js,
-- bench/peers/python/harness.py), one suite each, and print their samples as
-- JSON lines; this script computes every statistic the same way for all.
-- The defaults take about 7-8 minutes on 2 cores. See bench/README.md.
local here = arg[0]:match("^(.*)[/\\]") or "."
package.path = here .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local cjson = require "cjson"
local hardening = require "lockup.hardening"
local lifecycle = require "lockup.lifecycle"
local common = require "common"

local now, clock = core.monotime, os.clock
local fmt = string.format
local pct = common.pct

local SCALE = tonumber(arg[1] or 1)
local NS = {}
for n in (arg[2] or "1,10,50,100"):gmatch("%d+") do NS[#NS + 1] = math.tointeger(tonumber(n)) end
assert(SCALE and SCALE > 0 and #NS > 0, "usage: lua5.4 bench/peers.lua [scale>0] [ns, e.g. 1,10,50,100]")

-- docker-exec's harness runs `bash` (hard-coded), which busybox:local lacks:
-- every method uses bash:local (Debian's static bash as /bin/sh, busybox for
-- the rest; built by scripts/setup.sh), lockup's shell included.
local IMAGE = "bash:local"
local BYTES = 64 * 1048576
local OUT_CMD = fmt("dd if=/dev/zero bs=1048576 count=%d 2>/dev/null", BYTES // 1048576)
local INMATE_DIR = here .. "/../spec/fixtures/inmates/basic"
local RESULTS = here .. "/results"
local NODE_DIR = here .. "/peers/node"
local PY = "/usr/bin/python3" -- Debian's, which has python3-docker (not pyenv's)
local PY_HARNESS = here .. "/peers/python/harness.py"
local ROUNDS = 2 -- latency rows are measured in rounds, so a slow patch hits every method

local function count(n) return math.max(2, math.floor(n * SCALE + 0.5)) end
local N_RUN, N_EXEC, N_DXRUN = count(2000), count(100), count(1000)
local N_COLD, N_INMATE, REPS = count(30), count(10), math.max(1, math.floor(3 * math.min(SCALE, 1) + 0.5))
local POOL_SIZE = 2

local function progress(...) io.stderr:write(fmt(...), "\n") end

-- Records -----------------------------------------------------------------------------
-- samples[row][method] = { samples = {...}, cpu = seconds in all }, in order of first sight.
local latency, order = {}, {}
local function add_samples(row, method, samples, cpu)
  local key = row .. "\0" .. method
  local rec = latency[key]
  if not rec then
    rec = { row = row, method = method, samples = {}, cpu = 0 }
    latency[key] = rec
    order[#order + 1] = rec
  end
  table.move(samples, 1, #samples, #rec.samples + 1, rec.samples)
  rec.cpu = rec.cpu + (cpu or 0)
end
local throughput, tp_order = {}, {} -- method -> list of { bytes, want, wall, cpu }
local function add_throughput(method, bytes, want, wall, cpu)
  if not throughput[method] then throughput[method] = {}; tp_order[#tp_order + 1] = method end
  local t = throughput[method]
  t[#t + 1] = { bytes = bytes, want = want, wall = wall, cpu = cpu }
end
local scaling = {} -- list of { method, n, wall, cpu, errors }
local notes = {}
local function add_note(...)
  local text = fmt(...)
  for _, n in ipairs(notes) do if n == text then return end end
  notes[#notes + 1] = text
  progress("  note: %s", text)
end

-- The pool rows run on an API still being written: a failure there is a note, not the end of the run.
local function guarded(what, fn, ...)
  local ok, e = pcall(fn, ...)
  if not ok then add_note("%s failed, left out: %s", what, tostring(e):gsub("\n.*", "")) end
end

-- Runs a peer harness; feeds its JSON lines to the records. Its stderr passes through.
local function peer(cmd)
  local p = assert(io.popen(cmd))
  for line in p:lines() do
    local ok, r = pcall(cjson.decode, line)
    if not ok then error("bad line from " .. cmd .. ": " .. line) end
    if r.kind == "samples" then add_samples(r.row, r.method, r.samples, r.cpu_s)
    elseif r.kind == "throughput" then add_throughput(r.method, r.bytes, r.want, r.wall_s, r.cpu_s)
    elseif r.kind == "scale" then scaling[#scaling + 1] = { method = r.method, n = r.n, wall = r.wall_s,
      cpu = r.cpu_s, errors = r.errors } end
  end
  local ok, how, code = p:close()
  if not ok then error(fmt("%s failed (%s %s)", cmd, tostring(how), tostring(code))) end
end
local function node(...) return peer(fmt("cd %s && node harness.js %s", NODE_DIR, table.concat({ ... }, " "))) end
local function python(...) return peer(fmt("%s %s %s", PY, PY_HARNESS, table.concat({ ... }, " "))) end

-- lockup's own rows ------------------------------------------------------------------------
local docker = assert(lockup.connect())

local function check(what, r, err)
  if not r then error(what .. ": " .. tostring(err), 2) end
  if not r.ok then error(fmt("%s: code %s, stderr %q%s", what, tostring(r.code), r.stderr or "",
    common.KILLED_HINT[r.code] or ""), 2) end
  return r
end

-- Times fn n times: samples and CPU seconds in all.
local function measure(n, fn)
  local s, c0 = {}, clock()
  for i = 1, n do
    local t0 = now()
    fn(i)
    s[i] = now() - t0
  end
  return s, clock() - c0
end

local function lockup_step(n_run, n_exec)
  for _, lane in ipairs { "fifo", "attach" } do
    local box <close> = assert(docker:start { image = IMAGE, lane = lane })
    for _ = 1, 50 do check("warm-up", box:run("true")) end
    add_samples("step", fmt('lockup box:run("true"), %s lane', lane),
      measure(n_run, function() check("box:run", box:run("true")) end))
    if lane == "fifo" then
      for _ = 1, 3 do check("warm-up exec", box:exec { "true" }) end
      add_samples("step", 'lockup box:exec{"true"}', measure(n_exec, function() check("box:exec", box:exec { "true" }) end))
    end
  end
end

-- The Engine's floor for a cold box: the fewest REST calls that make a
-- container with lockup's configuration, start it and remove it, on lockup's
-- own HTTP client (so only what lockup does on top is left out): POST
-- /containers/create with the HostConfig lockup's start sends
-- (hardening.container: read-only root, two tmpfs mounts, CapDrop ALL,
-- no-new-privileges, memory/swap, NanoCpus, PidsLimit, ulimits, log driver
-- none, NetworkMode none, user 65534) plus a read-only bind of an empty host
-- directory where the fifo lane binds its FIFOs; `sleep 3600` as the process
-- instead of lockup's lifeline; AutoRemove off, since the DELETE removes it.
-- Then POST start, then DELETE ?force=1 (kill and remove in one call).
-- Not included: the wait call, the attach or FIFOs, the shell's first answer.
local FLOOR_DIR = os.tmpname()
os.remove(FLOOR_DIR)
assert(os.execute("mkdir -p " .. FLOOR_DIR))
local function floor_body()
  local config, host = hardening.container({ image = IMAGE }, docker.socket)
  host.AutoRemove = false
  host.Binds = { FLOOR_DIR .. ":/.lockup:ro" }
  return {
    Image = IMAGE, Entrypoint = { "sleep", "3600" }, User = config.User, WorkingDir = config.WorkingDir,
    Labels = { [lifecycle.OWNER_LABEL] = lifecycle.owner() }, NetworkDisabled = config.NetworkDisabled,
    Tty = false, HostConfig = host,
  }
end
local FLOOR_BODY = floor_body()
local FLOOR_DELETE = "Engine floor: REST create+start+delete?force"
local FLOOR_AUTO = "Engine floor: REST create+wait+start+kill (AutoRemove)"
local function floor_once()
  local status, created = docker:request("POST", "/containers/create", { body = FLOOR_BODY })
  if not status then error("floor create: " .. tostring(created)) end
  local id = created.Id
  local ok, err = docker:request("POST", "/containers/" .. id .. "/start")
  local dok, derr = docker:request("DELETE", "/containers/" .. id, { query = { force = 1 } })
  if not ok then error("floor start: " .. tostring(err)) end
  if not dok then error("floor delete: " .. tostring(derr)) end
end

-- The floor's second variant tears down the way lockup does: AutoRemove on,
-- the wait for `removed` asked before the start, POST kill, then the wait's answer.
local FLOOR_AUTO_BODY = floor_body()
FLOOR_AUTO_BODY.HostConfig.AutoRemove = true
local function floor_auto_once()
  local status, created = docker:request("POST", "/containers/create", { body = FLOOR_AUTO_BODY })
  if not status then error("floor create: " .. tostring(created)) end
  local id = created.Id
  local waiter, werr = docker:send("POST", "/containers/" .. id .. "/wait",
    { query = { condition = "removed" }, dedicated = true })
  local ok, err = docker:request("POST", "/containers/" .. id .. "/start")
  local kok, kerr = docker:request("POST", "/containers/" .. id .. "/kill")
  local wok, wr = nil, werr
  if waiter then
    wok, wr = docker:receive(waiter, now() + 30)
    waiter.conn:close()
  end
  if not ok then error("floor start: " .. tostring(err)) end
  if not kok then error("floor kill: " .. tostring(kerr)) end
  if not wok then error("floor wait: " .. tostring(wr)) end
end

-- lockup's cold box and the two floors, alternating sample by sample (a
-- slow patch of the machine hits all three alike).
local function cold_and_floor(n)
  local function lockup_once()
    local box = assert(docker:start { image = IMAGE })
    assert(box:stop())
  end
  lockup_once()
  floor_once()
  floor_auto_once()
  local fns = { lockup_once, floor_once, floor_auto_once }
  local names = { "lockup docker:start + box:stop", FLOOR_DELETE, FLOOR_AUTO }
  local samples, cpu = { {}, {}, {} }, { 0, 0, 0 }
  for i = 1, n do
    for k = 1, 3 do
      local c0, t0 = clock(), now()
      fns[k]()
      samples[k][i], cpu[k] = now() - t0, cpu[k] + clock() - c0
    end
  end
  for k = 1, 3 do add_samples("cold", names[k], samples[k], cpu[k]) end
end

-- Waits (inside lockup.run) until the pool has `size` boxes ready, at most 10 s.
local function pool_full(pool)
  local deadline = now() + 10
  while now() < deadline do
    local ok, st = pcall(pool.stats, pool)
    if ok and type(st) == "table" and st.ready and st.size and st.ready >= st.size then return true end
    lockup.sleep(0.02)
  end
  return false
end

-- A box from a pool: acquire (the caller's wait for a usable box) and
-- acquire + stop (start..usable..gone, as for a cold box), each sample taken
-- with the pool full again (the refill is the pool's background work, not the caller's).
local function lockup_pool(n)
  if not lockup.pool then
    add_note("pool rows skipped: lockup.pool is nil (the pool API has not landed)")
    return
  end
  lockup.run(function()
    local pool = assert(lockup.pool { docker = docker, image = IMAGE, size = POOL_SIZE })
    local ok, err = pcall(function()
      local acq, total, cpu = {}, {}, 0
      for i = 0, n do
        if not pool_full(pool) then add_note("pool: not full again within 10 s (sample %d)", i) end
        local c0, t0 = clock(), now()
        local box = assert(pool:acquire(30))
        local t1 = now()
        assert(box:stop())
        if i > 0 then -- the first is a warm-up
          acq[i], total[i], cpu = t1 - t0, now() - t0, cpu + clock() - c0
        end
      end
      add_samples("cold", "lockup pool:acquire()", acq, cpu)
      add_samples("cold", "lockup pool:acquire() + box:stop", total, cpu)
    end)
    local st = pool:stats()
    pool:close()
    if not ok then error(err, 0) end
    add_note("pool stats after the pool rows: %s", cjson.encode(st))
  end)
end

-- Inmate calls: jail:reverse("foobar") with a fresh box per call, from a warm
-- pool of POOL_SIZE, against the CLI running the same Lua in the jail's image.
local function inmates(n)
  local jail = lockup.inmate { dir = INMATE_DIR, docker = docker }
  local function call(j)
    local r = j:reverse("foobar")
    if r ~= "raboof" then error("jail:reverse returned " .. tostring(r)) end
  end
  call(jail)
  add_samples("inmate", "lockup inmate call, cold", measure(n, function() call(jail) end))
  local cli = fmt("docker run --rm --network none %s lua5.4 -e 'print((\"foobar\"):reverse())'", jail.image)
  local function cli_once()
    local out = common.sh(cli)
    if out ~= "raboof\n" then error(cli .. ": " .. out) end
  end
  cli_once()
  add_samples("inmate", "docker run --rm IMAGE lua5.4 -e ... (CLI)", measure(n, cli_once))
  if not lockup.pool then
    add_note("pooled inmate row skipped: lockup.pool is nil (the pool API has not landed)")
    return
  end
  guarded("pooled inmate row", lockup.run, function()
    local pj = lockup.inmate { dir = INMATE_DIR, docker = docker, pool = POOL_SIZE }
    local ok, err = pcall(function()
      local s, cpu = {}, 0
      for i = 0, n do
        if pj.pool and not pool_full(pj.pool) then add_note("inmate pool: not full again within 10 s") end
        local c0, t0 = clock(), now()
        call(pj)
        if i > 0 then s[i], cpu = now() - t0, cpu + clock() - c0 end
      end
      add_samples("inmate", "lockup inmate call, pooled", s, cpu)
    end)
    if pj.close then pj:close() end
    if not ok then error(err, 0) end
  end)
end

local function lockup_throughput(reps)
  for _, lane in ipairs { "fifo", "attach" } do
    local box <close> = assert(docker:start { image = IMAGE, lane = lane })
    check("warm-up", box:run("head -c 1048576 /dev/zero"))
    local cap = { max_output = BYTES + 1 }
    for _ = 1, reps do
      collectgarbage()
      local c0, t0 = clock(), now()
      local r = check("box:run", box:run(OUT_CMD, cap))
      add_throughput(fmt("lockup box:run, %s lane (collected)", lane), #r.stdout, BYTES, now() - t0, clock() - c0)
      r = nil -- luacheck: ignore
      collectgarbage()
      local got = 0
      c0, t0 = clock(), now()
      check("box:run on_stdout", box:run(OUT_CMD, { on_stdout = function(chunk) got = got + #chunk end }))
      add_throughput(fmt("lockup box:run, %s lane (on_stdout)", lane), got, BYTES, now() - t0, clock() - c0)
      if lane == "fifo" then
        got = 0
        c0, t0 = clock(), now()
        check("box:exec", box:exec({ "sh", "-c", OUT_CMD }, { on_stdout = function(chunk) got = got + #chunk end }))
        add_throughput("lockup box:exec (on_stdout)", got, BYTES, now() - t0, clock() - c0)
      end
    end
  end
end

-- N tasks in one lockup.run, each: docker:start, box:run("true"), box:stop.
local function lockup_scale(n)
  local errors, first = 0, nil
  local function life()
    local ok, err = pcall(function()
      local box <close> = assert(docker:start { image = IMAGE })
      check("box:run", box:run("true"))
      assert(box:stop())
    end)
    if not ok then errors, first = errors + 1, first or err end
  end
  life()
  local tasks = {}
  for i = 1, n do tasks[i] = life end
  local c0, t0 = clock(), now()
  lockup.run(table.unpack(tasks))
  local wall, cpu = now() - t0, clock() - c0
  if first then add_note("lockup scale %d: %d failed: %s", n, errors, tostring(first)) end
  scaling[#scaling + 1] = { method = "lockup tasks", n = n, wall = wall, cpu = cpu, errors = errors }
end

-- Statistics and output -------------------------------------------------------------------------

local function stats(samples)
  local s = table.move(samples, 1, #samples, 1, {})
  table.sort(s)
  return { n = #s, median = pct(s, 0.5), p99 = pct(s, 0.99) }
end

local function median(list)
  local s = table.move(list, 1, #list, 1, {})
  table.sort(s)
  return pct(s, 0.5)
end

-- The baseline (lockup's row) each kind of row is compared with.
local BASE = {
  step = 'lockup box:run("true"), fifo lane',
  cold = "lockup docker:start + box:stop",
  inmate = "lockup inmate call, cold",
  throughput = "lockup box:run, fifo lane (on_stdout)",
  scale = "lockup tasks",
}

local function ratio(x, base)
  if not x or not base or base == 0 then return "" end
  local r = x / base
  return r >= 100 and fmt("%.0f", r) or r >= 10 and fmt("%.1f", r) or r >= 0.01 and fmt("%.2f", r) or fmt("%.1g", r)
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function report(machine, elapsed)
  os.execute("mkdir -p " .. RESULTS)
  local csv = { "row,method,n,median_ms,p99_ms,mib_s,cpu_s,wall_s,x_lockup" }
  local function csv_row(t) local o = {}; for i, v in ipairs(t) do o[i] = csv_field(v) end; csv[#csv + 1] = table.concat(o, ",") end
  local md = { "# lockup and its peers", "", "Written by `bench/peers.lua` (`make bench-peers`); every number below is from one run.", "",
    "```", machine, "```", "",
    fmt("Image `%s` for every method (docker-exec runs `bash`); inmate rows on the jail's image. "
      .. "Times in ms; `x lockup` = this row's median time / lockup's in the same run (below 1: faster than lockup). "
      .. "`cpu/op` = the client process's own CPU per operation (for the CLI: the docker processes it ran). "
      .. "p99 is interpolated between ranks: with n < 100 it is close to the maximum.", IMAGE), "" }

  local stat_of = {}
  for _, rec in ipairs(order) do stat_of[rec.row .. "\0" .. rec.method] = stats(rec.samples) end
  local titles = {
    step = "Step: one trivial command (`true`) in a container already running",
    cold = "A fresh box: start, usable, gone",
    inmate = "Inmate call: `reverse(\"foobar\")` in Lua, a fresh box per call",
  }
  for _, row in ipairs { "step", "cold", "inmate" } do
    local base = stat_of[row .. "\0" .. BASE[row]]
    md[#md + 1] = "## " .. titles[row]
    md[#md + 1] = ""
    md[#md + 1] = "| method | n | median ms | p99 ms | cpu/op ms | x lockup |"
    md[#md + 1] = "|---|--:|--:|--:|--:|--:|"
    for _, rec in ipairs(order) do
      if rec.row == row then
        local st = stat_of[row .. "\0" .. rec.method]
        local x = ratio(st.median, base and base.median)
        md[#md + 1] = fmt("| %s | %d | %.3f | %.3f | %.3f | %s |", rec.method, st.n, st.median * 1e3, st.p99 * 1e3,
          rec.cpu / st.n * 1e3, x)
        csv_row { row, rec.method, st.n, fmt("%.4f", st.median * 1e3), fmt("%.4f", st.p99 * 1e3), "",
          fmt("%.6f", rec.cpu / st.n), "", x }
      end
    end
    if row == "cold" then
      local f1, f2 = stat_of["cold\0" .. FLOOR_DELETE], stat_of["cold\0" .. FLOOR_AUTO]
      local floor = f1 and f2 and (f1.median <= f2.median and f1 or f2) or f1 or f2
      if base and floor then
        local r = base.median / floor.median
        md[#md + 1] = ""
        md[#md + 1] = fmt("lockup cold / Engine floor (the faster of its two variants, by median) = **%.2fx** "
          .. "(target <= 1.05x: %s).", r, r <= 1.05 and "met" or "NOT met")
      end
    end
    md[#md + 1] = ""
  end

  md[#md + 1] = fmt("## Output throughput: %d MiB of zeros on stdout (`%s`)", BYTES // 1048576, OUT_CMD)
  md[#md + 1] = ""
  md[#md + 1] = "| method | reps | median s | MiB/s | cpu s | bytes check | x lockup |"
  md[#md + 1] = "|---|--:|--:|--:|--:|---|--:|"
  local tp_base
  do
    local b = throughput[BASE.throughput]
    if b then tp_base = median((function() local w = {}; for i, t in ipairs(b) do w[i] = t.wall end; return w end)()) end
  end
  for _, method in ipairs(tp_order) do
    local list = throughput[method]
    local walls, cpus, okb = {}, {}, true
    for i, t in ipairs(list) do
      walls[i], cpus[i] = t.wall, t.cpu
      if t.bytes < t.want then okb = false end
    end
    local w, c = median(walls), median(cpus)
    local mibs = list[1].want / 1048576 / w
    local check_text = okb and (list[1].bytes == list[1].want and "exact" or fmt("%d (TTY: + echo)", list[1].bytes)) or "SHORT"
    local x = ratio(w, tp_base)
    md[#md + 1] = fmt("| %s | %d | %.3f | %.1f | %.3f | %s | %s |", method, #list, w, mibs, c, check_text, x)
    csv_row { "throughput", method, #list, fmt("%.4f", w * 1e3), "", fmt("%.1f", mibs), fmt("%.4f", c), fmt("%.4f", w), x }
  end
  md[#md + 1] = ""

  md[#md + 1] = "## Scaling: N boxes at once, each start + `true` + gone"
  md[#md + 1] = ""
  local methods, seen = {}, {}
  for _, s in ipairs(scaling) do if not seen[s.method] then seen[s.method] = true; methods[#methods + 1] = s.method end end
  local head, rule = { "| method" }, { "|---" }
  for _, n in ipairs(NS) do head[#head + 1] = fmt(" N=%d wall s (cpu s) x lockup", n); rule[#rule + 1] = "--:" end
  md[#md + 1] = table.concat(head, " |") .. " |"
  md[#md + 1] = table.concat(rule, "|") .. "|"
  local function find(method, n) for _, s in ipairs(scaling) do if s.method == method and s.n == n then return s end end end
  for _, m in ipairs(methods) do
    local cells = { "| " .. m }
    for _, n in ipairs(NS) do
      local s, b = find(m, n), find(BASE.scale, n)
      if s then
        local x = ratio(s.wall, b and b.wall)
        cells[#cells + 1] = fmt(" %.2f (%.2f) %s%s", s.wall, s.cpu, m == BASE.scale and "" or x .. "x",
          s.errors > 0 and fmt(" **%d failed**", s.errors) or "")
        csv_row { "scale", m, n, "", "", "", fmt("%.4f", s.cpu), fmt("%.4f", s.wall), x }
      else
        cells[#cells + 1] = " -"
      end
    end
    md[#md + 1] = table.concat(cells, " |") .. " |"
  end
  md[#md + 1] = ""
  if #notes > 0 then
    md[#md + 1] = "## Notes"
    md[#md + 1] = ""
    for _, n in ipairs(notes) do md[#md + 1] = "- " .. n end
    md[#md + 1] = ""
  end
  md[#md + 1] = fmt("Total bench time %.0f s. What each method does: bench/README.md (peers.lua).", elapsed)

  local f = assert(io.open(RESULTS .. "/peers.csv", "w")); f:write(table.concat(csv, "\n"), "\n"); f:close()
  f = assert(io.open(RESULTS .. "/peers.md", "w")); f:write(table.concat(md, "\n"), "\n"); f:close()
  print(table.concat(md, "\n"))

  -- Plots: data files for gnuplot (bench/peers/plot.gp).
  local lat = os.tmpname()
  f = assert(io.open(lat, "w"))
  f:write("label\tmedian_ms\tp99_ms\tgroup\n")
  local group = { step = 0, cold = 1, inmate = 2 }
  for _, row in ipairs { "inmate", "cold", "step" } do -- gnuplot draws the first line at the bottom
    for i = #order, 1, -1 do
      local rec = order[i]
      if rec.row == row then
        local st = stat_of[row .. "\0" .. rec.method]
        f:write(fmt("%s\t%.4f\t%.4f\t%d\n", (row .. ": " .. rec.method):gsub('"', "'"), st.median * 1e3, st.p99 * 1e3, group[row]))
      end
    end
  end
  f:close()
  local sc = os.tmpname()
  f = assert(io.open(sc, "w"))
  for i, m in ipairs(methods) do
    if i > 1 then f:write("\n\n") end
    f:write(fmt("%q\n", m))
    for _, n in ipairs(NS) do
      local s = find(m, n)
      if s then f:write(fmt("%d %.4f %.4f\n", n, s.wall, s.cpu)) end
    end
  end
  f:close()
  local cmd = fmt("gnuplot -e \"latdat='%s'; scaledat='%s'; outdir='%s'; nmethods=%d\" %s/peers/plot.gp",
    lat, sc, RESULTS, #methods, here)
  local ok = os.execute(cmd)
  os.remove(lat)
  os.remove(sc)
  if not ok then error("gnuplot failed: " .. cmd) end
end

-- Main --------------------------------------------------------------------------------------------

local t_all = now()
local machine
do -- common.print_machine prints it: keep the line for peers.md too
  local print0 = print
  print = function(s) machine = s end -- luacheck: ignore
  common.print_machine(docker)
  print = print0 -- luacheck: ignore
end
print(machine)
progress("bench/peers.lua: image %s, scale %g, ns %s; samples: run %d, exec %d, docker-exec run %d, cold %d, inmate %d, reps %d",
  IMAGE, SCALE, table.concat(NS, ","), N_RUN, N_EXEC, N_DXRUN, N_COLD, N_INMATE, REPS)

local ok, err = pcall(function()
  local function per_round(n) return math.max(1, n // ROUNDS) end
  for round = 1, ROUNDS do
    progress("[%3.0f s] round %d/%d: steps (lockup, node, python + CLI)", now() - t_all, round, ROUNDS)
    lockup_step(per_round(N_RUN), per_round(N_EXEC))
    node("step", IMAGE, per_round(N_EXEC), per_round(N_DXRUN))
    python("step", IMAGE, per_round(N_EXEC))
    progress("[%3.0f s] round %d/%d: cold boxes", now() - t_all, round, ROUNDS)
    cold_and_floor(per_round(N_COLD))
    guarded("pool rows", lockup_pool, per_round(N_COLD))
    node("cold", IMAGE, per_round(N_COLD))
    python("cold", IMAGE, per_round(N_COLD))
  end
  progress("[%3.0f s] inmates", now() - t_all)
  inmates(N_INMATE)
  progress("[%3.0f s] throughput, %d MiB x %d", now() - t_all, BYTES // 1048576, REPS)
  lockup_throughput(REPS)
  node("throughput", IMAGE, BYTES, REPS)
  python("throughput", IMAGE, BYTES, REPS)
  for _, n in ipairs(NS) do
    progress("[%3.0f s] scaling, N = %d", now() - t_all, n)
    lockup_scale(n)
    node("scale", IMAGE, n)
    python("scale", IMAGE, n, "sdk")
    python("scale", IMAGE, n, "cli")
  end
end)
os.execute("rmdir " .. FLOOR_DIR)
if not ok then
  io.stderr:write("bench/peers.lua failed: ", tostring(err), "\n")
  common.report_leftovers(t_all)
  os.exit(1)
end
report(machine, now() - t_all)
local n_mine = common.report_leftovers(t_all)
if n_mine > 0 then os.exit(1) end
