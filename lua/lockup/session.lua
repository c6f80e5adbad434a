-- The session: a long-lived shell in the box, and the sentinel protocol that
-- runs one step at a time in it over a lane (lockup.lane.*), which only moves
-- bytes.
--
-- Each step is sent as one line to that shell and followed by a sentinel
-- print with a fresh random token; the stream (lockup.core) finds the token on
-- stdout and on stderr, which ends the step's output on each, and reads the
-- exit code that follows it. See README.md ("How a command runs").
local core = require "lockup.core"
local shell = require "lockup.shell"
local step = require "lockup.step"
local exec = require "lockup.exec"
local result = require "lockup.result"

local type, tostring, tonumber, pairs, next = type, tostring, tonumber, pairs, next
local string_format, math_max = string.format, math.max
local now = core.monotime

local _M = {}

local SIGKILLED = 128 + 9

-- Did a process of the step die of SIGKILL? The shell reports "Killed" for a
-- job killed by a signal, which the OOM killer may have sent to any process
-- of the step, not just its last.
function _M.killed(r)
  return r.code == SIGKILLED or r.stderr:find("Killed", 1, true) ~= nil
end

-- The options of lockup's own steps at a session's start: whatever the
-- box's max_output (a step's cap), their output is read whole.
local OWN_STEP = { timeout = 10, max_output = 1024 * 1024 }

-- The session's start, once its shell's pid is known: defines the tail
-- function where the shell can make it read-only (see STEP_FN), and from
-- then on sends the short line; learns whether the shell has `unalias`;
-- runs `first` (shell text that may set __lk_bad to a complaint), then
-- notes the BASELINE (box.first_error, box.baseline, box.soft_limits,
-- box.env_text). With `probe`, PROBE's line comes first, in the same step:
-- it is returned. false when the box was lost meanwhile (or stopped: the
-- step timed out).
local function prepare(box, shell_pid, first, probe)
  box.step_fn = false
  local r = _M.run(box, shell.prepare(shell_pid, first, probe), OWN_STEP)
  if not r or box.dead then return false end
  local probed, rest = "", r.stdout
  if probe then probed, rest = r.stdout:match("^([^\n]*\n)(.*)$") end
  local head, complaint, modes, fingerprint, soft, env =
    (rest or ""):match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n(.-)\n%-%-\n(.-)%-%-\n(.*)$")
  if not head then return false end
  box.step_fn = head:find(shell.STEP_FN .. " ", 1, true) == 1
  box.unalias = head:find("unalias", 1, true) ~= nil
  box.first_error, box.baseline, box.soft_limits, box.env_text = complaint, fingerprint, soft, env
  if modes ~= "" then box.start_modes = modes end
  return probed
end

local function probed(line)
  local ooms, pid, pids = line:match("^(%d+) (%d+)( [%d ]+)\n$")
  return tonumber(ooms), tonumber(pid), pids
end

-- Returns the OOM kill count, the session shell's pid and the list of pids
-- (see PROBE), or nil. The box's lock is held. In a new session shell (at
-- the box's start: box.step_fn is nil), this is where the session is
-- prepared, `first` with it (see prepare).
function _M.probe(box, first)
  local r = _M.run(box, shell.PROBE, OWN_STEP)
  if not r then return nil end
  local ooms, pid, pids = probed(r.stdout)
  if pid and box.step_fn == nil and not prepare(box, pid, first) then return nil end
  return ooms, pid, pids
end

-- The same for a new shell that replaced the session's (exec, same pid:
-- lockup.reset), probed and prepared in one step, `first` with it.
function _M.renew(box, first)
  local pid = box.shell_pid
  box.step_fn, box.shell_pid, box.unalias = nil, nil, nil
  local line = prepare(box, pid, first, true)
  if not line then return nil end
  return probed(line)
end

