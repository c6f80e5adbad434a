-- bench/openresty.lua: lockup inside nginx. Requests that each run a command
-- in a fresh box (start, run, stop) through one nginx worker, `conc` at a
-- time, against the same commands as `docker run --rm` at the same
-- concurrency; meanwhile /ping on the same worker, whose latency shows that
-- nothing blocks it.
--
--   make && make luajit
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/openresty.lua [requests=40] [conc=8]
--
-- nginx is started as the specs start it (spec/support/nginx.lua: Debian's
-- nginx with its lua module, one worker, 127.0.0.1).
local here = arg[0]:match("^(.*)[/\\]") or "."
package.path = here .. "/?.lua;" .. here .. "/../spec/?.lua;" .. package.path
local common = require "common"
local nginx = require "support.nginx"
local core = require "lockup.core"
local lockup = require "lockup"

local now = core.monotime
local fmt = string.format
local REQUESTS = math.tointeger(tonumber(arg[1] or 40))
local CONC = math.tointeger(tonumber(arg[2] or 8))
assert(REQUESTS and REQUESTS > 0 and CONC and CONC > 0, "usage: lua5.4 bench/openresty.lua [requests>0] [conc>0]")

-- Runs `cmd` (which prints one time in seconds per line) for 1..REQUESTS,
-- CONC at a time; returns the sorted times and the wall time.
local function load(cmd)
  local t0 = now()
  local p = io.popen(fmt("seq %d | xargs -P %d -I{} %s", REQUESTS, CONC, cmd))
  local times = {}
  for line in p:lines() do times[#times + 1] = tonumber(line) end
  p:close()
  local wall = now() - t0
  table.sort(times)
  assert(#times == REQUESTS, fmt("%d of %d requests answered", #times, REQUESTS))
  return times, wall
end

common.print_machine(assert(lockup.connect()))
local t_all = now()
local server = nginx.start()
local ok, err = pcall(function()
  local url = fmt("http://127.0.0.1:%d", server.port)
  -- one request first: the worker loads lockup
  assert(server:get("/run?cmd=true"):find('"code":0', 1, true), server:log())
  -- /ping probes every 50 ms while the load runs, from a background shell
  local pings = server.dir .. "/pings"
  local prober = io.popen(fmt("while [ ! -e %s.stop ]; do curl -s -o /dev/null -w '%%{time_total}\\n' %s/ping; "
    .. "sleep 0.05; done >%s; echo done", pings, url, pings))
  local box_times, box_wall = load(fmt("curl -s -o /dev/null -w '%%{time_total}\\n' '%s/run?cmd=true'", url))
  os.execute("touch " .. pings .. ".stop")
  prober:read("a")
  prober:close()
  local ping_times = {}
  for line in io.lines(pings) do ping_times[#ping_times + 1] = tonumber(line) end
  table.sort(ping_times)
  local base_times, base_wall = load("sh -c 'a=$(date +%s.%N); docker run --rm --network none busybox:local true; "
    .. "b=$(date +%s.%N); echo \"$b - $a\" | bc'")
  local function ms(t, p) return fmt("%.0f ms", common.pct(t, p) * 1000) end
  print(fmt("%d requests, %d at a time: each a fresh box running `true` (start, run, stop)", REQUESTS, CONC))
  common.print_table({
    { "what", "requests/s", "p50", "p99", "" },
    { "nginx + lockup, GET /run?cmd=true", fmt("%.1f", REQUESTS / box_wall), ms(box_times, 0.5), ms(box_times, 0.99),
      "" },
    { "docker run --rm --network none busybox:local true", fmt("%.1f", REQUESTS / base_wall), ms(base_times, 0.5),
      ms(base_times, 0.99), fmt("lockup %.1fx its requests/s", (REQUESTS / box_wall) / (REQUESTS / base_wall)) },
    { fmt("/ping on the same worker meanwhile (%d probes)", #ping_times), "", ms(ping_times, 0.5),
      ms(ping_times, 0.99), fmt("max %.0f ms", ping_times[#ping_times] * 1000) },
  })
end)
server:stop()
assert(ok, err)
if common.report_leftovers(t_all) > 0 then os.exit(1) end
