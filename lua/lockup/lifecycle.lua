-- A box's life: the container made from start's options, its lane, the
-- session shell's first answer; then stop, reap and prune.
local core = require "lockup.core"
local compat = require "lockup.compat"
local scheduler = require "lockup.scheduler"
local options = require "lockup.options"
local hardening = require "lockup.hardening"
local session = require "lockup.session"
local shell_text = require "lockup.shell"
local exec = require "lockup.exec"
local attach = require "lockup.lane.attach"
local fifo = require "lockup.lane.fifo"
local cosocket = require "lockup.cosocket"
local meter = require "lockup.meter"
local mutex = require "lockup.mutex"
local reset = require "lockup.reset"

local setmetatable, type, tostring, pairs, ipairs, error = setmetatable, type, tostring, pairs, ipairs, error
local string_format, math_min = string.format, math.min

local _M = {}

local OWNER_LABEL = "lockup.owner"
_M.OWNER_LABEL = OWNER_LABEL
local REAP_TIMEOUT = 10 -- seconds to wait for the daemon to remove a stopped container
local REMOVE_TIMEOUT = 10 -- seconds stop() waits, after that, to see the container gone
local REMOVE_RETRY = 2 -- seconds a removal in progress is left alone before it is forced again
local LANES = { attach = attach, fifo = fifo }

-- "<host>/<pid>": who started a box, for prune.
function _M.owner()
  local f = io.open("/proc/sys/kernel/hostname")
  local host = f and f:read("*l") or os.getenv("HOSTNAME") or "localhost"
  if f then f:close() end
  return host .. "/" .. core.getpid()
end

_M.START_OPTIONS = {
  image = "string", shell = "string", env = "table", workdir = "string", user = "string",
  labels = "table", name = "string", timeout = "number", max_output = "number", lane = "string",
  -- hardening (lockup.hardening): each overrides one secure default
  network = "boolean", cap_add = "table", read_only = "boolean", memory = "number|string", cpus = "number",
  pids = "number", ulimits = "table", disk = "number|string", tmpfs = "table", runtime = "string",
  security_opt = "table", volumes = "table",
  unsafe = "table", -- lets through options that hand the box part of the host (lockup.unsafe)
  accounting = "boolean|string", -- what each call cost (lockup.meter): false for none, "engine": the Engine's stats
}

-- Checks a lane's name (from start, connect or LOCKUP_LANE); raises at level.
function _M.check_lane(name, fname, level)
  if name ~= nil and not LANES[name] then
    error(string_format("bad option 'lane' to '%s' (\"fifo\" or \"attach\" expected, got %s)",
      fname, tostring(name)), level + 1)
  end
  return name
end

-- gVisor's sandbox does not pass the host's FIFOs through to the box (runsc
-- 2022-12 here, also with --host-fifo=open): its session would never answer.
local function fifo_runtime(runtime)
  if runtime and (runtime:find("runsc", 1, true) or runtime:find("gvisor", 1, true)) then
    return nil, string_format("the fifo lane does not work with runtime '%s' (gVisor does not pass the host's "
      .. "FIFOs into its sandbox): use lane = \"attach\", or leave the lane to lockup", runtime)
  end
  return true
end

-- The lane module for a box of `user` under `runtime` on the engine `d`, or
-- nil, err. Asked for (start's lane, else the client's), a lane must work;
-- chosen, fifo is taken where the engine shares this host's files, the user is
-- numeric and the runtime can see host FIFOs.
local function choose_lane(d, asked, user, runtime)
  asked = asked or d.lane
  if asked == "attach" then return attach end
  local usable, why = d:fifo_usable()
  if usable then usable, why = fifo_runtime(runtime) end
  if asked == "fifo" then
    if not usable then return nil, why end
    return fifo
  end
  if usable and fifo.ids(user) then return fifo end
  return attach
end

-- Why a container did not start, told so the user knows what to do.
local function start_error(image, shell, err, code)
  if code == 404 and err:lower():find("no such image", 1, true) then -- Podman: "no such image: ..."
    return string_format("image '%s' not found on the Engine: build it (docker build) or pull it first", image)
  end
  if err:find(shell, 1, true) and (err:find("no such file", 1, true) or err:find("not found", 1, true)) then
    return string_format("image '%s' has no shell at %s: give another with start{ shell = ... } (%s)",
      image, shell, err)
  end
  return string_format("starting a box from '%s': %s", image, err)
end

