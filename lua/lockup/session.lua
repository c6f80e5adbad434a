-- The session: a long-lived shell in the box, and the sentinel protocol that
-- runs one step at a time in it over a lane (lockup.lane.*), which only moves
-- bytes.
--
-- Each step is sent as one line to that shell and followed by a sentinel
-- print with a fresh random token; the stream (lockup.core) finds the token on
-- stdout and on stderr, which ends the step's output on each, and reads the
-- exit code that follows it. See README.md ("How a command runs").
local core = require "lockup.core"
local step = require "lockup.step"
local exec = require "lockup.exec"
local result = require "lockup.result"

local type, tostring, tonumber = type, tostring, tonumber
local string_format, table_concat = string.format, table.concat
local now = core.monotime

local _M = {}

local STDIN_CHUNK = 16384 -- stdin bytes per printf line
local SIGKILLED = 128 + 9

-- The lifeline: PID 1 of every box, for a lane's wiring (lane.wiring: what
-- the watcher reads, where the session shell reads its input and writes its
-- output). The watcher, `cat`, reads until EOF, which comes when the host
-- closes its end (stop, garbage collection, or the Lua process killed with
-- SIGKILL); then `kill -9 -1` ends everything, even a step still running, so
-- the container (AutoRemove) goes away with the lane. On the attach lane what
-- it reads is the container's stdin, which it relays to the session shell
-- ("$0"); on the fifo lane it is `life`, where nothing is ever written, and
-- the shell reads `in` itself. When the session shell exits on its own, the
-- same kill ends cat, and PID 1 exits with the shell's code. PID 1 is a shell,
-- so nothing in the box can kill it, and while it waits it reaps every zombie
-- reparented to it (the job of an init). PID 1's own stderr goes to /dev/null
-- (fd 9 keeps the real one), or it would report "Killed" for the pipeline it
-- waits on. An image without cat gets the shell alone (no lifeline).
-- A step that ends the lifeline (`kill -9 -1` kills all but its caller, the
-- session shell) ends the session too: each command line first checks that
-- the shell's parent is still there (see command_line).
function _M.lifeline(wiring)
  return table_concat({
    string_format('command -v cat >/dev/null 2>&1 || exec "$0" %s %s', wiring.input, wiring.output),
    'exec 9>&2 2>/dev/null',
    string_format('{ cat %s; kill -9 -1; } | { "$0" %s %s 9>&-; c=$?; kill -9 -1; exit $c; }',
      wiring.life, wiring.input, wiring.output),
  }, "\n")
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Bytes as a printf format that prints exactly them (NULs included). A
-- leading "-" is escaped too: dash's and bash's printf would take the format
-- for an option, and print nothing.
local function octal(c)
  return string_format("\\%03o", c:byte())
end

local function printf_literal(s)
  local text = s:gsub("[%z\1-\31\127-\255'\\%%]", octal)
  if text:sub(1, 1) == "-" then text = "\\055" .. text:sub(2) end
  return "'" .. text .. "'"
end

