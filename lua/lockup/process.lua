-- box:spawn: a process that runs beside the box's steps, with live stdin,
-- its output as it comes, and a terminal if asked for. Each is an exec of
-- its own (the exec API: any lane, any engine) on a hijacked connection of
-- its own, driven by the calls made on it: nothing runs in the background,
-- so the same calls block in the REPL, yield inside lockup.run, and wait on
-- cosockets inside nginx.
--
-- Flow control is the connection's. Output nobody has read is held, up to
-- max_output bytes per stream (and what one read of the connection brings
-- past it, at most two slices); while a stream holds that much, lockup stops
-- reading the connection, the process blocks on its next write, a write to
-- its stdin then waits (up to its timeout), and a read of the other stream
-- says which one to read: nothing is lost, and nothing is buffered without
-- bound on either side. proc:wait collects what is left, as a step does: past
-- max_output the process is killed and the result says "truncated".
--
-- Each process leads a session of its own (the exec gives it one), which no
-- step can join: the sweep that kills a step's processes spares it, and
-- proc:kill ends that session, the process group, and every process whose
-- environment carries the process's token (a daemon that left the session).
local core = require "lockup.core"
local exec = require "lockup.exec"
local attach = require "lockup.lane.attach"
local session = require "lockup.session"
local shell = require "lockup.shell"
local result = require "lockup.result"
local scheduler = require "lockup.scheduler"
local compat = require "lockup.compat"

local type, error, tostring, tonumber, setmetatable, pcall, ipairs, pairs =
  type, error, tostring, tonumber, setmetatable, pcall, ipairs, pairs
local string_format, table_concat, math_min, math_max = string.format, table.concat, math.min, math.max
local table_remove, table_insert = table.remove, table.insert
local now = core.monotime

local _M = {}

local KILL_TIMEOUT = 10 -- seconds the kill itself may take
local KILLED_GRACE = 2 -- seconds a killed process gets to close its output

local SIGNALS = {
  HUP = 1, INT = 2, QUIT = 3, ABRT = 6, KILL = 9, USR1 = 10, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15,
  CONT = 18, STOP = 19, TSTP = 20, WINCH = 28,
}

local Proc = {}
local proc_mt = { __index = Proc, __name = "lockup.process" }

function proc_mt.__tostring(self)
  local state = self.result and ("ended: " .. self.result.status) or self.eof and "ended" or "running"
  return string_format("lockup.process %s (%s) in box %s", tostring(self.pid), state, self.box.id:sub(1, 12))
end

-- `local proc <close> = box:spawn(...)` (Lua 5.4): the process ends with the scope.
proc_mt.__close = function(self) self:kill() end

-- A signal as its number: a name (TERM or SIGTERM) or a number from 1 to
-- 64; raises at the public call's level otherwise.
local function signal_number(sig)
  if sig == nil then return 9 end
  local n = type(sig) == "number" and sig or type(sig) == "string" and SIGNALS[sig:upper():gsub("^SIG", "")]
  if not n or n ~= n or n < 1 or n > 64 or n % 1 ~= 0 then
    error(string_format("bad argument #1 to 'kill' (a signal expected: a name such as \"TERM\" or a number "
      .. "from 1 to 64, got %s)", tostring(sig)), 3)
  end
  return n
end

-- Output held for a reader: a list of chunks, their size (n), and how far a
-- search for a newline got (the chunks before `scan`, `seen` bytes, hold
-- none), so that reading a line or a few bytes costs what it takes, not
-- what is held.
local function held_new() return { n = 0, scan = 1, seen = 0 } end

