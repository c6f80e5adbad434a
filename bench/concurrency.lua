-- bench/concurrency.lua: N boxes each running `sleep 1`, all at once from one
-- lockup.run, against the 1 s of one command and against doing them one after
-- another.
--
--   cd /work/main && make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/concurrency.lua [n] [seq] [secs]
--
--   n     boxes in the concurrent runs                       (default 20)
--   seq   boxes in the sequential baseline; when below n the  (default 5)
--         total is extrapolated to n and labelled so; seq = n measures it all
--   secs  what each box sleeps                               (default 1)
--
-- The defaults take about 20-30 s. See bench/README.md for how to read the output.
-- bench/common.lua, wherever the script is run from.
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, clock = core.monotime, os.clock
local fmt = string.format
local pct, print_table = common.pct, common.print_table

local N = math.tointeger(tonumber(arg[1] or 20))
local SEQ = math.tointeger(tonumber(arg[2] or 5))
local SECS = tonumber(arg[3] or 1)
assert(N and N > 0 and SEQ and SEQ > 0 and SECS and SECS >= 0,
  "usage: lua5.4 bench/concurrency.lua [n>0] [seq>0] [secs>=0]")
SEQ = math.min(SEQ, N)
local IMAGE = "busybox:local"
local CMD = fmt("sleep %g", SECS)

