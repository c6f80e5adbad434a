-- A box: one container, with a session shell over a lane. This module is the
-- class: its methods, and the lock that runs one call at a time on a box.
-- The work is elsewhere, one concern a module: lockup.lifecycle (start,
-- stop), lockup.session (steps in the shell), lockup.exec (the exec API),
-- lockup.files (files in and out), lockup.lane.* (moving bytes).
local lifecycle = require "lockup.lifecycle"
local session = require "lockup.session"
local exec = require "lockup.exec"
local files = require "lockup.files"
local options = require "lockup.options"
local result = require "lockup.result"
local reset = require "lockup.reset"
local commit = require "lockup.commit"
local process = require "lockup.process"

local type, ipairs, error, pcall, tostring = type, ipairs, error, pcall, tostring
local string_format = string.format

local _M = {}

local RUN_OPTIONS = {
  stdin = "string", timeout = "number", max_output = "number", on_stdout = "function", on_stderr = "function",
  cpu_limit = "number",
}
local EXEC_OPTIONS = {
  stdin = "string|function", timeout = "number", max_output = "number", on_stdout = "function", on_stderr = "function",
  env = "table", workdir = "string", user = "string", stdin_size = "number", cpu_limit = "number",
}

local SPAWN_OPTIONS = {
  tty = "boolean", cols = "number", rows = "number", env = "table", workdir = "string", user = "string",
  timeout = "number", max_output = "number", on_stdout = "function", on_stderr = "function",
}

local Box = {}
local box_mt = { __index = Box, __name = "lockup.box" }

function box_mt.__tostring(self)
  local state = self.dead and ("dead: " .. self.dead) or self.paused and "paused" or "running"
  return string_format("lockup.box %s (%s, %s lane, %s)", self.id:sub(1, 12), self.image, self.lane_name, state)
end

-- Garbage collection needs no metamethod of its own: a box's lane holds
-- lockup.core userdata (a connection, or FIFOs), closed when collected, and
-- closing the lane ends the container (the lifeline; AutoRemove removes it).

Box.stop, Box.shut, Box.reap = lifecycle.stop, lifecycle.shut, lifecycle.reap
Box.pause, Box.resume = lifecycle.pause, lifecycle.resume
box_mt.__close = function(self) self:stop() end
Box.put, Box.put_file, Box.get, Box.get_file = files.put, files.put_file, files.get, files.get_file

local PAUSED = "the box is paused (box:pause()): box:resume() it first"

-- Takes the box for one call, in call order; nil, err when it is dead or
-- paused (a paused box would only let the call time out).
local function acquire(self)
  if self.dead then return nil, self.dead end
  if self.paused then return nil, PAUSED end
  local ok, err = self.lock:lock()
  if not ok then return nil, err end
  if self.dead or self.paused then
    self.lock:unlock()
    return nil, self.dead or PAUSED
  end
  return true
end

-- body(self, a, opts) with the box's meter around it: the result gets what
-- the call cost (lockup.meter).
local function metered(self, body, a, opts)
  local meter = self.meter
  if not meter then return body(self, a, opts) end
  meter:begin()
  local r, err = body(self, a, opts)
  if r then meter:finish(r) end
  return r, err
end

-- Runs body(self, a, opts), metered, holding the box: its result, or nil,
-- err. A Lua error in it (a callback that raised) leaves the shell out of
-- step, so the box is stopped, then it is raised.
local function locked(self, body, a, opts)
  local ok, err = acquire(self)
  if not ok then return nil, err end
  local r
  ok, r, err = pcall(metered, self, body, a, opts)
  self.lock:unlock()
  if not ok then
    self:stop()
    error(r, 0)
  end
  return r, err
end

-- A CPU limit needs a positive number and a box with a meter; raises at the
-- public call's level otherwise.
local function check_cpu_limit(self, opts, fname)
  local limit = opts.cpu_limit
  if limit == nil then return end
  if limit ~= limit or limit <= 0 then -- NaN too
    error(string_format("bad option 'cpu_limit' to '%s' (CPU seconds > 0 expected, got %s)", fname,
      tostring(limit)), 3)
  end
  if not self.meter then
    error(string_format("bad option 'cpu_limit' to '%s' (this box has no accounting to measure it: started "
      .. "with accounting = false, or its cgroup is not on this host; for a remote Engine start it with "
      .. "accounting = \"engine\")", fname), 3)
  end
end

-- box:run(cmd [, opts]) -> result | nil, err
function Box:run(cmd, opts)
  if type(cmd) ~= "string" then
    error("bad argument #1 to 'run' (string expected, got " .. type(cmd) .. ")", 2)
  end
  if cmd:find("\0", 1, true) then
    error("bad argument #1 to 'run' (a shell command cannot contain NUL bytes; pass data with opts.stdin)", 2)
  end
  opts = options.check(opts, RUN_OPTIONS, "run", 2)
  check_cpu_limit(self, opts, "run")
  return locked(self, session.run, cmd, opts)