-- A step is one line to the session shell: the step's own command, with
-- redirections that give it /dev/null (or its stdin file) and the shell's
-- stdout and stderr through fds 7 and 8, copies of them, and restore the
-- shell's own after it (a step may close or redirect its own); then a tail
-- that prints the sentinel with the exit code on stdout and a second one on
-- stderr, and sets fds 7 and 8 afresh for the next step (a step may close
-- or move them). Nothing runs in a subshell, so cd, variables, functions and
-- "$@" persist from step to step; `command eval` keeps a syntax error in a
-- step from ending the shell; "$?" is 0 when a step starts.
-- The protocol's own words are written so that what a step leaves behind
-- cannot break them by accident: a backslash keeps aliases away, `command`
-- bypasses functions, special builtins cannot be functions (POSIX; bash in
-- its own mode is the exception), the tail drops a function named `command`
-- and all aliases before the next line is read, and every expansion is
-- quoted against a step's IFS. What code in the box can still do to later
-- steps is in README.md ("What the sentinel promises").
-- Once the session shell's pid is known, only that process goes on to print
-- the sentinel (the guard): a forked copy of the shell whose `eval` failed (a
-- background job with a syntax error, a fork bomb's "can't fork") returns
-- from it into the rest of the line, and would print it, then read later
-- steps. /proc/self/task/PID exists in the shell itself only (one stat); a
-- copy that finds it missing while /proc/PID is there exits. Without /proc
-- there is no guard.
local function guard_of(shell_pid)
  return string_format("\\command [ -d /proc/self/task/%d ]||{ \\command [ -d /proc/%d ]&&\\exit;};",
    shell_pid, shell_pid)
end

-- How the tail drops aliases: `unalias -a`, quieted until the session knows
-- that its shell has it (prepare; a shell without aliases has none to drop).
local UNALIAS = { [true] = "\\unalias -a;", [false] = "", unknown = "\\unalias -a 2>/dev/null;" }

-- The tail written out in the line (every shell; the only form until the
-- session knows its shell): the code waits in $1 meanwhile (`set --` and
-- `shift` leave "$@" as it was). Three pieces around the token.
local function tail_of(shell_pid, unalias)
  return ";\\set -- \"$?\" \"$@\";\\unset -f command;" .. (shell_pid and guard_of(shell_pid) or "")
    .. "\\command printf '\\001", " %d\\n' \"$1\";\\shift;\\command printf '\\001",
    " 0\\n'>&2;" .. UNALIAS[unalias] .. "\\exec 7>&1 8>&2\n"
end

-- The same tail as a shell function defined once per session (prepare),
-- where the shell can make it read-only: then a step cannot redefine or
-- unset it, and the line carries only the step and the token. That is bash
-- (`readonly -f`), which reads its input one byte per read(2) from a pipe or
-- FIFO, so the line's length is most of a step's cost; dash and busybox sh
-- read in blocks, have no read-only functions, and keep the tail in the line
-- (a function there could be unset by a step, and the next step would hang).
-- Inside the function "$@" is the function's own, and the guard asks bash's
-- $BASHPID first (no stat; a step that unsets it gets the stat).
local STEP_FN = "_lockup"

local function definition(shell_pid)
  return "if [ -n \"${BASH_VERSION-}\" ]; then " .. STEP_FN .. "() { \\set -- \"$?\" \"$1\";\\unset -f command;"
    .. "case ${BASHPID-} in " .. shell_pid .. ") ;; *) " .. guard_of(shell_pid) .. "; esac;"
    .. "\\command printf '\\001%s %d\\n' \"$2\" \"$1\";"
    .. "\\command printf '\\001%s 0\\n' \"$2\">&2;\\unalias -a;\\exec 7>&1 8>&2;}; readonly -f " .. STEP_FN
    .. " && \\command printf '%s ' " .. STEP_FN .. "; fi; \\command unalias -a 2>/dev/null && \\command printf unalias"
end

_M.definition = definition -- for bench/lanes.lua, which sends it to a shell on the host

-- The tail pieces of the last shell seen are kept (a box's steps come in
-- runs: a hot path).
local last_pid, last_unalias, t1, t2, t3 = -1, nil, nil, nil, nil

-- The line for `run`, one command with its redirections, in `box`'s shell
-- (box.shell_pid, box.step_fn, box.unalias). The first line a shell reads
-- (its pid not known yet) sets fds 7 and 8 first; every line sets them
-- afresh at its end.
local function line_for(run, token_hex, box)
  if box.step_fn then return run .. ";\\" .. STEP_FN .. " " .. token_hex .. "\n" end
  local pid, unalias = box.shell_pid, box.unalias
  if unalias == nil then unalias = "unknown" end
  if pid ~= last_pid or unalias ~= last_unalias then
    last_pid, last_unalias, t1, t2, t3 = pid, unalias, tail_of(pid, unalias)
  end
  return (pid and "" or "\\exec 7>&1 8>&2;") .. run .. t1 .. token_hex .. t2 .. token_hex .. t3
end

-- The line that runs `body`, any shell text, with stdin from `input`, as a
-- step in `box`'s session shell (the braces keep it in the shell itself).
local function step_line(body, input, token_hex, box)
  return line_for("{ " .. body .. "; }<" .. input .. " >&7 2>&8", token_hex, box)
end
_M.step_line = step_line

-- The line that runs `cmd` in `box`'s session shell (box.shell_pid,
-- box.step_fn, box.unalias: a table of those is enough). Its stdin is
-- /dev/null, or the file `source` holding opts.stdin (written by
-- stdin_writer in a step before: stdin never travels raw on the shell's
-- input, where the shell would read it as commands), unlinked once open.
function _M.command_line(cmd, token_hex, source, box)
  if not source then
    return line_for("\\command eval " .. shell_quote(cmd) .. "</dev/null >&7 2>&8", token_hex, box)
  end
  return step_line("\\command rm -f " .. source .. " 2>/dev/null; \\command eval " .. shell_quote(cmd),
    source, token_hex, box)
