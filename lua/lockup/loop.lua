-- lockup.scheduler's backend outside nginx: coroutines over one event loop
-- (epoll, and a heap of deadlines).
--
-- Library code never blocks in C: it asks scheduler.wait(fd, want, deadline).
-- Inside lockup.run that yields the calling task, and the loop waits for every
-- task at once. Anywhere else (the REPL, a plain script) the same call simply
-- blocks until done: it polls that one descriptor, or, while background tasks
-- exist, turns the loop (which runs them) until its own wait is over.
--
-- The loop keeps what can wake a task, and nothing else: an epoll
-- registration per waited descriptor (one-shot, re-armed by the next wait, so
-- a turn costs what is ready, not what is watched), a binary heap of
-- deadlines, and the queue of runnable tasks. A finished task leaves no trace
-- but the results lockup.run returns.
--
-- A coroutine of the user's own inside a task must be run by scheduler.resume
-- or scheduler.wrap: they pass lockup's waits through to the loop. A plain
-- coroutine.resume cannot, and a lockup wait there would block every task, so
-- it raises instead.
local core = require "lockup.core"
local compat = require "lockup.compat"
local options = require "lockup.options"

local coroutine, debug, io = coroutine, debug, io
local setmetatable, error, select, type, tostring, pairs, next, pcall =
  setmetatable, error, select, type, tostring, pairs, next, pcall
local math_max = math.max
local pack, unpack = compat.pack, compat.unpack
local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local now = core.monotime

local _M = {}

-- What a task yields to the loop (anything else a task yields is a plain
-- "let the others run"): WAIT, list, deadline; SLEEP, deadline; PARK,
-- deadline, the coroutine that parked.
local WAIT, SLEEP, PARK = {}, {}, {}
local WANT = { r = 1, w = 2, rw = 3, wr = 3 } -- the bits of core.poller's "ready"
local EMPTY = {}

-- The identity of the main thread when it parks or holds a lock: LuaJIT's
-- coroutine.running() gives nil there, which would read as "nobody".
local MAIN_THREAD = {}

--- the loop's state ------------------------------------------------------------
-- It lives as long as the module: background tasks outlive a lockup.run.
-- A task: { co, bg, state = "ready" | "run" | "wait" | "park" | "dead", value
-- (what it is resumed with), args (its first resume), kind (WAIT, SLEEP or
-- PARK), deadline, hidx (its place in the heap), fds (what it waits on),
-- parked (the coroutine that parked), result }.
local tasks = {}                                      -- co -> task, the live ones
local carried = setmetatable({}, { __mode = "k" })   -- co run by _M.resume -> the task it ran in
local ready, nready, spare = {}, 0, {}                -- runnable tasks, first in first out
local later, nlater = {}, 0                           -- yielded: runnable after the next poll
local heap, nheap, hseq = {}, 0, 0                    -- tasks by deadline
local regs, tokens, nregs, next_token = {}, {}, 0, 0  -- fd -> registration, token -> registration
local nfg, nbg = 0, 0                                 -- live foreground and background tasks
local running = false   -- the loop is turning (lockup.run, or a blocking call outside it)
local in_run = false    -- a top-level lockup.run is going on
-- `<close>` handlers of a dead coroutine are running (close_dead): they
-- cannot yield, so their waits block, as outside any loop (a box's stop).
local closing = 0

-- Closes a dead coroutine's `<close>` variables (Lua 5.4; nothing on
-- LuaJIT): true, or false, err (it does not raise).
local function close_coroutine(co)
  closing = closing + 1
  local ok, err = compat.close_coroutine(co)
  closing = closing - 1
  return ok, err
end
local current = nil     -- the task being resumed
local outer = nil       -- the caller outside run whose wait turns the loop (a task-like record)
local first_error, more_errors = nil, 0 -- this run's failed tasks
local poller

local function get_poller()
  if not poller then poller = assert(core.poller()) end
  return poller
end

-- The task a coroutine runs as, or under (through _M.resume, within the task
-- being resumed now); nil for a coroutine the loop does not know.
local function task_of(co)
  if not co then return nil end
  local t = tasks[co]
  if t then return t end
  t = carried[co]
  if t and t == current then return t end
  return nil
end

-- Is the caller a task of the running loop (so it may yield to it)?
function _M.inside()
  return task_of(co_running()) ~= nil
end

--- the heap of deadlines (ties in the order they were set) ---------------------

local function before(a, b)
  return a.deadline < b.deadline or (a.deadline == b.deadline and a.hseq < b.hseq)
end