end

-- An exec, then, if a process of it died of SIGKILL, whether the OOM killer did it.
local function exec_checked(self, argv, opts)
  local r, err = exec.run(self, argv, opts, session.exec_overrun(self))
  if r and r.code and session.killed(r) then
    r.oom = session.oom_killed(self)
    r.status = result.status_of(r)
  end
  return r, err
end

-- box:exec(argv [, opts]) -> result | nil, err: argv through the Engine's exec
-- API, no shell involved.
function Box:exec(argv, opts)
  if type(argv) ~= "table" or #argv == 0 then
    error("bad argument #1 to 'exec' (non-empty list of strings expected)", 2)
  end
  for i, a in ipairs(argv) do
    if type(a) ~= "string" then
      error(string_format("bad argument #1 to 'exec' (argv[%d] is a %s, string expected)", i, type(a)), 2)
    end
  end
  opts = options.check(opts, EXEC_OPTIONS, "exec", 2)
  exec.env_list(opts.env, "exec")
  check_cpu_limit(self, opts, "exec")
  return locked(self, exec_checked, argv, opts)
end

-- box:spawn(cmd | argv [, opts]) -> proc | nil, err: a process beside the
-- steps, with live stdin (lockup.process). No lock: steps and other
-- processes go on meanwhile.
function Box:spawn(cmd, opts)
  if type(cmd) == "string" then
    if cmd:find("\0", 1, true) then
      error("bad argument #1 to 'spawn' (a shell command cannot contain NUL bytes)", 2)
    end
  elseif type(cmd) == "table" and #cmd > 0 then
    for i, a in ipairs(cmd) do
      if type(a) ~= "string" then
        error(string_format("bad argument #1 to 'spawn' (argv[%d] is a %s, string expected)", i, type(a)), 2)
      end
    end
  else
    error("bad argument #1 to 'spawn' (a shell command or a non-empty list of strings expected, got "
      .. type(cmd) .. ")", 2)
  end
  opts = options.check(opts, SPAWN_OPTIONS, "spawn", 2)
  exec.env_list(opts.env, "spawn")
  if opts.on_stderr and opts.tty then
    error("bad option 'on_stderr' to 'spawn' (a terminal has one stream: its output, stderr too, goes to on_stdout)", 2)
  end
  for _, k in ipairs({ "cols", "rows" }) do
    local v = opts[k]
    if v ~= nil and (v < 1 or v > 65535 or v % 1 ~= 0) then
      error(string_format("bad option '%s' to 'spawn' (a size from 1 to 65535 expected, got %s)", k, tostring(v)), 2)
    end
  end
  if self.dead then return nil, "cannot spawn in the box: " .. self.dead end
  if self.paused then return nil, PAUSED end
  return process.spawn(self, cmd, opts)
end

-- box:processes() -> list | nil, err: the box's processes (lockup.process).
function Box:processes()
  if self.dead then return nil, self.dead end
  if self.paused then return nil, PAUSED end
  return process.processes(self)
end

-- box:reset() -> true | nil, err: the box made clean again (lockup.reset);
-- when that fails the box is stopped. Not while a call is in flight on it.
function Box:reset()
  if self.dead then return nil, self.dead end
  if self.paused then return nil, PAUSED end
  if self.lock.owner then
    return nil, "cannot reset the box while a call is in flight on it: wait for the call to end, or end it with "
      .. "box:kill_processes()"
  end
  local ok, err = reset.check(self)
  if not ok then return nil, err end
  ok, err = acquire(self)
  if not ok then return nil, err end
  ok, err = reset.run(self)
  self.lock:unlock()
  return ok, err
end

-- box:commit([tag]) -> tag | nil, err: an image of the box's files as they
-- are now (lockup.commit). Waits for a call in flight.
function Box:commit(tag)
  commit.check_tag(tag)
  if self.dead then return nil, "cannot commit the box: " .. self.dead end
  local ok, err = acquire(self)
  if not ok then return nil, err end
  local r
  ok, r, err = pcall(commit.run, self, tag)
  self.lock:unlock()
  if not ok then error(r, 0) end
  return r, err
end

-- box:kill_processes() -> true | nil, err: kills every process the steps
-- started, background ones too; the shell and its state stay. Used on a
-- timeout or output cap; callable while another coroutine's step runs (that
-- step then ends, killed).
function Box:kill_processes()
  if self.paused then return nil, PAUSED end
  return session.kill_processes(self)
end

-- docker:start(opts) -> box | nil, err (lockup.lifecycle does the work;
-- `park` is lockup.pool's, inside nginx).
function _M.start(d, opts, park)
  return lifecycle.start(d, opts, box_mt, park)
end

_M.Box = Box
return _M