end

-- The shell text that writes `data` into the file `source`: printf lines of
-- STDIN_CHUNK bytes, chained with && so that the first that fails (a full
-- disk) ends the chain, which then removes the file and fails: a step's stdin
-- is never silently short.
local function stdin_writer(data, source)
  local lines = { "\\command printf '' >" .. source }
  for i = 1, #data, STDIN_CHUNK do
    lines[#lines + 1] = "\\command printf " .. printf_literal(data:sub(i, i + STDIN_CHUNK - 1)) .. " >>" .. source
  end
  return "{ " .. table_concat(lines, " &&\n") .. "; } || { \\command rm -f " .. source .. "; \\command false; }"
end

-- Did a process of the step die of SIGKILL? The shell reports "Killed" for a
-- job killed by a signal, which the OOM killer may have sent to any process
-- of the step, not just its last.
function _M.killed(r)
  return r.code == SIGKILLED or r.stderr:find("Killed", 1, true) ~= nil
end

-- The count of OOM kills in the box's memory cgroup (v1 or v2), the session
-- shell's pid, then the pids of every process but the probe's own subshell: at
-- start, that is the lifeline, cat and the session shell, the processes a
-- sweep spares. Shell builtins in a subshell (no state leaks into the session).
local PROBE = "(unset IFS; read -r l </proc/self/stat; set -- $l; me=$1; k=; for d in /proc/[0-9]*; do "
  .. 'p=${d#/proc/}; [ "$p" = "$me" ] || k="$k $p"; done; n=0; '
  .. "for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
  .. '[ -r "$f" ] && while read -r k2 v; do [ "$k2" = oom_kill ] && n=$v; done <"$f"; done; echo $n $$$k)'

-- The session's start, once its shell's pid is known: defines the tail
-- function where the shell can make it read-only (see STEP_FN), and from
-- then on sends the short line; learns whether the shell has `unalias`.
-- false when the box was lost meanwhile (or stopped: the step timed out).
local function prepare(box, shell_pid)
  box.step_fn = false
  local r = _M.run(box, definition(shell_pid), { timeout = 10 })
  if not r or box.dead then return false end
  box.step_fn = r.stdout:find(STEP_FN .. " ", 1, true) == 1
  box.unalias = r.stdout:find("unalias", 1, true) ~= nil
  return true
end

-- Returns the OOM kill count, the session shell's pid and the list of pids
-- (see PROBE), or nil. The box's lock is held. At the box's start, this is
-- where the session is prepared (see prepare).
function _M.probe(box)
  local r = _M.run(box, PROBE, { timeout = 10 })
  if not r then return nil end
  local ooms, pid, pids = r.stdout:match("^(%d+) (%d+)( [%d ]+)\n$")
  if pid and box.step_fn == nil and not prepare(box, tonumber(pid)) then return nil end
  return tonumber(ooms), tonumber(pid), pids
end

-- After a step killed with SIGKILL: was it the kernel's OOM killer?
function _M.oom_killed(box)
  local ooms = _M.probe(box)
  if not ooms or not box.ooms then return nil end
  local grew = ooms > box.ooms
  box.ooms = ooms
  return grew or nil
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

-- box:kill_processes(), with or without the box's lock (a timed-out step
-- holds it): true | nil, err.
function _M.kill_processes(box)
  if box.dead then return nil, box.dead end
  if box.sweeping then return true end
  if not box.lifeline_pids then return nil, "the box is still starting" end
  box.sweeping = true
  local argv = { box.shell, "-c", SWEEP, "sweep" }
  for pid in box.lifeline_pids:gmatch("%d+") do argv[#argv + 1] = pid end
  local r, err = exec.run(box, argv, { timeout = 10 })
  box.sweeping = false
  if not r or r.code ~= 0 then
    return nil, "killing the box's processes: " .. (err or (r.stderr .. r.stdout):gsub("%s+$", ""))
  end
  return true
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

-- The step's shell ended (the lane's EOF): a result saying how, or nil, err.
local function ended(box, out)
  if box.stopped then
    box:shut("the box's shell has ended")
    return nil, box.dead
  end
  -- The exit code first, the lane closed after: closing it now would let the
  -- lifeline's watcher see EOF and kill PID 1's other half before it exits
  -- with the shell's code.
  out.code = box:reap()
  box:shut("the box's shell has ended")
  if out.code == nil then -- no exit code: the daemon itself went away (killed, restarted)
    box.dead = "lost the box: its session ended and the Docker daemon at " .. box.docker.endpoint
      .. " did not report an exit (did it stop or restart?); connect again and start a new box"
    return nil, box.dead
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
local function step_run(box, line_of, text, source, opts, deadline, out)
  local token_hex = core.random_hex(16)
  local lane, stream = box.lane, box.stream
  step.arm(box, stream, "\1" .. token_hex, opts)
  local st, err = step.send(lane, stream, line_of(text, token_hex, source, box), opts, deadline)
  if st == true then
    st, err = step.follow(box, lane, stream, opts, deadline, out)
  elseif st == "timeout" then
    out.timed_out = true
  end
  if st == "exit" then out.code = stream:code() end
  return st, err
