-- Warm pools: boxes started ahead of demand, each handed out once.
--
--   local pool = lockup.pool{ docker = d, image = "busybox:local", size = 4 }
--   local box = assert(pool:acquire())   -- a started, never-used box
--   box:run("...")
--   pool:release(box)                    -- or box:stop(): either way it is gone
--
-- By default a box is never reused: nothing one task did can reach the
-- next. With reset = true a box handed back is made clean again instead
-- (box:reset(), lockup.reset: its processes killed, its writable mounts as
-- its image made them, a new session shell; prepare runs again) and goes back
-- to the ready queue; a box that cannot be reset is discarded and replaced.
-- The pool keeps `size` started boxes ready; each one handed out is replaced at once,
-- by background tasks (lockup.scheduler.background) that run inside
-- lockup.run and, outside it, during any lockup call that waits. Starts are
-- rate-limited (at most max_starting at a time, and a back-off after a failed
-- one), so a burst of demand cannot swamp the daemon.
local core = require "lockup.core"
local scheduler = require "lockup.scheduler"
local options = require "lockup.options"
local lifecycle = require "lockup.lifecycle"
local hardening = require "lockup.hardening"
local box_api = require "lockup.box"

local setmetatable, type, pairs, ipairs, error, tostring, pcall =
  setmetatable, type, pairs, ipairs, error, tostring, pcall
local string_format, math_min, math_floor, math_huge = string.format, math.min, math.floor, math.huge
local now = core.monotime

local _M = {}

local DEFAULT_TIMEOUT = 30 -- seconds acquire waits for a box, at most
local DEFAULT_MAX_STARTING = 2 -- starts in flight at once (a 2-core daemon starts about that many in parallel)
local BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5 -- seconds before the next start, after failed ones (doubling)

local POOL_OPTIONS = {
  docker = "table", image = "string", size = "number", start = "table", when_empty = "string",
  max_starting = "number", timeout = "number", prepare = "function", reset = "boolean",
}

local Pool = {}
local pool_mt = { __index = Pool, __name = "lockup.pool" }

function pool_mt.__tostring(self)
  local s = self:stats()
  return string_format("lockup.pool %s (%d ready of %d, %d in use%s)", self.start.image, s.ready, s.size,
    s.in_use, self.closed and ", closed" or "")
end

local function check_count(value, name, least)
  if value ~= nil and not (value >= least and value < math_huge and value == math_floor(value)) then
    error(string_format("bad option '%s' to 'pool' (a whole number, at least %d, expected, got %s)", name, least,
      tostring(value)), 3)
  end
end

-- The ready queue: first in, first out, in O(1).
local function push(self, box)
  self.tail = self.tail + 1
  self.ready[self.tail] = box
end

local function pop(self)
  if self.head > self.tail then return nil end
  local box = self.ready[self.head]
  self.ready[self.head] = nil
  self.head = self.head + 1
  return box
end

local function ready_count(self) return self.tail - self.head + 1 end

-- Stops a box the pool will not hand out, in the background: its lane is
-- closed now (the container's lifeline ends with it), the removal is
-- confirmed later.
local function discard(box)
  box:shut("discarded by its pool")
  scheduler.background(function() box:stop() end)
end

-- Hands a box to the first caller still waiting for one; false when none is.
local function give(self, box, err)
  while true do
    local w = table.remove(self.waiters, 1)
    if not w then return false end
    if not w.done then
      w.done, w.box, w.err = true, box, err
      scheduler.wake(w.co)
      return true
    end
  end
end

local start_one

-- Starts boxes until `size` are ready or on their way, within the rate limit.
local function fill(self)
  while not self.closed and not self.backing_off and self.starting < self.max_starting
    and ready_count(self) + self.starting + self.resetting < self.size do
    self.starting = self.starting + 1
    scheduler.background(start_one, self)
  end
end

-- Runs the pool's prepare on a box and, inside nginx, parks it (a box for
-- the ready queue: lockup.lifecycle.park, so that a request can take it):
-- true, or nil, err naming `what` (the box is then stopped).
local function ready_up(self, box, park, what)
  if self.prepare then -- true, or nil, err, or it raises
    local ok, done, perr = pcall(self.prepare, box)
    if not ok or not done then
      box:stop()
      return nil, "preparing " .. what .. ": " .. tostring(not ok and done or perr or "prepare returned nothing")
    end
  end
  if park then
    local ok, perr = lifecycle.park(box)
    if not ok then
      box:stop()
      return nil, "parking " .. what .. ": " .. perr
    end
  end
  return true