local function held_add(h, chunk)
  h[#h + 1] = chunk
  h.n = h.n + #chunk
end

-- Takes the first `n` bytes of h (all of them without n), from its front chunks.
local function held_take(h, n)
  local parts, got = {}, 0
  n = math_min(n or h.n, h.n)
  while got < n do
    local c = table_remove(h, 1)
    if got + #c > n then
      table_insert(h, 1, c:sub(n - got + 1))
      c = c:sub(1, n - got)
    end
    parts[#parts + 1] = c
    got = got + #c
  end
  h.n, h.scan, h.seen = h.n - n, 1, 0
  return table_concat(parts)
end

-- Where the first newline held is (a byte offset), or nil.
local function held_newline(h)
  for j = h.scan, #h do
    local i = h[j]:find("\n", 1, true)
    if i then return h.seen + i end
    h.scan, h.seen = j + 1, h.seen + #h[j]
  end
  return nil
end

-- Asks the box to send signal `sig` to the process and all it started.
local function signal(self, sig)
  local r, err = session.own(self.box, shell.proc_kill(self.pid, self.token, sig), now() + KILL_TIMEOUT)
  if not r then return nil, "killing process " .. tostring(self.pid) .. ": " .. tostring(err) end
  if sig == 9 then self.killed = self.killed or now() end
  return true
end

-- A stream whose callback wants no more, or past max_output while
-- proc:wait collects (as for a step): its output is cut from then on, and
-- the process is killed.
local function cut(self, k)
  self.truncated = true
  self.cuts[k] = true
  self.kill_pending = true
end

-- Hands stream k's new bytes to its callback, or holds them for a reader.
local function deliver(self, k, chunk)
  if self.cuts[k] then return end
  local callback = self.callbacks[k]
  if callback then
    if callback(chunk) == false then cut(self, k) end
    return
  end
  local h = self.held[k]
  local room = self.cap - h.n
  if self.collecting and #chunk > room then
    chunk = chunk:sub(1, room)
    cut(self, k)
  end
  if #chunk > 0 then held_add(h, chunk) end
end

-- The first line of stdout is the process's pid (shell.SPAWN); the rest is
-- its output. Did bytes come?
local function take_output(self)
  local stream = self.stream
  local out, err = stream:take(1), stream:take(2)
  local came = #out > 0 or #err > 0
  if not self.pid and #out > 0 then
    local head = (self.head or "") .. out
    local pid, relay, rest = head:match("^(%d+) ?(%d*)\r?\n(.*)$")
    if pid then
      self.pid, self.relay, self.head, out = tonumber(pid), tonumber(relay), nil, rest
    else
      self.head, out = head, ""
      if #head > 32 then self.eof, self.failure = true, "the process did not report its pid" end
    end
  end
  if #out > 0 then deliver(self, 1, out) end
  if #err > 0 then deliver(self, 2, err) end
  return came
end

-- One turn: reads what the connection has and hands it on; when there was
-- nothing, waits for it until `until_`. false when that wait timed out.
local function turn(self, until_)
  local st, err = self.lane:pump(self.stream)
  local came = take_output(self)
  if st == "eof" or st == nil then
    self.eof = true
    self.failure = self.failure or err
    return true
  elseif st == false then
    if came then return true end
    return self.lane:wait("r", until_)
  end
  scheduler.yield() -- a slice: a flood must not starve the others
  return true
end

-- Does stream k (either, without k) hold as much as may wait for a reader?
-- Then the connection is not read until a reader takes some.
local function full(self, k)
  if not k then return full(self, 1) or full(self, 2) end
  return self.held[k].n >= self.cap
end

-- Past the process's own deadline (spawn's timeout), or a cut that asks for
-- it: the process is killed, once.
local function enforce(self)
  if self.killed or self.eof then return end
  if self.deadline and now() >= self.deadline then
    self.timed_out = true
    self.kill_pending = true
  end
  if self.kill_pending then
    self.kill_pending = nil
    signal(self, 9)
  end
end

-- The soonest a turn must end: the caller's `until_`, the process's
-- deadline, or a killed process's grace.
local function turn_until(self, until_)
  local t = until_
  if self.killed then
    t = math_min(t or math.huge, self.killed + KILLED_GRACE)
  elseif self.deadline then
    t = math_min(t or math.huge, self.deadline)
  end
  return t
end

-- Takes the reading role (one caller at a time reads the connection);
-- raises when another coroutine has it.
local function begin_read(self, fname)
  if self.reading then
    error(string_format("'%s': another coroutine is reading this process's output (one at a time; the others "
      .. "may write)", fname), 3)
  end
  self.reading = true
end

-- Turns until done() says so, the stream ends, or `until_` passes: true
-- when done (or ended), false on timeout.
local function drive(self, done, until_)
  while not done() do
    if self.eof then return true end
    enforce(self)
    local t = turn_until(self, until_)
    if not turn(self, t) or (t and now() >= t) then
      if self.killed and now() >= self.killed + KILLED_GRACE then
        self.eof, self.failure = true, "the process did not end within " .. KILLED_GRACE .. "s of its kill"
        return true
      end
      if until_ and now() >= until_ then return false end
    end
  end
  return true
end

-- What `what` asks of the held bytes h: the taken string, or nil when
-- more must come first (at the end, what there is).
local function satisfy(h, what, tty, ended)
  if what == "any" then
    if h.n > 0 then return held_take(h) end
  elseif what == "all" then
    if ended then return held_take(h) end
  elseif type(what) == "number" then
    if h.n >= what or (ended and h.n > 0) then return held_take(h, what) end
  else -- a line, with its newline ("L") or without ("l")
    local i = held_newline(h)
    if i then
      local line = held_take(h, i)
      if what == "l" then line = line:sub(1, tty and line:sub(-2) == "\r\n" and -3 or -2) end
      return line
    end
    if ended and h.n > 0 then return held_take(h) end
  end
  return nil
end

local READ_FORMATS = { any = "any", a = "all", all = "all", l = "l", line = "l", L = "L" }

local function read_format(what, fname)
  if what == nil then return "any" end
  if type(what) == "number" and what >= 1 and what % 1 == 0 then return what end
  local f = READ_FORMATS[what]
  if not f then
    error(string_format("bad argument #1 to '%s' (\"any\", \"line\", \"L\", \"all\" or a byte count expected, "
      .. "got %s)", fname, tostring(what)), 3)
  end
  return f
end

-- The timeout of a call on the process (its argument #n): `timeout`, or the box's.
local function until_of(self, timeout, fname, n)
  if timeout == nil then return now() + self.box.timeout end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(string_format("bad argument #%d to '%s' (a timeout in seconds expected, got %s)", n, fname,
      tostring(timeout)), 3)
  end
  return now() + timeout
end

local function read(self, k, what, timeout, fname)
  what = read_format(what, fname)
  local until_ = until_of(self, timeout, fname, 2)
  if k == 2 and self.tty then
    error("'" .. fname .. "': a terminal has one stream (stdout and stderr merged): read it with proc:read", 3)
  end
  if self.callbacks[k] then
    error(string_format("'%s': this output goes to the %s callback given to spawn", fname,
      k == 1 and "on_stdout" or "on_stderr"), 3)
  end
  begin_read(self, fname)
  local h, got, blocked = self.held[k], nil, false
  local ok, done = pcall(drive, self, function()
    -- a stream that holds all it may gives what it has (a long line in parts)
    got = satisfy(h, what, self.tty, self.eof or full(self, k))
    blocked = not got and full(self, 3 - k)
    return got ~= nil or blocked
  end, until_)
  self.reading = false
  if not ok then error(done, 0) end
  if got then return got end
  if blocked then
    return nil, string_format("the process's %s holds max_output (%d bytes) nobody has read, and waits: read it "
      .. "(proc:%s) or spawn with %s", k == 1 and "stderr" or "stdout", self.cap,
      k == 1 and "read_stderr" or "read", k == 1 and "on_stderr" or "on_stdout")
  end
  if self.eof then
    got = satisfy(h, what, self.tty, true)
    if got then return got end
    return nil, "eof"
  end
  return nil, "timeout"
end

-- proc:read([what [, timeout]]) -> string | nil, "eof" | nil, "timeout": the
-- next of stdout: "any" (default: what is there, once something is),
-- "line" (or "l", without its newline), "L" (with it), "all" (to the end),
-- or a count of bytes (fewer only at the end). A stream holding max_output
-- gives what it holds (a longer line comes in parts); while the other
-- stream holds that much unread, nil, err says to read that one.
function Proc:read(what, timeout) return read(self, 1, what, timeout, "read") end
-- proc:read_stderr([what [, timeout]]): the same for stderr.
function Proc:read_stderr(what, timeout) return read(self, 2, what, timeout, "read_stderr") end

local TLS_RECORD = 16384 -- the most one send over TLS may leave half-sent

-- Sends data on the lane until all of it is taken or `until_` passes,
-- reading output meanwhile (within max_output) so that a process that
-- writes while it reads cannot stall both. Returns the count of bytes
-- taken, and nil, "ended" or "timeout". Over TLS a send that would block
-- must be made again with the same bytes (OpenSSL's rule), so it goes a
-- record at a time, and a record a timeout leaves half-sent is owed
-- (self.owed, counted as taken): the next write or close_stdin sends it
-- first.
local function send(self, data, until_)
  local i, tls, chunk = 1, self.lane.tls, nil
  while i <= #data do
    -- over TLS the very same string until it is taken (OpenSSL checks the buffer's address too)
    if tls and not chunk then
      chunk = (i == 1 and #data <= TLS_RECORD) and data or data:sub(i, i + TLS_RECORD - 1)
    end
    local n = self.lane:send(chunk or data, chunk and 1 or i)
    if n == nil then return i - 1, "ended" end
    if n then
      i = i + n
      self.sent = self.sent + n
      chunk = nil
    else
      enforce(self)
      local reads = not self.reading and not full(self)
      if reads then
        self.reading = true
        local ok, err = pcall(turn, self, now())
        self.reading = false
        if not ok then error(err, 0) end
      end
      if self.eof then return i - 1, "ended" end
      if now() >= until_ then
        if not tls then return i - 1, "timeout" end
        self.owed = chunk
        return i - 1 + #chunk, "timeout"
      end
      self.lane:wait(reads and "rw" or "w", turn_until(self, until_))
    end
  end
  return i - 1
end

-- Sends what a timed-out write left owed over TLS: true, or nil, why.
local function pay_owed(self, until_)
  local owed = self.owed
  if not owed then return true end
  self.owed = nil
  local _, why = send(self, owed, until_)
  return not why, why
end

local function write_failure(self, why, sent, size)
  if why == "ended" then return nil, "the process has ended (its stdin is gone)", sent end
  return nil, string_format("timeout: the process did not read its stdin in time (%d of %d bytes sent)%s",
    sent, size, full(self) and "; its output waits to be read (proc:read)" or ""), sent
end

-- proc:write(data [, timeout]) -> true | nil, err, sent: sends data to the
-- process's stdin. While the process does not read it, the call waits (its
-- output is read meanwhile, within max_output); past the timeout it
-- returns nil, "timeout: ...", with the count of bytes sent.
function Proc:write(data, timeout)
  if type(data) ~= "string" then
    error("bad argument #1 to 'write' (string expected, got " .. type(data) .. ")", 2)
  end
  local until_ = until_of(self, timeout, "write", 2)
  if self.stdin_closed then return nil, "its stdin is closed (proc:close_stdin())" end
  if self.eof then return nil, "the process has ended" end
  local ok, why = pay_owed(self, until_)
  if not ok then return write_failure(self, why, 0, #data) end
  local sent
  sent, why = send(self, data, until_)
  if why then return write_failure(self, why, sent, #data) end
  return true
end

-- proc:close_stdin() -> true | nil, err: the end of the process's input;
-- its output goes on. On a terminal, what a terminal sends for it: Ctrl-D
-- (the line discipline ends the input there; the terminal stays open).
function Proc:close_stdin()
  if self.stdin_closed then return true end
  if self.tty then
    local ok, err = self:write("\4")
    if ok then self.stdin_closed = true end
    return ok, err
  end
  self.stdin_closed = true
  if self.eof then return true end
  local ok, err = pay_owed(self, now() + self.box.timeout)
  if not ok then return nil, "closing stdin: the end of an earlier write could not be sent (" .. err .. ")" end
  if self.relay then
    local tries = math_max(1, math.floor(self.box.timeout * 100))
    ok, err = session.own(self.box, shell.relay_end(self.relay, self.sent, tries), now() + self.box.timeout + 1)
  else
    ok, err = self.lane:shutdown()
  end
  if not ok then return nil, "closing stdin: " .. tostring(err) end
  return true
end

-- The exit code, once the output ended: the Engine's, within `until_` (and
-- the second after it); nil when the box is gone.
local function exit_code(self, until_)
  local d = self.box.docker
  for _ = 1, 20 do
    local status, info = d:request("GET", self.path .. "/json", { deadline = math_max(until_ + 0.9, now() + 0.1) })
    if not status then return nil, info end
    if info.Running ~= true and info.ExitCode ~= nil then return compat.tointeger(info.ExitCode) end
    scheduler.sleep(0.01)
  end
  return nil, "the Engine still reports the process running after its output ended"
end

-- proc:wait([timeout]) -> result | nil, "timeout": waits for the end and
-- returns what a step returns (code, signal, status, duration, the output
-- nobody read). Past the timeout the process goes on (proc:kill ends it).
-- The same result again on each later call.
function Proc:wait(timeout)
  if self.result then return self.result end
  local until_ = timeout ~= nil and until_of(self, timeout, "wait", 1) or nil
  begin_read(self, "wait")
  self.collecting = true
  local ok, ended = pcall(drive, self, function() return self.eof end, until_)
  self.collecting, self.reading = false, false
  if not ok then error(ended, 0) end
  if not ended then return nil, "timeout" end
  if self.result then return self.result end -- another caller finished it meanwhile
  self.lane:close()
  self.box.procs[self] = nil
  local out = {
    stdout = held_take(self.held[1]), stderr = held_take(self.held[2]), duration = now() - self.started,
    timed_out = self.timed_out, truncated = self.truncated,
  }
  local err
  out.code, err = exit_code(self, until_ or now() + self.box.timeout)
  -- killed in the box by its watchdog (shell.watchdog), with nobody calling
  if out.code == 137 and self.deadline and now() >= self.deadline then out.timed_out = true end
  if out.code == nil then
    if self.box.dead then
      out.box_stopped = true
    else
      out.engine_lost = true
      out.error = self.failure or err
    end
  end
  self.result = result.new(out)
  return self.result
end

-- proc:kill([signal]) -> true | nil, err: sends signal (default KILL) to
-- the process and everything it started (see above). A KILL ends them all
-- (proc:wait then says "signal", 9); another signal is theirs to handle.
function Proc:kill(sig)
  local n = signal_number(sig)
  if self.result or self.eof then return true end -- nothing left to signal
  if self.box.dead then return nil, self.box.dead end
  return signal(self, n)
end

-- proc:resize(cols, rows) -> true | nil, err: the terminal's size (tty only).
function Proc:resize(cols, rows)
  for i, v in ipairs({ cols, rows }) do
    if type(v) ~= "number" or v < 1 or v > 65535 or v % 1 ~= 0 then
      error(string_format("bad argument #%d to 'resize' (a size from 1 to 65535 expected, got %s)", i,
        tostring(v)), 2)
    end
  end
  if not self.tty then return nil, "the process has no terminal: spawn it with { tty = true }" end
  if self.eof then return nil, "the process has ended" end
  local status, err = self.box.docker:request("POST", self.path .. "/resize",
    { query = { w = string_format("%d", cols), h = string_format("%d", rows) }, deadline = now() + self.box.timeout })
  if not status then return nil, "resizing the terminal: " .. tostring(err) end
  return true
end

-- The argv that runs cmd: a list as it is, a string through the box's
-- shell; behind the wrapper that reports the pid (and, with a timeout,
-- starts the watchdog that enforces it in the box).
local function argv_of(box, cmd, opts, token)
  local argv = { box.shell, "-c", shell.SPAWN, "lockup-spawn" }
  if box.docker.cosockets and not opts.tty then
    argv[3] = shell.SPAWN_RELAYED
  elseif opts.tty then
    argv[3], argv[5], argv[6] = shell.SPAWN_TTY, string_format("%d", opts.cols or 80),
      string_format("%d", opts.rows or 24)
  end
  if opts.timeout then argv[3] = shell.watchdog(box.shell, opts.timeout, token) .. argv[3] end
  if type(cmd) == "string" then
    argv[#argv + 1], argv[#argv + 2], argv[#argv + 3] = box.shell, "-c", cmd
  else
    for i = 1, #cmd do argv[#argv + 1] = cmd[i] end
  end
  return argv
end

-- Starts cmd (a shell command, or an argv) in the box: the process, once
-- it runs and its pid is known; or nil, err (the box is gone, the Engine
-- refused it, or it did not start within the box's timeout).
function _M.spawn(box, cmd, opts)
  local started = now()
  local until_ = started + box.timeout
  local tty = opts.tty == true
  local token = core.random_hex(16)
  local env = exec.env_list(opts.env, "spawn") or {}
  env[#env + 1] = "LOCKUP_PROC=" .. token
  local body = {
    AttachStdin = true, AttachStdout = true, AttachStderr = true, Tty = tty, Env = env,
    Cmd = argv_of(box, cmd, opts, token),
    WorkingDir = opts.workdir, User = opts.user or box.user,
  }
  local fail = "spawn in box " .. box.id:sub(1, 12) .. ": "
  local ex, err = exec.open(box, body, fail, until_)
  if not ex then return nil, err end
  local stream = core.stream(tty)
  stream:arm(nil, 0, 0, true, true)
  local self = setmetatable({
    box = box, path = ex.path, lane = attach.wrap(ex.conn), stream = stream, token = token, tty = tty,
    started = started, deadline = opts.timeout and started + opts.timeout or nil,
    cap = opts.max_output or box.max_output, held = { held_new(), held_new() }, cuts = {}, sent = 0,
    callbacks = { opts.on_stdout, opts.on_stderr },
  }, proc_mt)
  local st
  st, err = stream:feed(ex.rest)
  if not st then
    self.lane:close()
    return nil, fail .. tostring(err)
  end
  take_output(self)
  self.reading = true
  local ok, done = pcall(drive, self, function() return self.pid ~= nil end, until_)
  self.reading = false
  if not ok or not self.pid then
    self.lane:close()
    if not ok then error(done, 0) end
    return nil, fail .. (self.failure or not done and "the process did not start within " .. box.timeout .. "s"
      or "the process ended before it started: " .. held_take(self.held[2]))
  end
  box.procs[self] = true
  return self
end

-- box:processes(): the box's processes but lockup's own (the lifeline, the
-- session shell, the lister), each { pid, ppid, pgid, sid, state, name,
-- argv, proc (the lockup.process it belongs to, if any) }; or nil, err.
function _M.processes(box)
  local r, err = session.own(box, shell.PROCESSES, now() + KILL_TIMEOUT)
  if not r then return nil, err end
  if r.code ~= 0 then return nil, "listing the box's processes: " .. (r.stderr .. r.stdout):gsub("%s+$", "") end
  local lister, records = r.stdout:match("^(%d+)\n(.*)$")
  if not lister then return nil, "listing the box's processes: an answer it cannot read" end
  local own, by_pid, list = (box.lifeline_pids or "") .. " " .. lister .. " ", {}, {}
  for proc in pairs(box.procs) do by_pid[proc.pid] = proc end
  for record in (records or ""):gmatch("\2([^\2]*)") do
    local stat, cmdline = record:match("^([^\n]*)\n(.*)$")
    local pid, name, fields = (stat or ""):match("^ *(%d+) %((.*)%) (.*)$")
    local state, ppid, pgid, sid = (fields or ""):match("^(%S+) (%d+) (%d+) (%d+)")
    if sid and not own:find(" " .. pid .. " ", 1, true) then
      local argv = {}
      for a in cmdline:gmatch("([^%z]*)%z") do argv[#argv + 1] = a end
      list[#list + 1] = {
        pid = tonumber(pid), ppid = tonumber(ppid), pgid = tonumber(pgid), sid = tonumber(sid), state = state,
        name = name, argv = argv, proc = by_pid[tonumber(sid)],
      }
    end
  end
  return list
end

return _M
