-- lockup inside nginx (OpenResty, or Debian's nginx with its lua module): the
-- scheduler's backend there. A worker serves every request from one event
-- loop, so nothing may block it: lockup's waits become nginx's own. Cosockets
-- wait for bytes (lockup.cosocket), ngx.sleep for time, a semaphore for a
-- parked task, and lockup.run's tasks are nginx light threads. poll(2), which
-- the loop of lockup.scheduler uses elsewhere, is never called here.
--
-- Where cosockets and ngx.sleep are not available (init_by_lua*, set_by_lua*,
-- log_by_lua*, header and body filters, balancers), lockup's calls raise an
-- error that names the phase and the way out (a timer).
local ngx = ngx -- luacheck: ignore 113 (nginx's global)
local options = require "lockup.options"

local type, error, select, xpcall, tostring, ipairs = type, error, select, xpcall, tostring, ipairs
local string_format = string.format
local unpack = table.unpack or unpack -- luacheck: ignore 113 (LuaJIT's)

local _M = {}

-- Loaded inside nginx: its `ngx` API is there (in every phase, init included).
_M.active = type(ngx) == "table" and type(ngx.get_phase) == "function"

-- The phases where a request's coroutine may yield to nginx.
local YIELDING = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- Raises, at the level of the caller's caller, unless this phase can wait.
function _M.check_phase(what)
  local phase = ngx.get_phase()
  if not YIELDING[phase] then
    error(string_format("lockup: %s cannot run in nginx's %s phase, which has no cosockets or ngx.sleep: "
      .. "call it from content_by_lua*, access_by_lua* or rewrite_by_lua*, or from a timer started "
      .. "there (ngx.timer.at(0, function() ... end))", what, phase), 3)
  end
end

-- A parked coroutine's semaphore (lua-resty-core's ngx.semaphore).
local parked = setmetatable({}, { __mode = "k" })

-- park([deadline]): deadline in lockup.core.monotime() seconds, as elsewhere.
local function park(deadline)
  _M.check_phase("waiting for a box")
  local co = coroutine.running()
  local sema = require("ngx.semaphore").new()
  local timeout = 365 * 24 * 3600
  if deadline then timeout = math.max(0, deadline - require("lockup.core").monotime()) end
  parked[co] = sema
  local ok, err = sema:wait(timeout)
  parked[co] = nil
  if not ok and deadline and err == "timeout" then return false end
  if not ok then return nil, "parked and never woken (" .. tostring(err) .. ")" end
  return true
end

local function wake(co)
  local sema = parked[co]
  if sema then sema:post() end
end

local function sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(seconds) .. ")", 2)
  end
  _M.check_phase("lockup.sleep")
  ngx.sleep(seconds > 0 and seconds or 0)
end

-- The light threads lockup.spawn started in this request (or timer), which
-- lockup.run waits for as well.
local function spawned()
  local ctx = ngx.ctx
  ctx.lockup_threads = ctx.lockup_threads or {}
  return ctx.lockup_threads
end

-- Runs fn(...) in a light thread; it never raises into nginx, its error is kept.
local function thread(fn, ...)
  local args, n = { ... }, select("#", ...)
  return ngx.thread.spawn(function()
    local res = { xpcall(function() return fn(unpack(args, 1, n)) end, debug.traceback) }
    return res[1], res[2]
  end)
end


-- lockup.run(fn, ...): each function in a light thread; returns when all, and
-- every task they spawned, are done, with each function's first result. The
-- first error is raised then.
local function run(...)
  options.check_functions("run", ...)
  _M.check_phase("lockup.run")
  local threads = {}
  for i = 1, select("#", ...) do threads[i] = thread((select(i, ...))) end
  local results, failed, others = {}, nil, 0
  local function join(t)
    local ok, fine, value = ngx.thread.wait(t)
    if ok and fine then return value end
    local why = ok and value or fine
    if failed then others = others + 1 else failed = why end
    return nil
  end
  for i, t in ipairs(threads) do results[i] = join(t) end
  local extra = spawned()
  while #extra > 0 do join(table.remove(extra, 1)) end
  if failed then
    error(tostring(failed) .. (others > 0 and ("\n(and " .. others .. " more tasks failed)") or ""), 0)
  end
  return unpack(results, 1, #threads)
end

local function spawn(fn, ...)
  options.check_functions("spawn", fn)
  _M.check_phase("lockup.spawn")
  local list = spawned()
  list[#list + 1] = thread(fn, ...)
end

-- background(fn, ...): fn(...) in a timer of its own, which outlives the
-- request; its error goes to nginx's error log.
local live_background = 0
local function background(fn, ...)
  options.check_functions("background", fn)
  local args, n = { ... }, select("#", ...)
  local ok, err = ngx.timer.at(0, function()
    local fine, why = xpcall(function() return fn(unpack(args, 1, n)) end, debug.traceback)
    live_background = live_background - 1
    if not fine then ngx.log(ngx.ERR, "lockup: background task failed: ", tostring(why)) end
  end)
  if not ok then return nil, "lockup.background: " .. tostring(err) end
  live_background = live_background + 1
  return true
end

local function no_poll()
  error("lockup: inside nginx nothing waits on a file descriptor (the fifo lane is not available there)", 2)
end

-- lockup.scheduler's backend inside nginx: the same functions as lockup.loop's.
_M.scheduler = {
  sleep = sleep,
  yield = function() ngx.sleep(0) end,
  park = park, wake = wake,
  inside = function() return true end,
  run = run, spawn = spawn,
  wait_any = no_poll, wait = no_poll,
  background = background,
  pending_background = function() return live_background end,
  -- nginx's timers run background work whatever the caller does
  pump = function() end,
  -- ngx_lua's own coroutine API already lets a user coroutine wait on nginx.
  wrap = coroutine.wrap, resume = coroutine.resume,
}

return _M