-- After a step killed with SIGKILL: was it the kernel's OOM killer?
function _M.oom_killed(box)
  local ooms = _M.probe(box)
  if not ooms or not box.ooms then return nil end
  local grew = ooms > box.ooms
  box.ooms = ooms
  return grew or nil
end

-- The pids of the processes box:spawn started that still run (" 12 30 "),
-- each the leader of a session of its own (lockup.process).
local function spawned(box)
  local list = ""
  for proc in pairs(box.procs) do list = list .. " " .. proc.pid end
  return list
end

-- Killing the steps' processes: every process in the box but the lifeline's
-- own (the pids the probe found at start, the session shell among them) and
-- the sessions of box:spawn's processes, with shell.sweep.
-- Three ways to have it done, by who holds the session:
--  * the session is free (box:exec and what runs on it, box:kill_processes
--    between steps): a step of its own in the session shell, which answers
--    once the processes are gone; no byte goes through an exec;
--  * a step runs in it, on the fifo lane: a word to PID 1 through `life`
--    (lockup.lane.fifo: poke), which sweeps; no byte goes through dockerd;
--    PID 1's sweep spares nothing but the session, so while spawned
--    processes run, the exec below does it instead;
--  * a step runs in it, on the attach lane: an exec of the sweep, as the
--    box's user (dockerd relays the step's output meanwhile, not an exec's).
local function sweep_text(box, spare)
  return shell.sweep(box.lifeline_pids, spare and spawned(box) or nil)
end
_M.sweep_text = sweep_text -- lockup.reset's first act (which ends spawned processes too)

local step_run -- below

-- The line of a step of lockup's own shell text (no stdin).
local function writer_line(writer, token_hex, _, box)
  return shell.step_line(writer, "/dev/null", token_hex, box)
end

-- Runs lockup's shell text `text` as a step in the session shell (the box's
-- lock held, no step in it), done by `until_`: its result, or nil, err; a
-- session left out of step is shut.
local function own_step(box, text, until_)
  local out = {}
  local st, err = step_run(box, writer_line, text, nil, {}, until_, out)
  if st == "exit" then return result.new(out) end
  box:shut("the box was stopped: its session did not answer lockup's own step ("
    .. tostring(err or st) .. ")")
  return nil, box.dead
end

-- The same as an exec (the session is busy), done by `until_`: its result, or nil, err.
local function own_exec(box, text, until_)
  return exec.run(box, { box.shell, "-c", text }, { timeout = math_max(0.001, until_ - now()) })
end

-- Runs lockup's shell text `text` now, whoever holds the session: in it
-- when it is free (taking the box), else as an exec. Its result, or nil, err.
function _M.own(box, text, until_)
  if box.dead then return nil, box.dead end
  if box.lock.owner then return own_exec(box, text, until_) end
  local ok, err = box.lock:lock()
  if not ok then return nil, err end
  local r
  r, err = own_step(box, text, until_)
  box.lock:unlock()
  return r, err
end

