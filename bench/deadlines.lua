-- bench/deadlines.lua: how long a call with a timeout takes to return while
-- the box floods its output as fast as it can, on each lane, through
-- box:run and box:exec, with and without callbacks (issue 19: within the
-- timeout plus 1 s). The figure is the call's wall time; the ratio is to the
-- timeout measured in the same run (the floor: what the call promised).
--
--   make bench-deadlines
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/deadlines.lua [timeout] [image]
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, fmt = core.monotime, string.format

local TIMEOUT = tonumber(arg[1] or 2)
local IMAGE = arg[2] or "busybox:local"
assert(TIMEOUT and TIMEOUT > 0, "usage: lua5.4 bench/deadlines.lua [timeout>0] [image]")
local FLOODS = { { "stdout", "yes" }, { "stderr", "yes >&2" }, { "both", "yes & yes >&2" } }

local docker = assert(lockup.connect())
common.print_machine(docker)
print(fmt("parameters: timeout=%g s image=%s", TIMEOUT, IMAGE))
print()
local t_all = now()
local function drop() end

local rows = { { "lane", "call", "flood", "callbacks", "returned after (s)", "/ timeout", "status, box after" } }
local worst = 0
for _, lane in ipairs { "fifo", "attach" } do
  for _, how in ipairs { "run", "exec" } do
    for _, flood in ipairs(FLOODS) do
      for _, callbacks in ipairs { true, false } do
        local box = assert(docker:start { image = IMAGE, lane = lane })
        local opts = { timeout = TIMEOUT }
        if callbacks then opts.on_stdout, opts.on_stderr = drop, drop end
        local t0 = now()
        local r, err
        if how == "run" then r, err = box:run(flood[2], opts)
        else r, err = box:exec({ "sh", "-c", flood[2] }, opts) end
        local took = now() - t0
        local after = r and not r.box_stopped and box:run("echo ok")
        rows[#rows + 1] = { lane, "box:" .. how, flood[1], callbacks and "yes" or "no", fmt("%.2f", took),
          fmt("%.2f", took / TIMEOUT), (r and r.status or ("error: " .. tostring(err)))
            .. ((after and after.stdout == "ok\n") and ", answers" or ", stopped") }
        worst = math.max(worst, took - TIMEOUT)
        box:stop()
      end
    end
  end
end
common.print_table(rows)
print()
print(fmt("the slowest call returned %.2f s past its timeout (promise: at most 1 s)", worst))
common.report_leftovers(t_all)
