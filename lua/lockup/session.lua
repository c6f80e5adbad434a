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
local string_format, table_concat, math_max = string.format, table.concat, math.max
local now = core.monotime

local _M = {}

local STDIN_CHUNK = 16384 -- stdin bytes per printf line
local SIGKILLED = 128 + 9

-- The lifeline: PID 1 of every box. Its job: when the host closes its end
-- of the lane (stop, garbage collection, or the Lua process killed with
-- SIGKILL), everything in the box is killed with `kill -9 -1`, so the
-- container (AutoRemove) goes away with the lane; when the session shell
-- exits on its own, the same kill ends the rest and PID 1 exits with the
-- shell's code. PID 1 is a shell, so nothing in the box can kill it, and while
-- it waits it reaps every zombie reparented to it (the job of an init). Its
-- own stderr goes to /dev/null (fd 9 keeps the real one), or it would report
-- "Killed" for the jobs it waits on.
--
-- Attach lane: the container's stdin is the only thing to watch, and the
-- session shell needs it too, so `cat` relays it to the shell ("$0"); the
-- pipeline ends when cat sees EOF or the shell exits. A step that kills the
-- relay (`kill -9 -1` kills all but its caller, the session shell, and PID 1)
-- ends the session: the shell reads EOF. An image without cat gets the shell
-- alone (no lifeline).
local ATTACH = table_concat({
  'command -v cat >/dev/null 2>&1 || exec "$0"',
  'exec 9>&2 2>/dev/null',
  '{ cat; kill -9 -1; } | { "$0" 2>&9 9>&-; c=$?; kill -9 -1; exit $c; }',
}, "\n")