-- The sweep as a step in the session shell (the box's lock held): true, or
-- nil, err. After a step PID 1 was asked to sweep for (box.poked), it first
-- waits for that sweep to be over, so that it cannot reach the next step.
local function sweep_in_session(box, until_)
  local text = sweep_text(box, true)
  if box.poked then text = shell.lifeline_idle(box.lifeline_pids, box.shell_pid) .. "; " .. text end
  box.poked = nil
  local r, err = own_step(box, text, until_)
  if not r then return nil, err end
  return true
end

-- The sweep as an exec, done by `until_`: true, or nil, err.
local function sweep_by_exec(box, until_)
  local r, err = own_exec(box, sweep_text(box, true), until_)
  if not r or r.code ~= 0 then
    return nil, "killing the box's processes: " .. (err or (r.stderr .. r.stdout):gsub("%s+$", ""))
  end
  return true
end

-- Can PID 1 sweep (fifo lane), sparing what must be spared?
local function poke_sweeps(box)
  return box.lane.poke and next(box.procs) == nil
end

-- What step.follow does when a step in the session shell overruns: the
-- session is busy, so PID 1 (fifo lane) or an exec (attach lane) sweeps.
local function busy_overrun(box)
  return function(until_)
    if box.dead or not box.lifeline_pids then return end
    if poke_sweeps(box) then
      box.poked = true
      box.lane:poke()
    else
      sweep_by_exec(box, until_)
    end
  end
end

-- What step.follow does when an exec overruns (box:exec holds the box, so
-- the session is free): the sweep in the session shell.
function _M.exec_overrun(box)
  return function(until_)
    if box.dead or not box.lifeline_pids then return end
    sweep_in_session(box, until_)
  end
end

-- box:kill_processes(): true | nil, err. Between calls it takes the box and
-- sweeps in the session; while another coroutine's call holds the box (that
-- step then ends, killed), it sweeps the way a busy session does.
function _M.kill_processes(box)
  if box.dead then return nil, box.dead end
  if not box.lifeline_pids then return nil, "the box is still starting" end
  local until_ = now() + 10
  if box.lock.owner then
    if poke_sweeps(box) then
      box.poked = true
      local ok, err = box.lane:poke()
      if ok == nil then return nil, "killing the box's processes: " .. err end
      return true
    end
    return sweep_by_exec(box, until_)
  end
  local ok, err = box.lock:lock()
  if not ok then return nil, err end
  ok, err = sweep_in_session(box, until_)
  box.lock:unlock()
  return ok, err
end

-- After the box died with SIGKILL: asks the Engine's event log whether an OOM
-- kill came first (the container is gone, so it cannot be inspected). The log
-- is read up to the container's "die" event, which comes after any "oom".
local function died_of_oom(box)
  local filters = { container = { box.id }, event = { "oom", "die" } }
  for _ = 1, 3 do
    -- until: the next whole second, so that events of this second are in
    -- (the daemon holds the answer until then)
    local status, body = box.docker:request("GET", "/events", { timeout = 5, query = {
      since = tostring(box.started_at - 60), ["until"] = tostring(os.time() + 1), filters = filters } })
    if not status then return nil end
    -- One event comes back decoded (a single JSON document); more are JSON lines.
    local text = type(body) == "table" and ('"Action":"' .. tostring(body.Action) .. '"') or tostring(body)
    if text:find('"Action":"oom"', 1, true) then return true end
    if text:find('"Action":"die"', 1, true) then return nil end
  end
  return nil
end

-- The step's shell ended (the lane's EOF): a result saying how, or nil, err;
-- the Engine's answer is awaited until the call's deadline (and its second).
local function ended(box, out, deadline)
  if box.stopped then
    box:shut("the box's shell has ended")
    return nil, box.dead
  end
  -- The exit code first, the lane closed after: closing it now would let the
  -- lifeline's watcher see EOF and kill PID 1's other half before it exits
  -- with the shell's code.
  out.code = box:reap(math_max(deadline + 0.9, now() + 0.05))
  box:shut("the box's shell has ended")
  if out.code == nil then -- no exit code: the daemon itself went away (killed, restarted)
    box.dead = "lost the box: its session ended and the Docker daemon at " .. box.docker.endpoint
      .. " did not report an exit (did it stop or restart?); connect again and start a new box"
    out.engine_lost = true
    return result.new(out)
  end
  out.exited = true
  if out.code == SIGKILLED then
    out.oom = died_of_oom(box)
    box.dead = out.oom and "the box was killed by the kernel: out of memory (raise start{ memory = ... })"
      or "the box's container was killed (SIGKILL): removed from outside, or out of memory"
  else
    box.dead = string_format("the box's shell exited (code %s); start a new box", tostring(out.code))
  end
  return result.new(out)
end