end

local function writer_line(writer, token_hex, _, box)
  return step_line(writer, "/dev/null", token_hex, box)
end

-- Writes opts.stdin into a file in the box, in a step of its own: the
-- file's path; or nil, "refused", err when the box could not write it; or
-- nil and the step's status or error (a timeout, the session lost).
local function write_stdin(box, data, deadline, out)
  local source = string_format('"${TMPDIR:-/tmp}/.lockup-stdin-%s"', core.random_hex(8))
  local writer = stdin_writer(data, source)
  local st, err = step_run(box, writer_line, writer, nil, {}, deadline, out)
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
    st, err = step_run(box, _M.command_line, cmd, source, opts, deadline, out)
  end
  out.duration = now() - started
  if st == "exit" then
    if cmd ~= PROBE and _M.killed(out) then out.oom = _M.oom_killed(box) end
    return result.new(out)
  elseif st == "timeout" then -- killing the step's processes did not end it: the shell itself runs on
    out.box_stopped = true
    box:shut(string_format("the box was stopped: a step went on past its %s even with its processes "
      .. "killed (a loop in the shell itself, or the container is paused); start a new box",
      out.timed_out and ("timeout (" .. (opts.timeout or box.timeout) .. "s)") or "output cap"))
    box:stop()
    return result.new(out)
  elseif st == "eof" then
    return ended(box, out)
  end
  box:shut("lost the box's session (did the Docker daemon stop or restart?): " .. tostring(err))
  box:stop()
  return nil, box.dead
end

return _M