-- Fifo lane: the session shell reads `in` itself and is PID 1's own child
-- ($s), so PID 1 knows when it ends and with what code. The watcher ($w),
-- started before the shell (the session's first probe must find it, or a
-- sweep would take it for a step's process), is a
-- subshell of builtins that reads `life` (opened once by PID 1, fd 3): at EOF
-- the host is gone; each word the host writes there (fifo:poke) is a request
-- to kill the steps' processes, which the watcher passes to PID 1 as SIGUSR1.
-- PID 1 then kills every process but itself, the shell and the watcher, with
-- builtins only (no fork: it works when a fork bomb holds every pid, and no
-- byte goes through dockerd, however busy it is relaying an exec's flood).
-- A step's `kill -9 -1` spares PID 1 and the session shell (its caller) and
-- kills the watcher: PID 1 starts another on the same fd 3, so the box goes on
-- and the lifeline holds (a new watcher of a closed `life` reads EOF at once).
-- PID 1 waits for the watcher, and wakes when either ends: SIGCHLD breaks the
-- wait in dash and busybox; bash's `wait -n` waits for the next job instead
-- (and has no CHLD trap, which would break the wait for the shell's code).
-- The shell's code is taken before the others are killed: their ends would
-- interrupt that wait too.
local FIFO = table_concat({
  'exec 9>&2 2>/dev/null 3</.lockup/life',
  's= w=',
  'trap \'for i in 1 2 3 4 5 6 7 8; do f=; for d in /proc/[0-9]*; do p=${d#/proc/}; '
    .. 'case " 1 $s $w " in *" $p "*) ;; *) kill -9 "$p" && f=1;; esac; done; [ -z "$f" ] && break; done\' USR1',
  '{ while read -r _; do kill -USR1 1; done <&3; } & w=$!',
  '"$0" </.lockup/in >/.lockup/out 2>/.lockup/err 9>&- 3<&- & s=$!',
  '[ -n "$BASH_VERSION" ] || trap : CHLD',
  'while :; do',
  '  if [ -z "$w" ]; then { while read -r _; do kill -USR1 1; done <&3; } & w=$!; fi',
  '  if [ -n "$BASH_VERSION" ]; then wait -n; else wait "$w"; fi',
  '  [ -d "/proc/$s" ] || { wait "$s"; c=$?; kill -9 -1; exit $c; }',
  '  [ -d "/proc/$w" ] && continue',
  '  wait "$w"; [ $? -gt 128 ] || { kill -9 -1; exit 137; }',
  '  w=',
  'done',
}, "\n")

-- The lifeline for a lane ("fifo" or "attach").
function _M.lifeline(lane_name)
  return lane_name == "fifo" and FIFO or ATTACH
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

-- The options of lockup's own steps at a session's start: whatever the
-- box's max_output (a step's cap), their output is read whole.
local OWN_STEP = { timeout = 10, max_output = 1024 * 1024 }

-- PROBE's work without its subshell (a fork), for a new shell that has
-- nothing of its own yet: the shell's own pid is listed, as it is in the
-- lifeline's.
local SHELL_PROBE = "__lk_k=; for __lk_d in /proc/[0-9]*; do __lk_k=\"$__lk_k ${__lk_d#/proc/}\"; done; __lk_n=0; "
  .. "for __lk_d in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
  .. "\\command [ -r \"$__lk_d\" ] && while \\command read -r __lk_a __lk_b; do "
  .. "\\command [ \"$__lk_a\" = oom_kill ] && __lk_n=$__lk_b; done <\"$__lk_d\"; done; "
  .. "\\command echo \"$__lk_n $$$__lk_k\"; \\unset __lk_k __lk_d __lk_n __lk_a __lk_b"

-- What a fresh session shell is like, for lockup.reset: a line for
-- `first`'s complaint (empty when none), one for what it noted in
-- __lk_modes (the modes of the box's mounts, at the start); the fingerprint, which a reset's
-- new shell must match: the umask, the soft and hard resource limits and
-- the blocked and ignored signals (fields 32 and 33 of /proc/self/stat);
-- "--", the soft limits again as "flag value" lines a reset sets back
-- (each shell knows its own flags: those it lacks are left out); "--", and
-- the environment (`export -p`, which the same shell can read back).
-- Builtins in the shell itself (a `read` of /proc/self/status or limits
-- costs a millisecond: one byte per read(2)), names unset after.
local BASELINE = "\\command printf '%s\\n' \"${__lk_bad-}\"; \\command echo ${__lk_modes-}; "
  .. "\\command umask; \\command ulimit -a; "
  .. "\\command ulimit -H -a; \\command read -r __lk_a </proc/self/stat; __lk_i=0; for __lk_b in ${__lk_a##*) }; do "
  .. "__lk_i=$((__lk_i + 1)); case $__lk_i in 30|31) \\command echo \"signals $__lk_b\";; esac; done; "
  .. "\\command echo --; for __lk_a in c d e f i l m n q r s t u v x; do "
  .. "\\command ulimit -S -$__lk_a >/dev/null 2>&1 && "
  .. "{ \\command printf '%s ' $__lk_a; \\command ulimit -S -$__lk_a; }; "
  .. "done; \\unset __lk_a __lk_b __lk_i __lk_bad __lk_modes; \\command echo --; \\command export -p"

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
  local r = _M.run(box, (probe and (SHELL_PROBE .. ";") or "") .. definition(shell_pid) .. ";\\command printf '\\n';"
    .. (first and first ~= "" and (first .. ";") or "") .. BASELINE, OWN_STEP)
  if not r or box.dead then return false end
  local probed, rest = "", r.stdout
  if probe then probed, rest = r.stdout:match("^([^\n]*\n)(.*)$") end
  local head, complaint, modes, fingerprint, soft, env =
    (rest or ""):match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n(.-)\n%-%-\n(.-)%-%-\n(.*)$")
  if not head then return false end
  box.step_fn = head:find(STEP_FN .. " ", 1, true) == 1
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
  local r = _M.run(box, PROBE, OWN_STEP)
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

-- Killing the steps' processes: every process in the box but the lifeline's
-- own (the pids the probe found at start, the session shell among them).
-- The sweep loops because a process may fork while it runs, and uses
-- builtins only, so that it needs no free pid (a fork bomb holds them all).
-- Three ways to have it done, by who holds the session:
--  * the session is free (box:exec and what runs on it, box:kill_processes
--    between steps): a step of its own in the session shell, which answers
--    once the processes are gone; no byte goes through an exec;
--  * a step runs in it, on the fifo lane: a word to PID 1 through `life`
--    (lockup.lane.fifo: poke), which sweeps; no byte goes through dockerd;
--  * a step runs in it, on the attach lane: an exec of the sweep, as the
--    box's user (dockerd relays the step's output meanwhile, not an exec's).
local SWEEP = '__lk_k=" %s "; for __lk_i in 1 2 3 4 5 6 7 8; do __lk_f=; for __lk_d in /proc/[0-9]*; do '
  .. '__lk_p=${__lk_d#/proc/}; case $__lk_k in *" $__lk_p "*) ;; *) \\command kill -9 "$__lk_p" 2>/dev/null '
  .. '&& __lk_f=1;; esac; done; \\command [ -z "$__lk_f" ] && break; done; \\unset __lk_k __lk_i __lk_f __lk_d __lk_p'

local function sweep_text(box)
  return string_format(SWEEP, box.lifeline_pids:gsub("^ +", ""):gsub(" +$", ""))
end
_M.sweep_text = sweep_text -- lockup.reset's first act

local step_run -- below

-- The line of a step of lockup's own shell text (no stdin).
local function writer_line(writer, token_hex, _, box)
  return step_line(writer, "/dev/null", token_hex, box)
end

-- The sweep as a step in the session shell (the box's lock held, no step in
-- it), done by `until_`: true, or nil, err; a session left out of step is shut.
local function sweep_in_session(box, until_)
  local out = {}
  local st, err = step_run(box, writer_line, sweep_text(box), nil, {}, until_, out)
  if st == "exit" then return true end
  box:shut("the box was stopped: its session did not answer a kill of the steps' processes ("
    .. tostring(err or st) .. ")")
  return nil, box.dead
end

-- The sweep as an exec, done by `until_`: true, or nil, err.
local function sweep_by_exec(box, until_)
  local argv = { box.shell, "-c", sweep_text(box) }
  local r, err = exec.run(box, argv, { timeout = math_max(0.001, until_ - now()) })
  if not r or r.code ~= 0 then
    return nil, "killing the box's processes: " .. (err or (r.stderr .. r.stdout):gsub("%s+$", ""))
  end
  return true
end

-- What step.follow does when a step in the session shell overruns: the
-- session is busy, so PID 1 (fifo lane) or an exec (attach lane) sweeps.
local function busy_overrun(box)
  return function(until_)
    if box.dead or not box.lifeline_pids then return end
    if box.lane.poke then
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
    if box.lane.poke then
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
  local writer = stdin_writer(data, source)
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
    st, err = step_run(box, _M.command_line, cmd, source, opts, deadline, out, busy_overrun(box))
  end
  if st == "exit" and step.overran(out) then
    -- the busy session's sweep (PID 1's, or the exec's on the attach lane,
    -- which its own deadline may cut short) can still be going when the
    -- step ends: the session's own finishes it, so that nothing of the step
    -- is left when this returns
    sweep_in_session(box, math_max(deadline + 0.9, now() + 0.05))
  end
  out.duration = now() - started
  if st == "exit" then
    if cmd ~= PROBE and _M.killed(out) then out.oom = _M.oom_killed(box) end
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
