-- A box: one container with a long-lived shell on its attach stream.
--
-- Each command is sent as one line to that shell and followed by a sentinel
-- print with a fresh random token; lockup.core's stream finds the token on
-- stdout and on stderr, which ends the command's output on each, and reads the
-- exit code that follows it. See docs in README.md ("How a command runs").
local core = require "lockup.core"
local docker_api = require "lockup.docker"
local scheduler = require "lockup.scheduler"
local result = require "lockup.result"
local options = require "lockup.options"
local hardening = require "lockup.hardening"

local setmetatable, type, tostring, pairs, ipairs, error, pcall =
  setmetatable, type, tostring, pairs, ipairs, error, pcall
local string_format, table_concat = string.format, table.concat
local now, wait = core.monotime, scheduler.wait

local _M = {}

local OWNER_LABEL = "lockup.owner"
_M.OWNER_LABEL = OWNER_LABEL
local REAP_TIMEOUT = 10 -- seconds to wait for the daemon to remove a stopped container
local STDIN_CHUNK = 16384 -- stdin bytes per printf line

-- The lifeline: PID 1 of every box. The session shell ("$0") reads commands
-- from `cat`, not from the container's stdin itself: when the attach
-- connection closes (stop, garbage collection, or the Lua process killed with
-- SIGKILL) cat sees EOF and `kill -9 -1` ends everything, even a command still
-- running, so the container (AutoRemove) goes away with the connection. When
-- the session shell exits on its own, the same kill ends cat, and PID 1 exits
-- with the shell's code. PID 1 is a shell, so nothing in the box can kill it,
-- and while it waits it reaps every zombie reparented to it (the job of an
-- init). PID 1's own stderr goes to /dev/null (fd 9 keeps the real one for
-- the session shell), or it would report "Killed" for the pipeline it waits on.
local LIFELINE = table_concat({
  'command -v cat >/dev/null 2>&1 || exec "$0"',
  'exec 9>&2 2>/dev/null',
  '{ cat; kill -9 -1; } | { "$0" 2>&9 9>&-; c=$?; kill -9 -1; exit $c; }',
}, "\n")

local function owner()
  local f = io.open("/proc/sys/kernel/hostname")
  local host = f and f:read("l") or os.getenv("HOSTNAME") or "localhost"
  if f then f:close() end
  return host .. "/" .. core.getpid()
end
_M.owner = owner

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Bytes as a printf format that prints exactly them (NULs included).
local function printf_literal(s)
  return "'" .. s:gsub("[%z\1-\31\127-\255'\\%%]", function(c)
    return string_format("\\%03o", c:byte())
  end) .. "'"
end

