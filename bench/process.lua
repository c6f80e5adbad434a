-- bench/process.lua: a line to a spawned process and its answer back
-- (issue 21). The program is busybox sh reading commands from its stdin;
-- the line is `true; echo "\1TOKEN $?"` with a fresh token, and the answer
-- is the line it prints. In one run, in alternating rounds:
--
-- 1. the floor: the same line to the same program on the host over pipes
--    (build/probe -1, C, no Lua, no container);
--    (in the box the token goes without the \1: on a terminal, busybox's
--    line editor takes Ctrl-A as "go to the start of the line")
-- 2. box:spawn's process (pipes): proc:write, then proc:read("line");
-- 3. on a terminal (tty = true), `cat`: the terminal echoes the line, then
--    cat's copy is the answer (busybox sh on a terminal would time each
--    line by its line editor, which asks the terminal for the cursor's
--    place, ESC [6n, and waits 20 ms for an answer that never comes);
-- 4. a step's round trip, box:run("true"), on the fifo and attach lanes
--    (what a caller pays today to have a shell in a box do one thing).
--
--   make bench-process
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/process.lua [lines] [rounds]
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, fmt = core.monotime, string.format

local LINES = tonumber(arg[1] or 2000)
local ROUNDS = tonumber(arg[2] or 5)
local PER_ROUND = math.floor(LINES / ROUNDS)
local IMAGE = "busybox:local"
local here = arg[0]:match("^(.*)[/\\]") or "."
local PROBE = here .. "/../build/probe"

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: lines=%d per way (in %d rounds), image=%s, host program /bin/busybox sh", LINES, ROUNDS, IMAGE))
print()
local t_all = now()

local function median(samples)
  table.sort(samples)
  return common.pct(samples, 0.5), common.pct(samples, 0.99)
end

-- The floor's line for the probe: it fills in @TOKEN@.
local floor_file = os.tmpname()
do
  local f = assert(io.open(floor_file, "w"))
  f:write('true; echo "\1@TOKEN@ $?"\n')
  f:close()
end

-- The probe's median in ms for n round trips (after its own warm-ups).
local function floor_ms(n)
  local out = common.sh(fmt("%s -1 pipe %d %s /bin/busybox sh", PROBE, n, floor_file))
  return assert(tonumber(out:match("median_ms=([%d.]+)")), "probe said: " .. out)
end

-- n lines through proc, each timed: milliseconds. A shell gets the
-- floor's line; `cat` on a terminal the token, which comes back twice.
local function lines(proc, n, samples)
  for _ = 1, n do
    local token = core.random_hex(16)
    local t0 = now()
    if proc.tty then
      assert(proc:write(token .. "\n"))
      assert(assert(proc:read("line", 10)) == token) -- the echo
      assert(assert(proc:read("line", 10)) == token) -- cat's
    else
      assert(proc:write('true; echo "' .. token .. ' $?"\n'))
      assert(assert(proc:read("line", 10)) == token .. " 0")
    end
    samples[#samples + 1] = (now() - t0) * 1e3
  end
end

local function steps(box, n, samples)
  for _ = 1, n do
    local t0 = now()
    local r = assert(box:run("true"))
    assert(r.code == 0)
    samples[#samples + 1] = (now() - t0) * 1e3
  end
end

local fifo_box = assert(docker:start { image = IMAGE, lane = "fifo" })
local attach_box = assert(docker:start { image = IMAGE, lane = "attach" })
local piped = assert(fifo_box:spawn({ "sh" }))
local tty = assert(fifo_box:spawn({ "cat" }, { tty = true }))
-- warm-ups, untimed
lines(piped, 100, {})
lines(tty, 100, {})
steps(fifo_box, 100, {})
steps(attach_box, 100, {})

local floors, s_piped, s_tty, s_fifo, s_attach = {}, {}, {}, {}, {}
for _ = 1, ROUNDS do
  floors[#floors + 1] = floor_ms(PER_ROUND)
  lines(piped, PER_ROUND, s_piped)
  lines(tty, PER_ROUND, s_tty)
  steps(fifo_box, PER_ROUND, s_fifo)
  steps(attach_box, PER_ROUND, s_attach)
end
assert(piped:close_stdin())
assert(tty:close_stdin())
assert(piped:wait(10))
assert(tty:wait(10))
fifo_box:stop()
attach_box:stop()
os.remove(floor_file)

local floor = median(floors)
local rows = { { "a line and its answer", "p50 ms", "p99 ms", "x floor", "" } }
local function row(name, samples, note)
  local p50, p99 = median(samples)
  rows[#rows + 1] = { name, fmt("%.3f", p50), fmt("%.3f", p99), fmt("%.1f", p50 / floor), note or "" }
  return p50
end
rows[#rows + 1] = { "busybox sh on the host over pipes (the floor; C)", fmt("%.3f", floor), "", "1.0",
  "median of the round medians" }
local p_piped = row("box:spawn, pipes: proc:write + proc:read(\"line\")", s_piped)
row("box:spawn, tty = true, cat (echo, then cat's copy)", s_tty)
local p_fifo = row("a step: box:run(\"true\"), fifo lane", s_fifo)
local p_attach = row("a step: box:run(\"true\"), attach lane", s_attach)
common.print_table(rows)
print()
print(fmt("ratios: spawned process / floor %.1fx; a step (fifo) / spawned process %.2fx; a step (attach) / spawned process %.2fx",
  p_piped / floor, p_fifo / p_piped, p_attach / p_piped))
common.report_leftovers(t_all)