end

-- A fresh box, prepared; or nil, err.
local function fresh(self, for_queue)
  local park = for_queue and self.docker.cosockets
  local box, err = box_api.start(self.docker, self.start, park and ("lockup-" .. core.random_hex(8)) or nil)
  if not box then return nil, err end
  local ok
  ok, err = ready_up(self, box, park, "a new box")
  if not ok then return nil, err end
  return box
end

-- Puts a box that is ready into a waiting caller's hands, else into the
-- ready queue; stops it if the pool was closed meanwhile.
local function ready(self, box)
  if self.closed then
    box:stop()
  elseif not give(self, box) then
    push(self, box)
  end
end

-- A box handed back, reset and prepared again, then ready; or, when that
-- fails, discarded (fill starts another in its place).
local function renew(self, box)
  local ok, err = box:reset()
  if ok then ok, err = ready_up(self, box, self.docker.cosockets, "a reset box") end
  if ok then
    self.resets = self.resets + 1
    ready(self, box)
  else
    self.reset_failed = self.reset_failed + 1
    self.last_error = err
    discard(box)
  end
  self.resetting = self.resetting - 1
  fill(self)
end

-- One start, in the background: the box goes to a waiting caller, else to
-- the ready queue. A failure is told to the callers waiting (they should not
-- wait out their whole timeout for a daemon that is down), and the next start
-- backs off.
function start_one(self)
  local box, err = fresh(self, true)
  if not box then
    self.starting = self.starting - 1
    self.failed = self.failed + 1
    self.last_error = err
    self.failures = self.failures + 1
    while give(self, nil, err) do end
    self.backing_off = true
    scheduler.sleep(math_min(BACKOFF_FIRST * 2 ^ (self.failures - 1), BACKOFF_MAX))
    self.backing_off = false
    fill(self)
    return
  end
  self.failures = 0
  ready(self, box) -- before it stops counting as starting: close() waits for it
  self.starting = self.starting - 1
  fill(self)
end

