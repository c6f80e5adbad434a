-- Coroutines over one poll loop.
--
-- Library code never blocks in C: it asks scheduler.wait(fd, want, deadline).
-- Inside lockup.run that yields the calling task and the loop polls every
-- waiting descriptor at once; anywhere else (the REPL, a plain script, a
-- coroutine of the user's own) it polls just that descriptor, so the same call
-- simply blocks until done.
local core = require "lockup.core"
local compat = require "lockup.compat"

local coroutine, table, debug = coroutine, table, debug
local setmetatable, error, select, type, tostring, ipairs, pairs, next =
  setmetatable, error, select, type, tostring, ipairs, pairs, next
local math_huge, math_max = math.huge, math.max
local pack, unpack, close_coroutine = compat.pack, compat.unpack, compat.close_coroutine
local now = core.monotime

local _M = {}

-- What a task yields to the loop (anything else a task yields is a plain
-- "let the others run").
local WAIT, SLEEP, PARK = {}, {}, {}

-- The loop running now, if any: { tasks = {co = task}, ready = {co...}, waiting = {co...} }
local loop

local function task_of(co)
  return loop and loop.tasks[co]
end

-- Is the caller a task of the running loop (so it may yield to it)?
function _M.inside()
  return task_of(coroutine.running()) ~= nil
end

-- Waits until one of the descriptors in `list` ({fd1, want1, fd2, want2, ...},
-- want "r", "w" or "rw") is ready, or the deadline (monotime seconds, or nil)
-- passes. Returns true when one is ready, false on timeout.
function _M.wait_any(list, deadline)
  if task_of(coroutine.running()) then
    return coroutine.yield(WAIT, list, deadline)
  end
  local ready = core.poll(list, deadline and math_max(0, deadline - now()) or -1)
  return next(ready) ~= nil
end

-- Waits until fd is ready for want, or the deadline passes: wait_any for one.
function _M.wait(fd, want, deadline)
  return _M.wait_any({ fd, want }, deadline)
end

function _M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(seconds) .. ")", 2)
  end
  local deadline = now() + math_max(0, seconds)
  if task_of(coroutine.running()) then
    coroutine.yield(SLEEP, deadline)
  else
    core.poll({}, math_max(0, deadline - now()))
  end
end

-- Lets the other tasks run (a task that has a lot to do calls it now and then).
function _M.yield()
  if task_of(coroutine.running()) then coroutine.yield(SLEEP, 0) end
end

-- Parks the calling task until someone calls wake(co) with it. Outside a loop
-- nobody else could wake it, so that is an error the caller reports.
function _M.park()
  local co = coroutine.running()
  if not task_of(co) then return nil, "would wait forever outside lockup.run" end
  coroutine.yield(PARK)
  return true
end

function _M.wake(co)
  if loop and loop.tasks[co] then table.insert(loop.ready, co) end
end

-- A FIFO lock: calls on one box run one at a time, in call order.
local Mutex = {}
local mutex_mt = { __index = Mutex, __name = "lockup.mutex" }

-- The lock's owner when the caller is the main thread: LuaJIT's
-- coroutine.running() gives nil there, which would read as "not locked".
local MAIN_THREAD = {}

function _M.mutex()
  return setmetatable({ owner = nil, queue = {} }, mutex_mt)
end