-- "min / median / max" of a list of seconds.
local function spread(list)
  if #list == 0 then return "-" end
  local s = table.move(list, 1, #list, 1, {})
  table.sort(s)
  return fmt("%.3f / %.3f / %.3f", s[1], pct(s, 0.5), s[#s])
end

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: n=%d seq=%d command=%q image=%s", N, SEQ, CMD, IMAGE))
print()

-- One box's whole life: start, run CMD, stop. Records phase times (seconds
-- since t0) in rec; any failure is recorded, not raised, and the box is
-- stopped by its <close> all the same (pcall unwinds it).
local function life(t0, rec)
  local ok, err = pcall(function()
    local box <close>, serr = docker:start { image = IMAGE }
    if not box then error("start: " .. tostring(serr), 0) end
    rec.started = now() - t0
    local r, rerr = box:run(CMD)
    if not r then error("run: " .. tostring(rerr), 0) end
    if not r.ok then
      error(fmt("run: code %s stderr %q%s", tostring(r.code), r.stderr,
        r.code == 137 and common.KILLED_HINT[137] or ""), 0)
    end
    rec.ran, rec.cmd = now() - t0, r.duration
    local sok, stop_err = box:stop()
    if not sok then error("stop: " .. tostring(stop_err), 0) end
    rec.stopped = now() - t0
  end)
  if not ok then rec.err = tostring(err) end
end

local function column(recs, f)
  local out = {}
  for _, r in ipairs(recs) do
    local v = f(r)
    if v then out[#out + 1] = v end
  end
  return out
end

local function failures(recs)
  local n, first = 0, nil
  for _, r in ipairs(recs) do
    if r.err then n, first = n + 1, first or r.err end
  end
  return n, first
end

local t_all = now()

-- Warm-up: one box, so the image and the daemon's paths are hot.
do
  local rec = {}
  life(now(), rec)
  assert(not rec.err, rec.err)
end

-- 1. Concurrent: N tasks in one lockup.run, each starting its own box. --------------
local conc = {}
local c_cpu0, c_t0 = clock(), now()
do
  local tasks = {}
  for i = 1, N do
    conc[i] = {}
    tasks[i] = function() life(c_t0, conc[i]) end
  end
  lockup.run(table.unpack(tasks))
end
local conc_wall, conc_cpu = now() - c_t0, clock() - c_cpu0

-- 2. The commands alone: N boxes started first (concurrently), then N `sleep`s
-- at once, then all stopped; each phase timed on its own.
local pre = { start = 0, run = 0, stop = 0, cmds = {}, errs = 0 }
do
  local boxes = {}
  local ok, err = pcall(function()
    lockup.run(function()
      local t = now()
      lockup.run(table.unpack((function()
        local fns = {}
        for i = 1, N do
          fns[i] = function() boxes[i] = assert(docker:start { image = IMAGE }) end
        end
        return fns
      end)()))
      pre.start = now() - t
      t = now()
      local fns = {}
      for i = 1, N do
        fns[i] = function()
          local r = boxes[i]:run(CMD)
          if r and r.ok then pre.cmds[#pre.cmds + 1] = r.duration else pre.errs = pre.errs + 1 end
        end
      end
      lockup.run(table.unpack(fns))
      pre.run = now() - t
    end)
  end)
  -- Stop whatever started, errors or not, all at once.
  local t = now()
  local stops = {}
  for i = 1, N do
    if boxes[i] then stops[#stops + 1] = function() boxes[i]:stop() end end
  end
  if #stops > 0 then lockup.run(table.unpack(stops)) end
  pre.stop = now() - t
  if not ok then pre.err = tostring(err) end
end

-- 3. Sequential baseline: SEQ boxes one after another, same life each. ---------------
local seq = {}
local s_t0 = now()
for i = 1, SEQ do
  seq[i] = {}
  local t = now()
  life(t, seq[i])
  seq[i].total = now() - t
end
local seq_wall = now() - s_t0
local seq_n = SEQ
local seq_total = seq_wall * N / seq_n -- the whole N, extrapolated when SEQ < N
local seq_label = seq_n == N and fmt("sequential, %d boxes (measured)", N)
  or fmt("sequential, %d boxes (EXTRAPOLATED from %d: %.3f s x %d/%d)", N, seq_n, seq_wall, N, seq_n)

-- Report ---------------------------------------------------------------------------------
local nfail_c, first_c = failures(conc)
local nfail_s, first_s = failures(seq)

print(fmt("each box: docker:start, box:run(%q), box:stop; seconds", CMD))
print_table {
  { "mode", "wall s", "vs one command (" .. fmt("%g", SECS) .. " s)", "vs sequential" },
  { fmt("one command (the ideal)"), fmt("%.3f", SECS), "1x", "" },
  { fmt("concurrent, %d boxes in one lockup.run", N), fmt("%.3f", conc_wall),
    SECS > 0 and fmt("%.2fx", conc_wall / SECS) or "-", fmt("%.1fx faster", seq_total / conc_wall) },
  { seq_label, fmt("%.3f", seq_total), SECS > 0 and fmt("%.2fx", seq_total / SECS) or "-", "1x" },
  { fmt("%d commands alone, boxes already up", N), fmt("%.3f", pre.run),
    SECS > 0 and fmt("%.2fx", pre.run / SECS) or "-", "" },
}
print()
print(fmt("concurrent run, per box (min / median / max seconds since the lockup.run began); %d failed%s",
  nfail_c, first_c and (": " .. first_c) or ""))
print_table {
  { "phase", "min / median / max" },
  { "box started (docker:start returned)", spread(column(conc, function(r) return r.started end)) },
  { fmt("command done (%s)", CMD), spread(column(conc, function(r) return r.ran end)) },
  { "box stopped (box:stop returned)", spread(column(conc, function(r) return r.stopped end)) },
  { "command's own duration (result.duration)", spread(column(conc, function(r) return r.cmd end)) },
  { "stop's own duration", spread(column(conc, function(r) return r.stopped and r.stopped - r.ran end)) },
}
print(fmt("  Lua CPU in the concurrent run: %.3f s of %.3f s wall (%.0f%%)", conc_cpu, conc_wall,
  100 * conc_cpu / conc_wall))
print()
print(fmt("phases with the boxes started first (each phase all %d at once): start all %.3f s, %d x %q %.3f s "
  .. "(durations %s), stop all %.3f s%s", N, pre.start, N, CMD, pre.run, spread(pre.cmds), pre.stop,
  (pre.err or pre.errs > 0) and fmt("; ERRORS: %d runs failed %s", pre.errs, pre.err or "") or ""))
print(fmt("sequential, per box: total %s s (start+%s+stop); %d failed%s",
  spread(column(seq, function(r) return r.total end)), CMD, nfail_s, first_s and (": " .. first_s) or ""))
print()

local n_mine = common.report_leftovers(t_all)
if n_mine > 0 or nfail_c > 0 or nfail_s > 0 or pre.err or pre.errs > 0 then os.exit(1) end
