-- The session protocol's shell text: what lockup sends to a box's shell,
-- as pure functions of their inputs, with no I/O (lockup.session sends them
-- and reads the answers; spec/shell_spec.lua runs them in local shells). The
-- lifelines (PID 1 of a box, per lane), a step's line and its tail, a step's
-- stdin as printf lines, the probe, the baseline a reset compares with, and
-- the sweep that kills the steps' processes.
local string_format, table_concat = string.format, table.concat

local _M = {}

local STDIN_CHUNK = 16384 -- stdin bytes per printf line

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
-- A zombie does not count as found (kill succeeds on one until its parent
-- reaps it): the sweep ends as soon as the living are gone, not after its
-- eight rounds, which would kill what the next step starts meanwhile.
-- PID 1 waits for the watcher, and wakes when either ends: SIGCHLD breaks the
-- wait in dash and busybox; bash's `wait -n` waits for the next job instead
-- (and has no CHLD trap, which would break the wait for the shell's code).
-- The shell's code is taken before the others are killed: their ends would
-- interrupt that wait too.
local FIFO = table_concat({
  'exec 9>&2 2>/dev/null 3</.lockup/life',
  's= w=',
  'trap \'for i in 1 2 3 4 5 6 7 8; do f=; for d in /proc/[0-9]*; do p=${d#/proc/}; '
    .. 'case " 1 $s $w " in *" $p "*) ;; *) l=; while read -r x; do l="$l $x"; done <"$d/stat"; '
    .. 'case ${l##*) } in Z*|"") ;; *) kill -9 "$p" && f=1;; esac;; esac; done; [ -z "$f" ] && break; done\' USR1',
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
_M.quote = shell_quote

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

_M.STEP_FN = STEP_FN
_M.definition = definition -- also for bench/lanes.lua, which sends it to a shell on the host

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
function _M.stdin_writer(data, source)
  local lines = { "\\command printf '' >" .. source }
  for i = 1, #data, STDIN_CHUNK do
    lines[#lines + 1] = "\\command printf " .. printf_literal(data:sub(i, i + STDIN_CHUNK - 1)) .. " >>" .. source
  end
  return "{ " .. table_concat(lines, " &&\n") .. "; } || { \\command rm -f " .. source .. "; \\command false; }"
end

-- The count of OOM kills in the box's memory cgroup (v1 or v2), the session
-- shell's pid, then the pids of every process but the probe's own subshell: at
-- start, that is the lifeline, cat and the session shell, the processes a
-- sweep spares. Shell builtins in a subshell (no state leaks into the session).
_M.PROBE = "(unset IFS; read -r l </proc/self/stat; set -- $l; me=$1; k=; for d in /proc/[0-9]*; do "
  .. 'p=${d#/proc/}; [ "$p" = "$me" ] || k="$k $p"; done; n=0; '
  .. "for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
  .. '[ -r "$f" ] && while read -r k2 v; do [ "$k2" = oom_kill ] && n=$v; done <"$f"; done; echo $n $$$k)'

-- PROBE's work without its subshell (a fork), for a new shell that has
-- nothing of its own yet: the shell's own pid is listed, as it is in the
-- lifeline's.
_M.SHELL_PROBE = "__lk_k=; for __lk_d in /proc/[0-9]*; do __lk_k=\"$__lk_k ${__lk_d#/proc/}\"; done; __lk_n=0; "
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
_M.BASELINE = "\\command printf '%s\\n' \"${__lk_bad-}\"; \\command echo ${__lk_modes-}; "
  .. "\\command umask; \\command ulimit -a; "
  .. "\\command ulimit -H -a; \\command read -r __lk_a </proc/self/stat; __lk_i=0; for __lk_b in ${__lk_a##*) }; do "
  .. "__lk_i=$((__lk_i + 1)); case $__lk_i in 30|31) \\command echo \"signals $__lk_b\";; esac; done; "
  .. "\\command echo --; for __lk_a in c d e f i l m n q r s t u v x; do "
  .. "\\command ulimit -S -$__lk_a >/dev/null 2>&1 && "
  .. "{ \\command printf '%s ' $__lk_a; \\command ulimit -S -$__lk_a; }; "
  .. "done; \\unset __lk_a __lk_b __lk_i __lk_bad __lk_modes; \\command echo --; \\command export -p"

-- A process's /proc/N/stat (N's directory in __lk_d) into __lk_s, its lines
-- joined: the command's name is the process's own to set, newlines too, and
-- the first line alone could be a forged one. The real fields follow the
-- last ") ". Quiet for a process that is gone (2>/dev/null first: it must
-- apply to the failed open).
local READ_STAT = '__lk_s=; while \\command read -r __lk_l; do __lk_s="$__lk_s $__lk_l"; done '
  .. '2>/dev/null <"$__lk_d/stat"'

-- A process's session id from its /proc/N/stat line in __lk_s (the fields
-- after the command's name, which may hold spaces and parentheses: state,
-- ppid, pgrp, session), with builtins only.
local SESSION_OF = '__lk_s=${__lk_s##*) }; __lk_s=${__lk_s#* }; __lk_s=${__lk_s#* }; __lk_s=${__lk_s#* }; '
  .. '__lk_s=${__lk_s%% *}'

-- The sweep, for the session's pids `pids` (" 1 7 8 "): kills every other
-- process in the box but those of the sessions `spare` (" 12 30 ", the
-- processes box:spawn started: each leads a session of its own, which no
-- step can join). It loops because a process may fork while it runs, and
-- uses builtins only, so that it needs no free pid (a fork bomb holds them
-- all). A step's `set -f` would leave its pattern matching nothing: it is
-- lifted for the sweep and put back.
local SWEEP = '__lk_nf=; case $- in *f*) __lk_nf=1; \\command set +f;; esac; __lk_k=" %s "; __lk_v="%s"; '
  .. 'for __lk_i in 1 2 3 4 5 6 7 8; do __lk_f=; for __lk_d in /proc/[0-9]*; do '
  .. '__lk_p=${__lk_d#/proc/}; case $__lk_k in *" $__lk_p "*) ;; *) __lk_s=; '
  .. 'if \\command [ -n "$__lk_v" ]; then ' .. READ_STAT .. '; %s; fi; '
  .. 'case $__lk_v in *" $__lk_s "*) ;; *) \\command kill -9 "$__lk_p" 2>/dev/null && __lk_f=1;; esac;; esac; done; '
  .. '\\command [ -z "$__lk_f" ] && break; done; '
  .. '\\command [ -n "$__lk_nf" ] && \\command set -f; '
  .. '\\unset __lk_k __lk_v __lk_s __lk_l __lk_i __lk_f __lk_d __lk_p __lk_nf'

local function words(list)
  return (list:gsub("^ +", ""):gsub(" +$", ""))
end

function _M.sweep(pids, spare)
  spare = spare and words(spare) or ""
  return string_format(SWEEP, words(pids), spare ~= "" and (" " .. spare .. " ") or "", SESSION_OF)
end

-- Waits (a bounded busy loop of builtins: it must work when a fork bomb
-- holds every pid) until PID 1 and the lifeline's other processes but the
-- session shell (`shell_pid`) are asleep and PID 1 has no SIGUSR1 pending:
-- the sweep that a word to PID 1 asked for is over, and cannot kill what
-- the next step starts (lockup.session, after a step it poked).
function _M.lifeline_idle(pids, shell_pid)
  return string_format('__lk_i=0; while \\command [ $__lk_i -lt 2000 ]; do __lk_b=; for __lk_p in %s; do '
    .. 'case $__lk_p in %d) ;; *) __lk_d=/proc/$__lk_p; %s; '
    .. 'case ${__lk_s##*) } in S*|"") ;; *) __lk_b=1;; esac;; esac; done; '
    .. 'while \\command read -r __lk_k __lk_v; do case $__lk_k:$__lk_v in ShdPnd:*[2367abef]??|SigPnd:*[2367abef]??) '
    .. '__lk_b=1;; esac; done 2>/dev/null </proc/1/status; \\command [ -z "$__lk_b" ] && break; '
    .. '__lk_i=$((__lk_i + 1)); done; \\unset __lk_i __lk_b __lk_p __lk_d __lk_s __lk_l __lk_k __lk_v',
    words(pids), shell_pid, READ_STAT)
end

-- What box:spawn runs: the process's pid, as the first line of its stdout,
-- then the command in its place (same pid: the leader of the session the
-- exec gave it).
_M.SPAWN = 'echo $$; exec "$@"'
-- The same where the connection cannot end the process's stdin by itself
-- (inside nginx a cosocket has no half-close): a relay (`cat`, whose pid
-- follows the process's on the first line) copies the connection into a
-- FIFO that is the process's stdin, and killing the relay ends it. The
-- relay removes the FIFO's name once both ends are open.
-- (The relay reads the connection through fd 4: a background job's stdin
-- is /dev/null.)
_M.SPAWN_RELAYED = '__lk_f="${TMPDIR:-/tmp}/.lockup-stdin-$$"; mkfifo -m 600 "$__lk_f" || exit 125; exec 4<&0; '
  .. '( exec 3>"$__lk_f"; rm -f "$__lk_f"; exec cat <&4 4<&- >&3 3>&- ) & echo "$$ $!"; exec "$@" <"$__lk_f" 4<&-'

-- Ends a relay (pid `relay`) once it has passed on `sent` bytes (the
-- `wchar` of its /proc/N/io: cat writes nothing else), so that nothing sent
-- before the end is lost; at the latest after `tries` looks 10 ms apart
-- (the process does not read: then what is left is dropped).
function _M.relay_end(relay, sent, tries)
  return string_format('__lk_i=0; while \\command [ $__lk_i -lt %d ] && \\command [ -e /proc/%d ]; do __lk_w=0; '
    .. 'while \\command read -r __lk_k __lk_v; do case $__lk_k in wchar:) __lk_w=$__lk_v;; esac; done '
    .. '2>/dev/null </proc/%d/io; \\command [ "$__lk_w" -ge %d ] && break; \\command sleep 0.01; '
    .. '__lk_i=$((__lk_i + 1)); done; \\command kill %d 2>/dev/null; \\unset __lk_i __lk_w __lk_k __lk_v',
    tries, relay, relay, sent, relay)
end

-- The same on a terminal of $1 columns and $2 rows, set before the command
-- runs (the Engine's resize comes too late for a command that asks at once).
_M.SPAWN_TTY = 'echo $$; \\command stty cols "$1" rows "$2" 2>/dev/null; shift 2; exec "$@"'

-- Sends signal `sig` (a number) to the process `pid` (a number, or shell
-- text that gives it) that box:spawn started and to everything it started: its session and process group
-- (builtins only), and every other process whose environment carries its
-- token (a daemon that left the session keeps it), as the box's user can
-- see them (`tr` per process: busybox's grep stops at an environment's first
-- NUL). A KILL is sent again while some process was found (one may fork
-- meanwhile). The shell that runs it is spared ($$: a watchdog in the
-- process's session).
function _M.proc_kill(pid, token, sig)
  return string_format('for __lk_i in 1 2 3 4 5 6 7 8; do __lk_f=; '
    .. 'for __lk_d in /proc/[0-9]*; do __lk_p=${__lk_d#/proc/}; ' .. READ_STAT .. '; __lk_g=${__lk_s##*) }; '
    .. '__lk_g=${__lk_g#* }; __lk_g=${__lk_g#* }; __lk_g=${__lk_g%%%% *}; %s; '
    .. 'case " $__lk_p $__lk_g $__lk_s " in " $$ "*) ;; '
    .. '*" %s "*) \\command kill -%d "$__lk_p" 2>/dev/null && __lk_f=1;; '
    .. '*) case " $(\\command tr "\\000" " " 2>/dev/null <"$__lk_d/environ") " in '
    .. '*" LOCKUP_PROC=%s "*) \\command kill -%d "$__lk_p" 2>/dev/null && __lk_f=1;; esac;; esac; done; '
    .. '\\command [ -z "$__lk_f" ] || \\command [ %d != 9 ] && break; done; '
    .. '\\unset __lk_i __lk_f __lk_d __lk_p __lk_s __lk_l __lk_g',
    SESSION_OF, tostring(pid), sig, token, sig, sig)
end

-- A watchdog for box:spawn's `timeout`, started by the process's wrapper
-- before the command: a shell of its own in the process's session (so
-- that proc:kill ends it too), not the command's child (a subshell starts
-- it and exits: PID 1 adopts it, so that a command that waits for any child
-- never waits for it), its output away from the exec's stream, that
-- looks every second whether the process still runs and, `seconds` after
-- the start, kills it and all it started (proc_kill). The timeout holds
-- whether or not the host calls anything meanwhile.
function _M.watchdog(shell_path, seconds, token)
  local whole = math.floor(seconds)
  local text = string_format('__lk_n=%d; while \\command [ $__lk_n -gt 0 ]; do '
    .. '\\command kill -0 $1 2>/dev/null || exit 0; \\command sleep 1; __lk_n=$((__lk_n - 1)); done; '
    .. '\\command sleep %.3f; '
    .. '\\command kill -0 $1 2>/dev/null || exit 0; %s', whole, seconds - whole, _M.proc_kill("$1", token, 9))
  return string_format("(%s -c '%s' lockup-watchdog $$ </dev/null >/dev/null 2>&1 &); ", shell_path, text)
end

-- Lists the box's processes: the lister's own pid on the first line, then,
-- per process, \2, its /proc/N/stat on one line (READ_STAT) and its command
-- line (NUL-separated).
_M.PROCESSES = '\\command printf "%s\\n" $$; for __lk_d in /proc/[0-9]*; do ' .. READ_STAT .. '; '
  .. '\\command printf "\\002%s\\n" "$__lk_s"; \\command cat "$__lk_d/cmdline" 2>/dev/null; done; '
  .. '\\unset __lk_d __lk_s __lk_l'

-- The text of a new session shell's first step of lockup's own (see
-- lockup.session's prepare): with `probe`, SHELL_PROBE's line first; the
-- step function's definition; a newline; `first` (shell text that may set
-- __lk_bad); the BASELINE.
function _M.prepare(shell_pid, first, probe)
  return (probe and (_M.SHELL_PROBE .. ";") or "") .. definition(shell_pid) .. ";\\command printf '\\n';"
    .. (first and first ~= "" and (first .. ";") or "") .. _M.BASELINE
end

return _M