function Mutex:lock()
  local co = coroutine.running() or MAIN_THREAD
  if not self.owner then
    self.owner = co
    return true
  end
  self.queue[#self.queue + 1] = co
  local ok, err = _M.park()
  if not ok then
    table.remove(self.queue)
    return nil, "the box is busy with a call from another coroutine, and " .. err
  end
  return true -- unlock() handed the lock over to us
end

function Mutex:unlock()
  local nxt = table.remove(self.queue, 1)
  self.owner = nxt
  if nxt then _M.wake(nxt) end
end

local function new_task(fn, ...)
  local co = coroutine.create(fn)
  local t = { co = co, args = pack(...), index = #loop.order + 1 }
  loop.tasks[co] = t
  loop.order[t.index] = t
  loop.ready[#loop.ready + 1] = co
  return t
end

-- Resumes one task and files it under what it yielded for.
local function step(co, ...)
  local t = loop.tasks[co]
  local res = pack(coroutine.resume(co, ...))
  if coroutine.status(co) == "dead" then
    loop.tasks[co] = nil
    loop.live = loop.live - 1
    if res[1] then
      t.result = res[2]
    else
      t.error = debug.traceback(co, tostring(res[2]))
      loop.failed = loop.failed or t
      -- A coroutine that died of an error keeps its `<close>` variables open
      -- until closed: close them now, so `local box <close>` stops its box
      -- (Lua 5.4; LuaJIT has no `<close>`).
      -- Closing gives back the error that killed it when no handler failed.
      local closed, cerr = close_coroutine(co)
      if not closed and cerr ~= res[2] then
        t.error = t.error .. "\n(and closing it failed: " .. tostring(cerr) .. ")"
      end
    end
    return
  end
  local what = res[2]
  if what == WAIT then
    t.fds, t.deadline = res[3], res[4] or math_huge
    loop.waiting[#loop.waiting + 1] = t
  elseif what == SLEEP then
    t.fds, t.deadline = nil, res[3] or 0
    loop.waiting[#loop.waiting + 1] = t
  elseif what ~= PARK then
    loop.ready[#loop.ready + 1] = co -- a bare coroutine.yield(): run again soon
  end
end

local function run_loop()
  while loop.live > 0 do
    while #loop.ready > 0 do
      local ready = loop.ready
      loop.ready = {}
      for i = 1, #ready do
        local t = loop.tasks[ready[i]]
        if t then
          local args = t.args
          t.args = nil
          if args then step(t.co, unpack(args, 1, args.n)) else step(t.co) end
        end
      end
    end
    if loop.live == 0 then break end
    local waiting = loop.waiting
    if #waiting == 0 then
      error("lockup.run: every task is parked and nothing can wake them (deadlock)")
    end
    loop.waiting = {}
    -- One poll over every waiting task's descriptors; a task's own pairs
    -- are pairs from..upto of the list.
    local list, from, upto, nfds, first = {}, {}, {}, 0, math_huge
    for i = 1, #waiting do
      local t = waiting[i]
      local fds = t.fds
      if fds then
        from[i] = nfds + 1
        for j = 1, #fds, 2 do
          list[#list + 1], list[#list + 2] = fds[j], fds[j + 1]
          nfds = nfds + 1
        end
        upto[i] = nfds
      end
      if t.deadline < first then first = t.deadline end
    end
    local ready = core.poll(list, first == math_huge and -1 or math_max(0, first - now()))
    local t_now = now()
    for i = 1, #waiting do
      local t = waiting[i]
      local woke = false
      for j = from[i] or 1, upto[i] or 0 do
        if ready[j] then woke = true break end
      end
      if woke then
        step(t.co, true)
      elseif t.deadline <= t_now then
        step(t.co, t.fds == nil) -- a sleep ends well; a wait times out
      else
        loop.waiting[#loop.waiting + 1] = t
      end
    end
  end
end

-- Runs each function in its own coroutine over one event loop and returns when
-- all are done, with each function's first result. An error in one does not stop
-- the others; the first is raised, with its traceback, once the loop ends.
function _M.run(...)
  local n = select("#", ...)
  for i = 1, n do
    if type(select(i, ...)) ~= "function" then
      error("bad argument #" .. i .. " to 'run' (function expected, got " .. type(select(i, ...)) .. ")", 2)
    end
  end
  if loop then -- nested: run them as tasks of this loop and wait for them here
    if not _M.inside() then error("lockup.run: a loop is already running; use lockup.spawn", 2) end
    local me, pending, tasks = coroutine.running(), n, {}
    for i = 1, n do
      local fn = select(i, ...)
      tasks[i] = new_task(function()
        local ok, r = pcall(fn)
        pending = pending - 1
        if pending == 0 then _M.wake(me) end
        if not ok then error(r, 0) end
        return r
      end)
      loop.live = loop.live + 1
    end
    if pending > 0 then coroutine.yield(PARK) end
    local results = {}
    for i = 1, n do results[i] = tasks[i].result end
    return unpack(results, 1, n)
  end
  loop = { tasks = {}, ready = {}, waiting = {}, order = {}, live = 0 }
  for i = 1, n do
    new_task((select(i, ...)))
    loop.live = loop.live + 1
  end
  local ok, err = pcall(run_loop)
  local done = loop
  loop = nil
  if not ok then
    for co in pairs(done.tasks) do close_coroutine(co) end -- runs their `<close>` handlers
    error(err, 0)
  end
  if done.failed then
    local others = 0
    for _, t in ipairs(done.order) do
      if t.error and t ~= done.failed then others = others + 1 end
    end
    error(done.failed.error .. (others > 0 and ("\n(and " .. others .. " more tasks failed)") or ""), 0)
  end
  local results = {}
  for i = 1, n do results[i] = done.order[i].result end
  return unpack(results, 1, n)
end

-- Starts fn(...) as another task of the running loop.
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  if not loop then error("lockup.spawn: call it inside lockup.run", 2) end
  new_task(fn, ...)
  loop.live = loop.live + 1
end

-- Inside nginx, nginx's own waits (lockup.ngx).
local ngx_backend = require "lockup.ngx"
if ngx_backend.active then ngx_backend.install(_M) end

return _M