-- lockup.pool{ docker, image, size, start, when_empty, max_starting, timeout,
-- prepare, reset } -> pool | nil, err
function _M.new(opts)
  opts = options.check(opts, POOL_OPTIONS, "pool", 2)
  local start = {}
  for k, v in pairs(opts.start or {}) do start[k] = v end
  if opts.image then start.image = opts.image end
  options.check(start, lifecycle.START_OPTIONS, "pool", 2) -- a bad one raises now, not in the background
  if not start.image then error("bad argument to 'pool' (option 'image' is required)", 2) end
  if opts.size == nil then
    error("bad argument to 'pool' (option 'size' is required: how many boxes to keep ready)", 2)
  end
  check_count(opts.size, "size", 1)
  check_count(opts.max_starting, "max_starting", 1)
  local when_empty = opts.when_empty or "wait"
  if when_empty ~= "wait" and when_empty ~= "cold" then
    error("bad option 'when_empty' to 'pool' (\"wait\" or \"cold\" expected, got \"" .. when_empty .. "\")", 2)
  end
  local d, err = opts.docker
  if not d then
    d, err = require("lockup.docker").connect()
    if not d then return nil, err end
  end
  local _, host = hardening.container(start, d.socket) -- raises on a bad limit or an unsafe option, at the caller
  if opts.reset and (not host.ReadonlyRootfs or #hardening.writable(host) > #hardening.tmpfs(host)) then
    error("bad option 'reset' to 'pool' (a box with a writable root filesystem or a writable volume cannot be "
      .. "reset: lockup could not put back what was written there)", 2)
  end
  local self = setmetatable({
    docker = d, start = start, size = opts.size, when_empty = when_empty, prepare = opts.prepare or false,
    max_starting = opts.max_starting or DEFAULT_MAX_STARTING, timeout = opts.timeout or DEFAULT_TIMEOUT,
    ready = {}, head = 1, tail = 0, waiters = {},
    in_use = setmetatable({}, { __mode = "k" }), -- a box dropped without stop() leaves by itself
    starting = 0, hits = 0, misses = 0, failed = 0, died = 0, failures = 0,
    reset = opts.reset or false, resetting = 0, resets = 0, reset_failed = 0,
    backing_off = false, closed = false, last_error = false,
  }, pool_mt)
  -- Boxes a killed process was starting never got their lifeline: they are
  -- removed (those of processes still alive are left alone). In the
  -- background, like the refill: making a pool does no I/O of its own.
  scheduler.background(function() d:prune() end)
  fill(self)
  return self
end

-- Can this box be handed out? A box that died while idle never is; inside
-- nginx its connections come back to the caller's request first.
local function usable(self, box)
  local ok
  if box.parked then ok = lifecycle.unpark(box) else ok = lifecycle.idle(box) end
  if not ok then
    self.died = self.died + 1
    discard(box)
  end
  return ok
end

-- The next ready box that can be handed out, or nil.
local function next_alive(self)
  while true do
    local box = pop(self)
    if not box or usable(self, box) then return box end
  end
end

local function hand_out(self, box)
  self.in_use[box] = true
  fill(self)
  return box
end

-- Waits for the refill to hand this caller a box; nil, err on a failed
-- start, a timeout or close.
local function wait_for_box(self, deadline, timeout)
  local w = { co = coroutine.running() }
  self.waiters[#self.waiters + 1] = w
  fill(self)
  while not w.done do
    if not scheduler.park(deadline) then break end
  end
  if not w.done then
    w.done = true -- give() skips it
    return nil, string_format("no box ready within %g s (pool of %d, %d starting): raise size, max_starting or "
      .. "the timeout", timeout, self.size, self.starting)
  end
  if w.box then return w.box end
  return nil, w.err
end

-- pool:acquire([timeout]) -> a started, never-used box | nil, err
function Pool:acquire(timeout)
  if timeout ~= nil and not (type(timeout) == "number" and timeout >= 0 and timeout < math_huge) then
    error("bad argument #1 to 'acquire' (a number of seconds >= 0 expected, got " .. tostring(timeout) .. ")", 2)
  end
  if self.closed then return nil, "the pool is closed" end
  local box = next_alive(self)
  if box then
    self.hits = self.hits + 1
    return hand_out(self, box)
  end
  self.misses = self.misses + 1
  local err
  if self.when_empty == "cold" then
    box, err = fresh(self)
  else
    timeout = timeout or self.timeout
    local deadline = now() + timeout
    repeat
      box, err = wait_for_box(self, deadline, timeout)
    until not box or usable(self, box)
  end
  if not box then return nil, "pool of " .. self.start.image .. ": " .. tostring(err) end
  if self.closed then
    discard(box)
    return nil, "the pool is closed"
  end
  return hand_out(self, box)
end

-- pool:release(box): gives back a box the pool handed out. Returns at once:
-- the box is destroyed (the container ends now, its removal is confirmed in
-- the background), or with reset = true made clean in the background and
-- handed out again. Inside nginx a reset is done here, in the request that
-- holds the box's connections.
function Pool:release(box)
  if not self.in_use[box] then
    error("bad argument #1 to 'release' (a box this pool handed out expected, got " .. tostring(box) .. ")", 2)
  end
  self.in_use[box] = nil
  if not self.reset or self.closed or box.dead then
    discard(box)
  else
    self.resetting = self.resetting + 1
    if self.docker.cosockets then renew(self, box) else scheduler.background(renew, self, box) end
  end
  scheduler.pump()
  return true
end

-- pool:stats() -> { size, ready, in_use, hits, misses, starting, failed, died,
-- resetting, resets, reset_failed, last_error }
function Pool:stats()
  local in_use = 0
  for box in pairs(self.in_use) do
    if box.stopped or box.dead then self.in_use[box] = nil else in_use = in_use + 1 end
  end
  return {
    size = self.size, ready = ready_count(self), in_use = in_use, hits = self.hits, misses = self.misses,
    starting = self.starting, failed = self.failed, died = self.died, resetting = self.resetting,
    resets = self.resets, reset_failed = self.reset_failed, last_error = self.last_error or nil,
  }
end

-- pool:close() -> true | nil, err: removes every box the pool holds (boxes
-- handed out are their users'), waits for the starts in flight and removes
-- theirs too. Idempotent.
function Pool:close()
  self.closed = true
  while give(self, nil, "the pool was closed") do end
  local boxes = {}
  for box in pop, self do
    box:shut("its pool was closed") -- every lifeline ends now; then each removal is confirmed
    boxes[#boxes + 1] = box
  end
  local first_err
  for _, box in ipairs(boxes) do
    local ok, err = box:stop()
    if not ok then first_err = first_err or err end
  end
  -- The starts and resets in flight see `closed` and stop their box themselves.
  local deadline = now() + self.docker.timeout + 10
  while (self.starting > 0 or self.resetting > 0) and now() < deadline do scheduler.sleep(0.01) end
  if first_err then return nil, first_err end
  return true
end
pool_mt.__close = function(self) self:close() end

return _M