local function labels_of(opts)
  local labels = { [OWNER_LABEL] = _M.owner() }
  for k, v in pairs(opts.labels or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("bad option 'labels' to 'start' (a table of string = string expected)", 3)
    end
    if k == OWNER_LABEL then
      error("bad option 'labels' to 'start' (" .. OWNER_LABEL .. " is lockup's own: prune relies on it)", 3)
    end
    labels[k] = v
  end
  return labels
end

-- Asks for the exit code now: with AutoRemove it is gone once the container
-- is. Podman (4.3) answers condition=removed of an AutoRemove container with
-- StatusCode 0 whatever the code was; next-exit gives the right one, and
-- confirm_gone (stop) waits for the removal itself. The pending call, or nil, err.
local function wait_call(d, id)
  return d:send("POST", "/containers/" .. id .. "/wait",
    { query = { condition = d.engine == "podman" and "next-exit" or "removed" }, dedicated = true })
end

-- docker:start(opts), through lockup.box: a started box with metatable mt, or
-- nil, err. `park`: inside nginx, the name under which lockup.pool parks the
-- box's connections (_M.park).
function _M.start(d, opts, mt, park)
  -- docker:start tail-calls this: level 2 is the user's code.
  opts = options.check(opts, _M.START_OPTIONS, "start", 2)
  if not opts.image then error("bad argument to 'start' (option 'image' is required)", 2) end
  _M.check_lane(opts.lane, "start", 2)
  if type(opts.accounting) == "string" and opts.accounting ~= "engine" then
    error("bad option 'accounting' to 'start' (true, false or \"engine\" expected, got \"" .. opts.accounting
      .. "\")", 2)
  end
  local shell = opts.shell or "/bin/sh"
  local labels = labels_of(opts)
  local env = exec.env_list(opts.env, "start")
  local config, host = hardening.container(opts, d.socket, d.engine)
  for _, b in ipairs(host.Binds or {}) do
    if b:match("^[^:]*:([^:]*)") == fifo.MOUNT then
      error("bad option 'volumes' to 'start' (" .. fifo.MOUNT .. " is lockup's own mount)", 2)
    end
  end
  local kind, err = choose_lane(d, opts.lane, config.User, opts.runtime)
  if not kind then return nil, err end
  local lane
  if kind == fifo then
    lane, err = fifo.open(config.User)
    if not lane then return nil, err end
    host.Binds = host.Binds or {}
    host.Binds[#host.Binds + 1] = lane.bind
  end
  local attached = kind == attach
  local status, created, code = d:request("POST", "/containers/create", {
    query = opts.name and { name = opts.name },
    body = {
      Image = opts.image,
      Entrypoint = { shell, "-c", shell_text.lifeline(kind.name), shell },
      Env = env,
      WorkingDir = config.WorkingDir,
      User = config.User,
      Labels = labels,
      AttachStdin = attached, AttachStdout = attached, AttachStderr = attached,
      OpenStdin = attached, StdinOnce = attached, Tty = false,
      NetworkDisabled = config.NetworkDisabled,
      HostConfig = host,
    },
  })
  if not status then
    if lane then lane:close() end
    return nil, start_error(opts.image, shell, created, code)
  end
  local id = created.Id

  local self = setmetatable({
    id = id, image = opts.image, docker = d, shell = shell, user = config.User, started_at = os.time(),
    workdir = config.WorkingDir, read_only = host.ReadonlyRootfs, writable = hardening.writable(host),
    mount_points = hardening.mount_points(host),
    timeout = opts.timeout or hardening.DEFAULTS.timeout,
    max_output = opts.max_output or hardening.DEFAULTS.max_output,
    lane_name = kind.name, lane = lane,
    stream = core.stream(), lock = mutex.new(), reap_lock = mutex.new(),
    procs = {}, -- the processes box:spawn started that still run (lockup.process)
  }, mt)
  self.tmpfs = hardening.tmpfs(host)
  local function fail(why, c)
    self:shut("the box failed to start")
    d:request("DELETE", "/containers/" .. id, { query = { force = 1 } })
    if self.waiter then self.waiter.conn:close() end
    self.waiter = nil
    return nil, start_error(opts.image, shell, why, c)
  end

  local waiter
  waiter, err = wait_call(d, id)
  if not waiter then return fail(err) end
  self.waiter = waiter
  if attached then
    self.lane, err, code = attach.open(d, id, park and (park .. "/lane"))
    if not self.lane then return fail(err, code) end
  end
  status, err, code = d:request("POST", "/containers/" .. id .. "/start")
  if not status then return fail(err, code) end
  -- Learn the lifeline's pids (to kill what steps start) and the OOM count so far.
  self.lock:lock()
  -- The mounts' modes are noted, and a committed image's files go back into
  -- them, before the first step (lockup.reset).
  self.ooms, self.shell_pid, self.lifeline_pids = session.probe(self, reset.start_text(self.tmpfs))
  self.lock:unlock()
  if not self.lifeline_pids then
    return fail(self.dead or ("the session shell did not answer (is " .. shell .. " a POSIX shell?)"))
  end
  if self.first_error ~= "" then
    return fail("the files of its committed image could not be put back: " .. self.first_error)
  end
  self.meter = meter.open(self, opts.accounting)
  self.lane:answered()
  self.park_name = park
  return self
end

-- Inside nginx a connection belongs to the request or timer that made it, so
-- a warm box started by a pool's timer cannot be handed to a request as it
-- is. Instead its lane's connection is parked in nginx's pool of idle
-- connections under a name of its own, and the request that takes the box
-- takes it back (unpark). Parked, it still holds the lifeline: nginx closes
-- a parked connection the daemon writes to or hangs up, so a box that ends
-- or speaks while idle loses it, and the worker's exit ends every parked
-- box. The wait call cannot be parked (nginx will not park a connection
-- whose answer is due): it is made again by the request. true, or nil, err
-- (the box is then shut).
function _M.park(self)
  local ok, err = self.lane.conn:park()
  self.parked = true
  if self.waiter then
    self.waiter.conn:close()
    self.waiter = nil
  end
  if not ok then
    err = "its lane's connection could not be parked in nginx's pool: " .. tostring(err)
    _M.shut(self, err)
    return nil, err
  end
  return true
end

-- Takes a parked box's lane back, in this request, and asks for its exit
-- code again: true, or false when the lane is gone (the box ended or spoke
-- while parked; it is shut).
function _M.unpark(self)
  self.parked = false
  local d = self.docker
  local conn = cosocket.unpark(d.socket, d.host, d.port, self.park_name .. "/lane", core.monotime() + d.timeout)
  if not conn then
    _M.shut(self, "it ended while parked in its pool")
    return false
  end
  self.lane = attach.wrap(conn)
  self.waiter = wait_call(d, self.id) -- nil if that failed: stop() then confirms the removal without it
  return true
end

-- Reads the daemon's answer to the wait call made at start: the container's
-- exit code, once it has been removed. Several coroutines may want it at once.
function _M.reap(self, deadline)
  if self.exit_code ~= nil or not self.waiter then return self.exit_code end
  self.reap_lock:lock()
  if self.waiter then
    local waiter = self.waiter
    local status, body = self.docker:receive(waiter, deadline or core.monotime() + REAP_TIMEOUT)
    self.waiter = nil
    waiter.conn:close()
    if status and type(body) == "table" then self.exit_code = compat.tointeger(body.StatusCode) end
  end
  self.reap_lock:unlock()
  return self.exit_code
end

-- Ends the session: the box is dead from now on, with `why` as the reason.
-- Closing the lane is the lifeline's EOF: the container ends with it.
function _M.shut(self, why)
  self.dead = self.dead or why
  if self.parked then _M.unpark(self) end -- closed below: a parked connection would keep the box
  if self.lane then
    self.lane:close()
    self.lane = nil
  end
  if self.meter then self.meter:close() end
end

-- Has a box kept quiet since its session answered: no output, no end of its
-- streams? A pooled box is checked so before it is handed out: a never-used
-- shell says nothing, and a container that ended (killed, removed, its
-- daemon restarted) ends its lane's streams. (The wait call's connection
-- tells nothing here: the head of its answer comes at once.)
function _M.idle(self)
  return not self.dead and self.lane ~= nil and self.lane:idle()
end

-- The container's state as the Engine shows it: "gone" once it answers 404,
-- else State.Status ("removing", "dead", "exited", ...), or nil, err.
local function engine_state(d, id, deadline)
  local status, info, code = d:request("GET", "/containers/" .. id .. "/json", { deadline = deadline })
  if status then return type(info) == "table" and type(info.State) == "table" and info.State.Status or "unknown" end
  if code == 404 then return "gone" end
  return nil, info
end

-- Waits until the Engine no longer knows the container: true, or nil, err
-- after REMOVE_TIMEOUT. The answer to the wait call is not enough: under load
-- the Engine answers it while the removal is still in progress, or when the
-- removal failed and left the container "dead". A removal in progress is given
-- time (polled with backoff); anything else, or one still removing after
-- REMOVE_RETRY seconds, is removed again with DELETE ?force=1.
local function confirm_gone(d, id, deadline)
  local started, pause = core.monotime(), 0.02
  local state, err, delete_err
  while true do
    state, err = engine_state(d, id, deadline)
    if state == "gone" then return true end
    local waited = core.monotime() - started
    if waited >= REMOVE_TIMEOUT or core.monotime() >= deadline then break end
    if state and (state ~= "removing" or waited >= REMOVE_RETRY) then
      local ok, derr, code = d:request("DELETE", "/containers/" .. id, { query = { force = 1 }, deadline = deadline })
      if ok or code == 404 then return true end
      -- 409: a removal is already in progress; anything else is worth telling
      if code ~= 409 then delete_err = derr end
    end
    scheduler.sleep(math_min(pause, math.max(0, deadline - core.monotime())))
    pause = math_min(pause * 2, 0.5)
  end
  err = delete_err or err
  return nil, string_format("box %s is not gone yet: after %.3g s the Engine still shows its container (%s)%s; "
    .. "lockup.prune() removes it once it can", id:sub(1, 12), core.monotime() - started, state or "state unknown",
    err and (": " .. err) or "")
end

-- box:pause() / box:resume() -> true | nil, err: the Engine's freezer. A
-- call in flight (another coroutine's) ends first: pause takes the box. While
-- paused, calls on the box fail at once saying so (box.lua), and stop()
-- removes it as usual; the lifeline is frozen too, so a paused box whose
-- process dies is left to lockup.prune() (README, "Pausing a box").
local function freezer(self, path, want, fname)
  if self.dead then return nil, self.dead end
  if (self.paused or false) ~= want then
    return nil, want and "the box is not paused" or "the box is already paused"
  end
  local ok, err = self.lock:lock()
  if not ok then return nil, err end
  local status, rerr = true, nil
  if not self.dead then
    status, rerr = self.docker:request("POST", "/containers/" .. self.id .. path,
      { deadline = core.monotime() + REMOVE_TIMEOUT })
    if status then self.paused = not want or nil end
  end
  self.lock:unlock()
  if self.dead then return nil, self.dead end
  if not status then return nil, fname .. " box " .. self.id:sub(1, 12) .. ": " .. rerr end
  return true
end

function _M.pause(self) return freezer(self, "/pause", false, "pausing") end
function _M.resume(self) return freezer(self, "/unpause", true, "resuming") end

-- Kills and removes the container; idempotent. Returns true once the Engine
-- no longer knows it, else nil, err (and a later stop tries again).
-- `deadline` (lockup's own calls: a step that had to stop its box) bounds
-- the Engine's calls; box:stop() gives them REAP_TIMEOUT and REMOVE_TIMEOUT.
function _M.stop(self, deadline)
  if self.stopped then return true end
  self.stopped = true
  self.dead = self.dead or "the box was stopped"
  -- A call in progress owns the lane; it sees the stream end and closes it.
  if not self.lock.owner then self:shut(self.dead) end
  local started = core.monotime()
  if self.paused then -- gVisor's sandbox does not die frozen: thawed first (runc's does)
    self.docker:request("POST", "/containers/" .. self.id .. "/unpause",
      { deadline = deadline or started + REMOVE_TIMEOUT })
    self.paused = nil
  end
  if self.exit_code == nil then
    local status, err, code = self.docker:request("POST", "/containers/" .. self.id .. "/kill",
      { deadline = deadline or started + REMOVE_TIMEOUT })
    if not status and code ~= 404 and code ~= 409 then -- 404/409: already gone / not running
      self:shut(self.dead)
      self.stopped = false -- not confirmed: a later stop tries again
      return nil, "stopping box " .. self.id:sub(1, 12) .. ": " .. err
    end
  end
  self:reap(deadline or started + REAP_TIMEOUT)
  local gone, err = confirm_gone(self.docker, self.id, deadline or core.monotime() + REMOVE_TIMEOUT)
  if not gone then
    self.stopped = false -- not confirmed: a later stop tries again
    return nil, err
  end
  return true
end

-- docker:prune([{all = true}]) -> number removed | nil, err. Removes the boxes
-- whose owning process (on this host) is gone, with all = true every box, and
-- the fifo lanes' directories such processes left behind.
function _M.prune(d, opts)
  opts = options.check(opts, { all = "boolean" }, "prune", 2)
  local status, list = d:request("GET", "/containers/json", {
    query = { all = 1, filters = { label = { OWNER_LABEL } } },
  })
  if not status then return nil, "listing boxes: " .. list end
  local me_host = _M.owner():match("^(.*)/%d+$")
  local removed = 0
  for _, c in ipairs(list) do
    local host, pid = tostring(c.Labels[OWNER_LABEL]):match("^(.*)/(%d+)$")
    local stray = opts.all or (host == me_host and not core.pid_alive(tonumber(pid)))
    if stray then
      local ok, err, code = d:request("DELETE", "/containers/" .. c.Id, { query = { force = 1 } })
      if ok or code == 404 then removed = removed + 1
      else return nil, "removing box " .. c.Id:sub(1, 12) .. ": " .. err end
    end
  end
  fifo.prune()
  return removed
end

return _M