-- The text that runs `cmd` in the session shell. Fds 7 and 8 are set afresh
-- from the shell's own stdout and stderr (a step may have changed them), and
-- `command eval` keeps a syntax error in cmd from ending the shell; the braces
-- run it in the shell itself, so cd, variables and functions persist; the
-- redirections on the group give it the shell's stdout/stderr afresh and
-- restore them after (a step may close its own). stdin is /dev/null, or a
-- file holding exactly opts.stdin, written by printf lines first (stdin never
-- travels raw on the shell's input, where the shell would read it as
-- commands) and unlinked once open.
-- Once the session shell's pid is known, only that process goes on to print
-- the sentinel: a forked copy of the shell whose `eval` failed (a background
-- job with a syntax error, a fork bomb's "can't fork") returns from it into
-- the rest of this line, and would print it, then read later steps. The exit
-- code waits in $1 meanwhile (`set --` and `shift` leave "$@" as it was).
local function command_line(cmd, token_hex, stdin, shell_pid)
  local lines = {}
  local guard = shell_pid and string_format(
    "[ -d /proc/%d ] && ! [ /proc/self -ef /proc/%d ] && exit; ", shell_pid, shell_pid) or ""
  local tail = string_format("set -- $? \"$@\"; %scommand printf '\\001%s %%d\\n' \"$1\"; shift; "
    .. "command printf '\\001%s 0\\n' >&2", guard, token_hex, token_hex)
  local open = "exec 7>&1 8>&2; "
  if stdin then
    local source = string_format('"${TMPDIR:-/tmp}/.lockup-stdin-%s"', core.random_hex(8))
    lines[1] = "command printf '' >" .. source
    for i = 1, #stdin, STDIN_CHUNK do
      lines[#lines + 1] = "command printf " .. printf_literal(stdin:sub(i, i + STDIN_CHUNK - 1)) .. " >>" .. source
    end
    lines[#lines + 1] = string_format("%s{ rm -f %s 2>/dev/null; command eval %s; } <%s >&7 2>&8; %s",
      open, source, shell_quote(cmd), source, tail)
  else
    lines[1] = string_format("%s{ command eval %s; } </dev/null >&7 2>&8; %s", open, shell_quote(cmd), tail)
  end
  return table_concat(lines, "\n") .. "\n"
end

-- Options -------------------------------------------------------------------

local START_OPTIONS = {
  image = "string", shell = "string", env = "table", workdir = "string", user = "string",
  labels = "table", name = "string", timeout = "number", max_output = "number",
  -- hardening (lockup.hardening): each overrides one secure default
  network = "boolean", cap_add = "table", read_only = "boolean", memory = "number|string", cpus = "number",
  pids = "number", ulimits = "table", disk = "number|string", tmpfs = "table", runtime = "string",
  security_opt = "table", volumes = "table",
}
local RUN_OPTIONS = {
  stdin = "string", timeout = "number", max_output = "number", on_stdout = "function", on_stderr = "function",
}
local EXEC_OPTIONS = {
  stdin = "string|function", timeout = "number", max_output = "number", on_stdout = "function", on_stderr = "function",
  env = "table", workdir = "string", user = "string",
}

local function env_list(env, fname)
  if not env then return nil end
  local list = {}
  for _, k in ipairs(options.sorted_keys(env)) do
    local v = env[k]
    if type(k) ~= "string" or k == "" or k:find("[=%z]") or (type(v) ~= "string" and type(v) ~= "number") then
      error(string_format("bad option 'env' to '%s' (a table of NAME = string expected)", fname), 3) -- user's code
    end
    list[#list + 1] = k .. "=" .. v
  end
  return list
end

-- The box ----------------------------------------------------------------------

local Box = {}
_M.Box = Box -- lockup.files adds its methods
local box_mt = { __index = Box, __name = "lockup.box" }

function box_mt.__tostring(self)
  local state = self.dead and ("dead: " .. self.dead) or "running"
  return string_format("lockup.box %s (%s, %s)", self.id:sub(1, 12), self.image, state)
end

-- Garbage collection needs no metamethod of its own: a box's connections are
-- lockup.conn userdata, closed when collected, and closing the attach
-- connection ends the container (the lifeline above; AutoRemove removes it).

-- Reads the daemon's answer to the wait call made at start: the container's
-- exit code, once it has been removed. Several coroutines may want it at once.
function Box:reap(deadline)
  if self.exit_code ~= nil or not self.waiter then return self.exit_code end
  self.reap_lock:lock()
  if self.waiter then
    local waiter = self.waiter
    local status, body = self.docker:receive(waiter, deadline or now() + REAP_TIMEOUT)
    self.waiter = nil
    waiter.conn:close()
    if status and type(body) == "table" then self.exit_code = math.tointeger(body.StatusCode) end
  end
  self.reap_lock:unlock()
  return self.exit_code
end

-- Ends the session: the box is dead from now on, with `why` as the reason.
function Box:shut(why)
  self.dead = self.dead or why
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
end

-- Kills and removes the container; idempotent. Returns true once it is gone.
function Box:stop()
  if self.stopped then return true end
  self.stopped = true
  self.dead = self.dead or "the box was stopped"
  -- A call in progress owns the connection; it sees the stream end and closes it.
  if not self.lock.owner then self:shut(self.dead) end
  if self.exit_code == nil then
    local status, err, code = self.docker:request("POST", "/containers/" .. self.id .. "/kill")
    if not status and code ~= 404 and code ~= 409 then -- 404/409: already gone / not running
      self:shut(self.dead)
      self.stopped = false -- not confirmed: a later stop tries again
      return nil, "stopping box " .. self.id:sub(1, 12) .. ": " .. err
    end
  end
  self:reap()
  if self.exit_code == nil then -- the wait call failed: make sure it is gone
    local status, err, code = self.docker:request("DELETE", "/containers/" .. self.id, { query = { force = 1 } })
    if not status and code ~= 404 then
      self.stopped = false
      return nil, "removing box " .. self.id:sub(1, 12) .. ": " .. err
    end
  end
  return true
end
box_mt.__close = function(self) self:stop() end

-- Takes the box for one call, in call order; nil, err when it is dead.
local function acquire(self)
  if self.dead then return nil, self.dead end
  local ok, err = self.lock:lock()
  if not ok then return nil, err end
  if self.dead then
    self.lock:unlock()
    return nil, self.dead
  end
  return true
end

-- Runs body(self, ...) holding the box; a Lua error in it (a callback that
-- raised) leaves the shell out of step, so the box is stopped, then it is raised.
local function locked(self, body, ...)
  local ok, err = acquire(self)
  if not ok then return nil, err end
  local res = table.pack(pcall(body, self, ...))
  self.lock:unlock()
  if not res[1] then
    self:stop()
    error(res[2], 0)
  end
  return table.unpack(res, 2, res.n)
end

local GRACE = 2 -- seconds a step gets to end once its processes were killed
local SIGKILLED = 128 + 9

-- Reads what the connection has for the stream and hands it to the callbacks,
-- if any; returns stream:pump's answer.
local function pump(stream, conn, opts)
  local st, err = stream:pump(conn)
  if opts.on_stdout then
    local chunk = stream:take(1)
    if #chunk > 0 then opts.on_stdout(chunk) end
  end
  if opts.on_stderr then
    local chunk = stream:take(2)
    if #chunk > 0 then opts.on_stderr(chunk) end
  end
  return st, err
end

-- Reads until the stream says how the step ended: "exit", "eof", "truncated"
-- (a cap was reached), "timeout", or nil, err. Callbacks get output as it
-- arrives; without them it stays in C until the end (no copies on the way).
local function collect(stream, conn, opts, deadline)
  while true do
    local st, err = pump(stream, conn, opts)
    if st == "wait" then
      if not wait(conn:fd(), "r", deadline) then return "timeout" end
    elseif st == "more" then
      scheduler.yield()
    else
      return st, err
    end
  end
end

-- Arms `stream` for one step: output beyond max_output per stream is dropped
-- (a stream given to a callback has no cap of its own).
local function arm(self, stream, token, opts)
  local cap = opts.max_output or self.max_output
  stream:arm(token, not opts.on_stdout and cap or 0, not opts.on_stderr and cap or 0)
end

-- Follows a step to its end. Past its timeout or its output cap, the step's
-- processes are killed and it gets GRACE seconds to end; if it does not (the
-- shell itself is looping), "timeout" says the box must go.
local function follow(self, stream, conn, opts, deadline, out)
  local killed = false
  while true do
    local st, err = collect(stream, conn, opts, killed or deadline)
    if st == "timeout" and not killed then out.timed_out = true end
    if (st == "timeout" or st == "truncated") and not killed then
      self:kill_processes()
      killed = math.min(deadline, now() + GRACE)
      if out.timed_out then killed = now() + GRACE end
    elseif st ~= "truncated" then
      local t1, t2 = stream:truncated()
      out.stdout = opts.on_stdout and "" or stream:take(1)
      out.stderr = opts.on_stderr and "" or stream:take(2)
      out.truncated = (t1 or t2) or nil
      return st, err
    end
  end
end

-- The count of OOM kills in the box's memory cgroup (v1 or v2), the session
-- shell's pid, then the pids of every process but the probe's own subshell: at start, that is the
-- lifeline, cat and the session shell, the processes a sweep spares. Shell
-- builtins in a subshell (no state leaks into the session).
local PROBE = "(read -r l </proc/self/stat; set -- $l; me=$1; k=; for d in /proc/[0-9]*; do "
  .. 'p=${d#/proc/}; [ "$p" = "$me" ] || k="$k $p"; done; n=0; '
  .. "for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
  .. '[ -r "$f" ] && while read -r k2 v; do [ "$k2" = oom_kill ] && n=$v; done <"$f"; done; echo $n $$$k)'

local run_locked

-- Returns the OOM kill count, the session shell's pid and the list of pids
-- (see PROBE), or nil.
local function probe(self)
  local r = run_locked(self, PROBE, { timeout = 10 })
  if not r then return nil end
  local ooms, pid, pids = r.stdout:match("^(%d+) (%d+)( [%d ]+)\n$")
  return tonumber(ooms), tonumber(pid), pids
end

-- Kills every process the steps started, through the exec API as the box's
-- user: all but the lifeline's own ($@, from the probe at start). Loops
-- because a process may fork while it runs. An exec needs a free pid: when a
-- fork bomb has used them all, it fails (and a timed-out step then stops the box).
local SWEEP = table_concat({
  'keep=" $* "',
  'for pass in 1 2 3 4 5 6 7 8; do found=',
  '  for d in /proc/[0-9]*; do p=${d#/proc/}',
  '    case "$keep" in *" $p "*) continue;; esac',
  '    [ "$p" = "$$" ] || { kill -9 "$p" 2>/dev/null && found=1; }',
  '  done; [ -z "$found" ] && break',
  'done',
  'exit 0',
}, "\n")

local exec_locked

-- box:kill_processes() -> true | nil, err: kills every process the steps
-- started, background ones too; the shell and its state stay. Used on a
-- timeout or output cap; callable while another coroutine's step runs (that
-- step then ends, killed).
function Box:kill_processes()
  if self.dead then return nil, self.dead end
  if self.sweeping then return true end
  if not self.lifeline_pids then return nil, "the box is still starting" end
  self.sweeping = true
  local argv = { self.shell, "-c", SWEEP, "sweep" }
  for pid in self.lifeline_pids:gmatch("%d+") do argv[#argv + 1] = pid end
  local r, err = exec_locked(self, argv, { timeout = 10 })
  self.sweeping = false
  if not r or r.code ~= 0 then
    return nil, "killing the box's processes: " .. (err or (r.stderr .. r.stdout):gsub("%s+$", ""))
  end
  return true
end

-- After a step killed with SIGKILL: was it the kernel's OOM killer?
local function oom_killed(self)
  local ooms = probe(self)
  if not ooms or not self.ooms then return nil end
  local grew = ooms > self.ooms
  self.ooms = ooms
  return grew or nil
end

-- After the box died with SIGKILL: asks the Engine's event log whether an OOM
-- kill came first (the container is gone, so it cannot be inspected). The log
-- is read up to the container's "die" event, which comes after any "oom".
local function died_of_oom(self)
  local filters = { container = { self.id }, event = { "oom", "die" } }
  for _ = 1, 3 do
    -- until: the next whole second, so that events of this second are in
    -- (the daemon holds the answer until then)
    local status, body = self.docker:request("GET", "/events", { timeout = 5, query = {
      since = tostring(self.started_at - 60), ["until"] = tostring(os.time() + 1), filters = filters } })
    if not status then return nil end
    -- One event comes back decoded (a single JSON document); more are JSON lines.
    local text = type(body) == "table" and ('"Action":"' .. tostring(body.Action) .. '"') or tostring(body)
    if text:find('"Action":"oom"', 1, true) then return true end
    if text:find('"Action":"die"', 1, true) then return nil end
  end
  return nil
end

function run_locked(self, cmd, opts)
  local started = now()
  local deadline = started + (opts.timeout or self.timeout)
  local token_hex = core.random_hex(16)
  arm(self, self.stream, "\1" .. token_hex, opts)
  local ok, err = docker_api.send_all(self.conn, command_line(cmd, token_hex, opts.stdin, self.shell_pid), deadline)
  local out = {}
  local st
  if ok then
    st, err = follow(self, self.stream, self.conn, opts, deadline, out)
  else
    st = err == "timed out" and "timeout" or nil
  end
  out.duration = now() - started
  if st == "exit" then
    out.code = self.stream:code()
    -- The shell reports "Killed" for a job killed by a signal, which the OOM
    -- killer may have sent to any process of the step, not just its last.
    if cmd ~= PROBE and (out.code == SIGKILLED or out.stderr:find("Killed", 1, true)) then
      out.oom = oom_killed(self)
    end
    return result.new(out)
  elseif st == "timeout" then -- killing the step's processes did not end it: the shell itself runs on
    out.box_stopped = true
    self:shut(string_format("the box was stopped: a step went on past its %s even with its processes "
      .. "killed (a loop in the shell itself, or the container is paused); start a new box",
      out.timed_out and ("timeout (" .. (opts.timeout or self.timeout) .. "s)") or "output cap"))
    self:stop()
    return result.new(out)
  elseif st == "eof" then
    self:shut("the box's shell has ended")
    if self.stopped then return nil, self.dead end
    out.code = self:reap()
    if out.code == nil then -- no exit code: the daemon itself went away (killed, restarted)
      self.dead = "lost the box: its stream ended and the Docker daemon at " .. self.docker.endpoint
        .. " did not report an exit (did it stop or restart?); connect again and start a new box"
      return nil, self.dead
    end
    out.exited = true
    if out.code == SIGKILLED then
      out.oom = died_of_oom(self)
      self.dead = out.oom and "the box was killed by the kernel: out of memory (raise start{ memory = ... })"
        or "the box's container was killed (SIGKILL): removed from outside, or out of memory"
    else
      self.dead = string_format("the box's shell exited (code %s); start a new box", tostring(out.code))
    end
    return result.new(out)
  end
  self:shut("lost the box's session (did the Docker daemon stop or restart?): " .. tostring(err))
  self:stop()
  return nil, self.dead
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
  return locked(self, run_locked, cmd, opts)
end

-- Sends an exec's stdin (a string, or a function returning the next chunk and
-- nil at the end) while reading its output, so that a process that stops
-- reading (it failed, or exited) cannot stall the sender: once the stream
-- ends, or the daemon refuses more, the rest is not sent and the exit code
-- tells what happened; past the deadline, follow() handles the timeout.
-- Returns true, or nil, err when the source failed.
local function send_stdin(stream, conn, opts, deadline)
  local source, chunk, i = opts.stdin, "", 1
  if type(source) == "string" then
    local once = source
    source = function() local s = once; once = nil; return s end
  end
  while true do
    if i > #chunk then
      local err
      chunk, err = source()
      if chunk == nil then
        if err then return nil, "reading stdin: " .. tostring(err) end
        conn:shutdown() -- fails only if the stream is gone, which the exit code then tells
        return true
      end
      if type(chunk) ~= "string" then return nil, "reading stdin: the source returned a " .. type(chunk) end
      i = 1
    end
    local n = conn:send(chunk, i)
    if not n then return true end -- the daemon closed the stream: the process ended
    i = i + n
    local st = pump(stream, conn, opts)
    if st == "eof" or st == nil then return true end
    if n == 0 and st == "wait" and not wait(conn:fd(), "rw", deadline) then return true end
  end
end

function exec_locked(self, argv, opts)
  local started = now()
  local deadline = started + (opts.timeout or self.timeout)
  local d = self.docker
  local fail = "exec in box " .. self.id:sub(1, 12) .. ": "
  local status, created = d:request("POST", "/containers/" .. self.id .. "/exec", { body = {
    AttachStdin = opts.stdin ~= nil, AttachStdout = true, AttachStderr = true, Tty = false,
    Cmd = argv, Env = env_list(opts.env, "exec"), WorkingDir = opts.workdir, User = opts.user or self.user,
  } })
  if not status then return nil, fail .. created end
  local path = "/exec/" .. created.Id
  local conn, rest
  status, conn, rest = d:request("POST", path .. "/start", { body = { Detach = false, Tty = false }, hijack = true })
  if not status then return nil, fail .. conn end
  local stream = core.stream()
  arm(self, stream, nil, opts)
  local out, st, err = {}, stream:feed(rest)
  if st and opts.stdin then st, err = send_stdin(stream, conn, opts, deadline) end
  if st then st, err = follow(self, stream, conn, opts, deadline, out) end
  conn:close()
  out.duration = now() - started
  if st == "timeout" then -- killed, and still not ended: the process is beyond reach
    out.timed_out = true
    return result.new(out)
  elseif st ~= "eof" then
    return nil, fail .. tostring(err)
  end
  local info
  status, info = d:request("GET", path .. "/json")
  if not status then return nil, fail .. info end
  out.code = math.tointeger(info.ExitCode)
  if (out.code == SIGKILLED or out.stderr:find("Killed", 1, true)) and not self.sweeping then
    out.oom = oom_killed(self)
  end
  return result.new(out)
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
  env_list(opts.env, "exec")
  return locked(self, exec_locked, argv, opts)
end

-- Start ------------------------------------------------------------------------

-- Why a container did not start, told so the user knows what to do.
local function start_error(image, shell, err, code)
  if code == 404 and err:find("No such image", 1, true) then
    return string_format("image '%s' not found on the Engine: build it (docker build) or pull it first", image)
  end
  if err:find(shell, 1, true) and (err:find("no such file", 1, true) or err:find("not found", 1, true)) then
    return string_format("image '%s' has no shell at %s: give another with start{ shell = ... } (%s)",
      image, shell, err)
  end
  return string_format("starting a box from '%s': %s", image, err)
end

function _M.start(d, opts)
  -- docker:start tail-calls this: level 2 is the user's code.
  opts = options.check(opts, START_OPTIONS, "start", 2)
  if not opts.image then error("bad argument to 'start' (option 'image' is required)", 2) end
  local shell = opts.shell or "/bin/sh"
  local labels = { [OWNER_LABEL] = owner() }
  for k, v in pairs(opts.labels or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("bad option 'labels' to 'start' (a table of string = string expected)", 2)
    end
    if k == OWNER_LABEL then
      error("bad option 'labels' to 'start' (" .. OWNER_LABEL .. " is lockup's own: prune relies on it)", 2)
    end
    labels[k] = v
  end
  local config, host = hardening.container(opts)
  local status, created, code = d:request("POST", "/containers/create", {
    query = opts.name and { name = opts.name },
    body = {
      Image = opts.image,
      Entrypoint = { shell, "-c", LIFELINE, shell },
      Env = env_list(opts.env, "start"),
      WorkingDir = config.WorkingDir,
      User = config.User,
      Labels = labels,
      AttachStdin = true, AttachStdout = true, AttachStderr = true,
      OpenStdin = true, StdinOnce = true, Tty = false,
      NetworkDisabled = config.NetworkDisabled,
      HostConfig = host,
    },
  })
  if not status then return nil, start_error(opts.image, shell, created, code) end
  local id = created.Id

  local self = setmetatable({
    id = id, image = opts.image, docker = d, shell = shell, user = config.User, started_at = os.time(),
    workdir = config.WorkingDir, read_only = host.ReadonlyRootfs, writable = hardening.writable(host),
    timeout = opts.timeout or hardening.DEFAULTS.timeout,
    max_output = opts.max_output or hardening.DEFAULTS.max_output,
    stream = core.stream(), lock = scheduler.mutex(), reap_lock = scheduler.mutex(),
  }, box_mt)
  local function fail(err, c)
    self:shut("the box failed to start")
    d:request("DELETE", "/containers/" .. id, { query = { force = 1 } })
    if self.waiter then self.waiter.conn:close() end
    self.waiter = nil
    return nil, start_error(opts.image, shell, err, c)
  end

  -- Ask for the exit code now: with AutoRemove it is gone once the container is.
  local waiter, err = d:send("POST", "/containers/" .. id .. "/wait",
    { query = { condition = "removed" }, dedicated = true })
  if not waiter then return fail(err) end
  self.waiter = waiter
  local conn, rest
  status, conn, rest = d:request("POST", "/containers/" .. id .. "/attach", {
    query = { stream = 1, stdin = 1, stdout = 1, stderr = 1 }, hijack = true,
  })
  if not status then return fail(conn, rest) end
  self.conn = conn
  if #rest > 0 then self.stream:feed(rest) end
  status, err, code = d:request("POST", "/containers/" .. id .. "/start")
  if not status then return fail(err, code) end
  -- Learn the lifeline's pids (to kill what steps start) and the OOM count so far.
  self.lock:lock()
  self.ooms, self.shell_pid, self.lifeline_pids = probe(self)
  self.lock:unlock()
  if not self.lifeline_pids then
    return fail(self.dead or ("the session shell did not answer (is " .. shell .. " a POSIX shell?)"))
  end
  return self
end

return _M