local function sift_up(i)
  local t = heap[i]
  while i > 1 do
    local up = (i - i % 2) / 2
    local u = heap[up]
    if not before(t, u) then break end
    heap[i], u.hidx = u, i
    i = up
  end
  heap[i], t.hidx = t, i
end

local function sift_down(i)
  local t = heap[i]
  while true do
    local c = 2 * i
    if c > nheap then break end
    if c < nheap and before(heap[c + 1], heap[c]) then c = c + 1 end
    local d = heap[c]
    if not before(d, t) then break end
    heap[i], d.hidx = d, i
    i = c
  end
  heap[i], t.hidx = t, i
end

local function heap_push(t, deadline)
  hseq = hseq + 1
  t.deadline, t.hseq = deadline, hseq
  nheap = nheap + 1
  heap[nheap] = t
  sift_up(nheap)
end

local function heap_remove(t)
  local i = t.hidx
  t.hidx = nil
  local last = heap[nheap]
  heap[nheap] = nil
  nheap = nheap - 1
  if last ~= t then
    heap[i], last.hidx = last, i
    sift_down(i)
    sift_up(last.hidx)
  end
end

--- descriptors -----------------------------------------------------------------
-- One registration per descriptor somebody waits on: { fd, token, want (the
-- union of its waiters'), armed, n, waiters = {task = want} }. It goes away
-- with its last waiter. The kernel's may stay armed a while longer: it fires
-- once at most, with a token nobody knows any more, and is ignored.

local function union(a, b)
  if a == b or b == 0 then return a end
  if a == 0 then return b end
  return 3
end

local WANT_NAME = { "r", "w", "rw" }

-- Arms reg for its waiters' union; false when the descriptor is ready now (a
-- regular file, or one epoll refuses: the caller's next read or write tells).
local function arm(reg)
  local want = 0
  for _, w in pairs(reg.waiters) do want = union(want, w) end
  reg.want = want
  reg.armed = get_poller():watch(reg.fd, WANT_NAME[want], reg.token) == true
  return reg.armed
end

-- Takes t off everything that could wake it.
local function unlist(t)
  if t.hidx then heap_remove(t) end
  local fds = t.fds
  if fds then
    t.fds = nil
    for i = 1, #fds do
      local fd = fds[i]
      local reg = regs[fd]
      if reg and reg.waiters[t] then
        reg.waiters[t] = nil
        reg.n = reg.n - 1
        if reg.n == 0 then
          regs[fd], tokens[reg.token] = nil, nil
          nregs = nregs - 1
        end
      end
    end
  end
end

local function push_ready(t, value)
  t.state, t.value = "ready", value
  nready = nready + 1
  ready[nready] = t
end

-- Wakes t (a task, or the caller outside run) with `value` for its wait.
local function wake_with(t, value)
  unlist(t)
  if t == outer then
    t.state, t.value = "done", value
  else
    push_ready(t, value)
  end
end

-- Registers t's wait on the pairs of list (checked by wait_any); false when
-- one is ready already (then so is every waiter of that descriptor).
local function watch_all(t, list)
  local fds = {}
  t.fds = fds
  for i = 1, #list, 2 do
    local fd, want = list[i], WANT[list[i + 1]]
    local reg = regs[fd]
    if not reg then
      next_token = next_token + 1
      reg = { fd = fd, token = next_token, want = 0, armed = false, n = 0, waiters = {} }
      regs[fd], tokens[next_token] = reg, reg
      nregs = nregs + 1
    end
    local had = reg.waiters[t]
    if not had then
      reg.n = reg.n + 1
      fds[#fds + 1] = fd
    end
    reg.waiters[t] = union(had or 0, want)
    if (not reg.armed or union(reg.want, want) ~= reg.want) and not arm(reg) then
      for w in pairs(reg.waiters) do
        if w ~= t then wake_with(w, true) end
      end
      return false
    end
  end
  return true
end

-- Files t under what it yielded for (outer too: the same waits).
local function file(t, what, a, b)
  if what == WAIT then
    t.kind, t.state = WAIT, "wait"
    if a[1] ~= nil and not watch_all(t, a) then return wake_with(t, true) end
    if b then heap_push(t, b) end
  elseif what == SLEEP then
    t.kind, t.state = SLEEP, "wait"
    if t ~= outer and a <= now() then -- a yield: no need for the heap
      nlater = nlater + 1
      later[nlater] = t
    else
      heap_push(t, a)
    end
  else -- PARK
    t.kind, t.state, t.parked = PARK, "park", b
    if a then heap_push(t, a) end
  end
end

--- tasks -----------------------------------------------------------------------

local function new_task(bg, fn, ...)
  local co = co_create(fn)
  local t = { co = co, bg = bg, args = select("#", ...) > 0 and pack(...) or nil }
  tasks[co] = t
  if bg then nbg = nbg + 1 else nfg = nfg + 1 end
  push_ready(t, nil)
  return t
end

-- A task is gone: forget it, and say what its error was.
local function finish(t, ok, res)
  local co = t.co
  tasks[co] = nil
  t.state = "dead"
  if t.bg then nbg = nbg - 1 else nfg = nfg - 1 end
  if ok then
    t.result = res
    return
  end
  local msg = debug.traceback(co, tostring(res))
  -- A coroutine that died of an error keeps its `<close>` variables open
  -- until closed: close them now, so `local box <close>` stops its box
  -- (Lua 5.4; LuaJIT has no `<close>`). Closing gives back the error that
  -- killed it when no handler failed.
  local closed, cerr = close_coroutine(co)
  if not closed and cerr ~= res then
    msg = msg .. "\n(and closing it failed: " .. tostring(cerr) .. ")"
  end
  if t.bg then
    -- Nobody waits for a background task: its error must not kill the loop
    -- or whoever happened to turn it.
    io.stderr:write("lockup: background task failed: ", msg, "\n")
  elseif first_error then
    more_errors = more_errors + 1
  else
    first_error = msg
  end
end

local function settle(t, prev, ok, what, a, b)
  current = prev
  if co_status(t.co) == "dead" then return finish(t, ok, what) end
  if what == WAIT or what == SLEEP or what == PARK then return file(t, what, a, b) end
  push_ready(t, nil) -- a bare coroutine.yield(): run again soon
end

local function step(t)
  local prev = current
  current = t
  t.state = "run"
  local args = t.args
  if args then
    t.args = nil
    return settle(t, prev, co_resume(t.co, unpack(args, 1, args.n)))
  end
  return settle(t, prev, co_resume(t.co, t.value))
end

-- Resumes every task that is runnable now (not those it makes runnable).
local function run_ready()
  local q, n = ready, nready
  ready, nready, spare = spare, 0, q
  for i = 1, n do
    local t = q[i]
    q[i] = nil
    if t.state == "ready" then step(t) end
  end
end

-- One wait for descriptors and deadlines; `block`: until something happens.
local function poll_once(block)
  local timeout = 0
  if block then timeout = nheap > 0 and math_max(0, heap[1].deadline - now()) or -1 end
  local list = get_poller():wait(timeout)
  for i = 1, #list, 2 do
    local reg = tokens[list[i]]
    if reg then
      reg.armed = false
      local ev = list[i + 1]
      for t, want in pairs(reg.waiters) do
        if ev == 3 or want == 3 or want == ev then wake_with(t, true) end
      end
      if reg.n > 0 and not arm(reg) then -- the rest wait on
        for t in pairs(reg.waiters) do wake_with(t, true) end
      end
    end
  end
  if nheap > 0 then
    local t_now = now()
    while nheap > 0 and heap[1].deadline <= t_now do
      local t = heap[1]
      wake_with(t, t.kind == SLEEP) -- a sleep ends well; a wait or a park times out
    end
  end
  for i = 1, nlater do
    local t = later[i]
    later[i] = nil
    if t.state == "wait" and t.kind == SLEEP then push_ready(t, true) end
  end
  nlater = 0
end

-- Can anything still happen (a task to run, a descriptor or a deadline to wait for)?
local function alive()
  return nready > 0 or nlater > 0 or nheap > 0 or nregs > 0
end

-- lockup.run's loop: until its tasks (and theirs) are done.
local function run_loop()
  while nfg > 0 do
    if nready > 0 then run_ready() end
    if nfg == 0 then break end
    if not alive() then
      error("lockup.run: every task is parked and nothing can wake them (deadlock)")
    end
    poll_once(nready == 0 and nlater == 0)
  end
end

-- A blocking call's loop outside run: until x, the caller's wait, is over
-- (true), or nothing is left that could end it (false): a park's own
-- deadline does not count, only a task could wake it.
local function turn_until(x)
  while x.state ~= "done" do
    if nready > 0 then run_ready() end
    if x.state == "done" then break end
    if not alive()
      or (x.kind == PARK and nready == 0 and nlater == 0 and nregs == 0 and nheap == (x.hidx and 1 or 0)) then
      return false
    end
    poll_once(nready == 0 and nlater == 0)
  end
  return true
end

--- waits -----------------------------------------------------------------------

local function not_a_task(what)
  return "lockup." .. what .. ": called from a coroutine that lockup.run does not know, so it would block every "
    .. "task: use lockup.wrap/lockup.resume for your own coroutines, or lockup.spawn"
end

-- A wait by the main thread or a plain coroutine, outside any loop.
local function wait_outside(what, a, b, co)
  if nbg == 0 then -- nothing else to run: the plain wait, as cheap as can be
    if what == WAIT then
      return next(core.poll(a, b and math_max(0, b - now()) or -1)) ~= nil
    elseif what == SLEEP then
      core.poll(EMPTY, math_max(0, a - now()))
      return true
    end
    return nil, "would wait forever outside lockup.run"
  end
  local x = { co = co or MAIN_THREAD }
  outer, running = x, true
  local ok, err = pcall(function()
    file(x, what, a, b)
    return turn_until(x)
  end)
  outer, running = nil, false
  if x.state ~= "done" then unlist(x) end
  if not ok then error(err, 0) end
  if x.state == "done" then return x.value end
  if what == PARK then
    return nil, "would wait forever: every background task is parked too, and nothing else runs outside lockup.run"
  end
  return false
end

-- Waits until one of the descriptors in `list` ({fd1, want1, fd2, want2, ...},
-- want "r", "w" or "rw") is ready, or the deadline (monotime seconds, or nil)
-- passes. Returns true when one is ready, false on timeout.
function _M.wait_any(list, deadline)
  for i = 1, #list, 2 do
    if type(list[i]) ~= "number" or not WANT[list[i + 1]] then
      error("bad argument #1 to 'wait_any' ({fd, \"r\" | \"w\" | \"rw\", ...} expected, got " .. tostring(list[i])
        .. ", " .. tostring(list[i + 1]) .. " at " .. i .. ")", 2)
    end
  end
  local co = co_running()
  if task_of(co) then return co_yield(WAIT, list, deadline) end
  if closing > 0 then return next(core.poll(list, deadline and math_max(0, deadline - now()) or -1)) ~= nil end
  if running then error(not_a_task("wait_any"), 2) end
  return wait_outside(WAIT, list, deadline, co)
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
  local co = co_running()
  if task_of(co) then
    co_yield(SLEEP, deadline)
    return
  end
  if closing > 0 then
    core.poll(EMPTY, math_max(0, deadline - now()))
    return
  end
  if running then error(not_a_task("sleep"), 2) end
  wait_outside(SLEEP, deadline, nil, co)
end

-- Lets the other tasks run (a task that has a lot to do calls it now and then).
function _M.yield()
  if task_of(co_running()) then co_yield(SLEEP, now()) end
end

-- Parks the caller until someone calls wake(co) with its coroutine, or the
-- deadline (monotime seconds, optional) passes: true when woken, false on
-- timeout. Outside lockup.run only a background task can wake the caller:
-- with none that could, it returns nil, err at once.
function _M.park(deadline)
  local co = co_running()
  if task_of(co) then return co_yield(PARK, deadline, co) end
  if closing > 0 then return nil, "would wait forever: a `<close>` handler cannot wait for another task" end
  if running then error(not_a_task("park"), 2) end
  return wait_outside(PARK, deadline, co, co)
end

-- Wakes the coroutine co if it is parked (the main thread: co = nil on
-- LuaJIT, or the main thread itself on 5.4); anything else is a no-op, so a
-- task checks what it waits for before it parks.
function _M.wake(co)
  local t = co and (tasks[co] or carried[co])
  if t and t.state == "park" and t.parked == co and tasks[t.co] == t then
    wake_with(t, true)
    return
  end
  local x = outer
  if x and x.state == "park" and x.co == (co or MAIN_THREAD) then wake_with(x, true) end
end

--- the user's own coroutines -------------------------------------------------

-- What a coroutine run by _M.resume gave back: a lockup wait goes on to the
-- loop (the task under us yields it), and its answer back into the coroutine;
-- anything else is the caller's.
local function pass(co, ok, what, ...)
  if ok and (what == WAIT or what == SLEEP or what == PARK) and co_status(co) == "suspended" then
    return pass(co, co_resume(co, co_yield(what, ...)))
  end
  return ok, what, ...
end

-- scheduler.resume(co, ...): coroutine.resume for a coroutine whose code may
-- call lockup (cqueues.auxlib.resume's idea): its waits are the task's.
function _M.resume(co, ...)
  carried[co] = task_of(co_running())
  return pass(co, co_resume(co, ...))
end

local function unwrap(co, ok, ...)
  if ok then return ... end
  close_coroutine(co) -- as coroutine.wrap does on 5.4: its `<close>` variables
  error((...), 0)
end

-- scheduler.wrap(fn): coroutine.wrap, through scheduler.resume.
function _M.wrap(fn)
  options.check_functions("wrap", fn)
  local co = co_create(fn)
  return function(...)
    return unwrap(co, _M.resume(co, ...))
  end
end

--- run, spawn, background -----------------------------------------------------


-- Runs each function in its own coroutine over one event loop and returns when
-- all are done, and every task they spawned, with each function's first
-- result. An error in one does not stop the others; the first is raised, with
-- its traceback, once the loop ends. Background tasks run meanwhile, and those
-- not done then stay for the next run (or blocking call).
function _M.run(...)
  local n = select("#", ...)
  options.check_functions("run", ...)
  if running then -- nested: run them as tasks of this loop and wait for them here
    local parent = task_of(co_running())
    if not parent then error("lockup.run: a loop is already running; use lockup.spawn", 2) end
    local me, pending, list = co_running(), n, {}
    for i = 1, n do
      local fn = select(i, ...)
      list[i] = new_task(parent.bg, function()
        local ok, r = pcall(fn)
        pending = pending - 1
        if pending == 0 then _M.wake(me) end
        if not ok then error(r, 0) end
        return r
      end)
    end
    while pending > 0 do co_yield(PARK, nil, me) end
    local results = {}
    for i = 1, n do results[i] = list[i].result end
    return unpack(results, 1, n)
  end
  first_error, more_errors = nil, 0
  local mine = {}
  for i = 1, n do mine[i] = new_task(false, (select(i, ...))) end
  running, in_run = true, true
  local ok, err = pcall(run_loop)
  running, in_run = false, false
  if not ok then
    for co, t in pairs(tasks) do -- the foreground ones; background tasks stay
      if not t.bg then
        unlist(t)
        tasks[co], t.state = nil, "dead"
        close_coroutine(co) -- runs their `<close>` handlers
      end
    end
    nfg = 0
    error(err, 0)
  end
  local failed, others = first_error, more_errors
  first_error, more_errors = nil, 0
  if failed then
    error(failed .. (others > 0 and ("\n(and " .. others .. " more tasks failed)") or ""), 0)
  end
  local results = {}
  for i = 1, n do results[i] = mine[i].result end
  return unpack(results, 1, n)
end

-- Starts fn(...) as another task of the running loop (a background task's
-- are background tasks too).
function _M.spawn(fn, ...)
  options.check_functions("spawn", fn)
  if not running then error("lockup.spawn: call it inside lockup.run", 2) end
  local parent = task_of(co_running())
  local bg
  if parent then bg = parent.bg else bg = not in_run end
  new_task(bg, fn, ...)
end

-- Starts fn(...) as a background task and returns its coroutine (to wake it).
-- Inside lockup.run it is a task of the loop that run does not wait for;
-- outside, it runs whenever a lockup call waits (which turns the loop) or
-- the next run. Its error goes to stderr, with its traceback.
function _M.background(fn, ...)
  options.check_functions("background", fn)
  return new_task(true, fn, ...).co
end

-- Outside lockup.run: lets the background tasks go as far as they can
-- without waiting (each up to its next wait), so that what they ask of the
-- Engine is on its way while the caller is busy elsewhere or idle, not only
-- during its next lockup call (lockup.pool calls it when it takes a box
-- back: not when it hands one out, where it would add the tasks' work to the
-- caller's wait). Inside run, or with nothing in the background, a no-op.
local PUMP_TURNS = 64 -- enough for every task to reach a wait; a bound for tasks that only yield

function _M.pump()
  if running or nbg == 0 then return end
  running = true
  local ok, err = pcall(function()
    for _ = 1, PUMP_TURNS do
      if nready > 0 then run_ready() end
      poll_once(false)
      if nready == 0 then break end
    end
  end)
  running = false
  if not ok then error(err, 0) end
end

-- How many background tasks are not done yet.
function _M.pending_background()
  return nbg
end

-- What the loop holds now (for specs: it must not grow with finished tasks).
function _M._stats()
  local ntasks, ncarried, ntokens = 0, 0, 0
  for _ in pairs(tasks) do ntasks = ntasks + 1 end
  for _ in pairs(carried) do ncarried = ncarried + 1 end
  for _ in pairs(tokens) do ntokens = ntokens + 1 end
  return {
    tasks = ntasks, foreground = nfg, background = nbg, ready = nready + nlater, timers = nheap, fds = nregs,
    tokens = ntokens, carried = ncarried, running = running,
  }
end

return _M