-- Sends one step's line, line_of(text, token, source, box), and follows it
-- to its end: the status ("exit", "timeout", "eof") or nil, err; fills `out`.
-- `overrun`: what step.follow does past the deadline, a cap or a CPU limit.
function step_run(box, line_of, text, source, opts, deadline, out, overrun)
  local token_hex = core.random_hex(16)
  local lane, stream = box.lane, box.stream
  step.arm(box, stream, "\1" .. token_hex, opts)
  local st, err = step.send(lane, stream, line_of(text, token_hex, source, box), opts, deadline)
  if st == true then
    st, err = step.follow(lane, stream, opts, deadline, out, overrun, box.meter)
  elseif st == "timeout" then
    out.timed_out = true
  end
  if st == "exit" then out.code = stream:code() end
  return st, err
end

-- A step whose whole line is line_of(nil, token_hex) (lockup.reset's), the
-- box's lock held: its status ("exit", "timeout", "eof") or nil, err.
function _M.raw_step(box, line_of, timeout)
  return step_run(box, line_of, nil, nil, {}, now() + timeout, {})
end

-- Writes opts.stdin into a file in the box, in a step of its own: the
-- file's path; or nil, "refused", err when the box could not write it; or
-- nil and the step's status or error (a timeout, the session lost).
local function write_stdin(box, data, deadline, out)
  local source = string_format('"${TMPDIR:-/tmp}/.lockup-stdin-%s"', core.random_hex(8))
  local writer = shell.stdin_writer(data, source)
  local st, err = step_run(box, writer_line, writer, nil, {}, deadline, out, busy_overrun(box))
  if st ~= "exit" or out.code == 0 then return st == "exit" and source or nil, st, err end
  return nil, "refused", string_format("could not write the step's stdin (%d bytes) into the box, in %s: %s "
    .. "(it goes to a file there first; is that disk full? start{ disk = ... })", #data,
    "${TMPDIR:-/tmp}", (out.stderr:gsub("%s+$", "")))
end

-- Runs cmd in the session shell (the box's lock held): a result, or nil, err.
function _M.run(box, cmd, opts)
  local started = now()
  local deadline = started + (opts.timeout or box.timeout)
  local out, st, err, source = {}, nil, nil, nil
  if opts.stdin then
    source, st, err = write_stdin(box, opts.stdin, deadline, out)
    if st == "refused" then return nil, err end
    if source then out = {} end
  end
  if source or not opts.stdin then
    st, err = step_run(box, shell.command_line, cmd, source, opts, deadline, out, busy_overrun(box))
  end
  if st == "exit" and (step.overran(out) or box.poked) then
    -- the busy session's sweep (PID 1's, or the exec's on the attach lane,
    -- which its own deadline may cut short) can still be going when the
    -- step ends: the session's own finishes it, so that nothing of the step
    -- is left when this returns
    sweep_in_session(box, math_max(deadline + 0.9, now() + 0.05))
  end
  out.duration = now() - started
  if st == "exit" then
    if cmd ~= shell.PROBE and _M.killed(out) then out.oom = _M.oom_killed(box) end
    return result.new(out)
  elseif st == "timeout" then -- killing the step's processes did not end it: the shell itself runs on
    out.box_stopped = true
    box:shut(string_format("the box was stopped: a step went on past its %s even with its processes "
      .. "killed (a loop in the shell itself, or the container is paused); start a new box",
      out.timed_out and ("timeout (" .. (opts.timeout or box.timeout) .. "s)")
        or out.cpu_limited and ("CPU limit (" .. opts.cpu_limit .. "s)") or "output cap"))
    -- the lane closed, the lifeline ends the container; the Engine's
    -- confirmation is awaited within the call's second (a later stop() waits longer)
    box:stop(math_max(deadline + 0.95, now() + 0.1))
    return result.new(out)
  elseif st == "eof" then
    return ended(box, out, deadline)
  end
  box:shut("lost the box's session (did the Docker daemon stop or restart?): " .. tostring(err))
  box:stop(math_max(deadline + 0.95, now() + 0.1))
  return nil, box.dead
end

return _M
