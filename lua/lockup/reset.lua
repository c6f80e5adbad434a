-- box:reset(): a used box made clean again in milliseconds, instead of a new
-- container (lockup.pool{ reset = true } does it to each box handed back).
--
-- Three steps in the box's session, the box's lock held:
--  1. in the used shell: every process but the lifeline's killed (the sweep),
--     the start's directory, umask, signal dispositions and soft limits set
--     back, the writable tmpfs mounts, /dev/shm and /dev/mqueue emptied,
--     System V IPC objects removed, the files a committed image keeps for
--     its mounts (lockup.commit) copied back in, the exported variables and
--     functions a step left dropped and the start's environment read back;
--  2. that shell replaced (exec, same pid) by a fresh one;
--  3. the check, in the fresh shell: only the lifeline's processes left, and
--     its umask, limits, blocked and ignored signals and environment as at
--     the start (exec keeps a hard limit a step lowered for good, and a
--     variable it made read-only).
-- Any doubt, and the box is stopped: nil, err. README: "Resetting a box".
local session = require "lockup.session"
local shell = require "lockup.shell"

local tostring, ipairs = tostring, ipairs
local string_format, table_concat = string.format, table.concat

local _M = {}

-- Where an image made by box:commit keeps the files of the box's writable
-- mounts (tmpfs mounts start empty): COMMITTED .. "/tmp/..." for /tmp. Not
-- lockup.lane.fifo's /.lockup, which the fifo lane mounts over.
local COMMITTED = "/.lockup-commit"
_M.COMMITTED = COMMITTED

local STEP_TIMEOUT = 10 -- seconds for each of the reset's steps; the steps themselves take milliseconds
local PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


local function words(list)
  local q = {}
  for i, s in ipairs(list) do q[i] = shell.quote(s) end
  return table_concat(q, " ")
end

-- Every name in directory $__lk_d but . and .. (a pattern that matches
-- nothing stays as it is: the loop skips names that do not exist).
local ENTRIES = '"$__lk_d"/* "$__lk_d"/.[!.]* "$__lk_d"/..?*'
local EXISTS = '{ \\command [ -e "$__lk_f" ] || \\command [ -L "$__lk_f" ]; }'

local restore_text -- below

-- What a box's session runs at its start, before its first step (see
-- lockup.session's BASELINE): the modes of `mounts` noted (stat, where the
-- image has it), then the files a committed image keeps for them copied in.
function _M.start_text(mounts)
  if #mounts == 0 then return "" end
  return "__lk_modes=$(\\command stat -c %a -- " .. words(mounts) .. " 2>/dev/null); " .. restore_text(mounts)
end

-- Shell text that copies what a committed image keeps for each of `mounts`
-- into it; sets __lk_bad on a failure. Nothing when the image has none.
function restore_text(mounts)
  if #mounts == 0 then return "" end
  return "if \\command [ -d " .. COMMITTED .. " ]; then for __lk_m in " .. words(mounts) .. "; do "
    .. "__lk_d=" .. COMMITTED .. "$__lk_m; \\command [ -d \"$__lk_d\" ] || continue; "
    .. "for __lk_f in " .. ENTRIES .. "; do " .. EXISTS .. " || continue; "
    .. "\\command cp -a -- \"$__lk_f\" \"$__lk_m\"/ 2>/dev/null "
    .. "|| { __lk_bad=\"cannot copy $__lk_f back into $__lk_m\"; break 2; }; done; done; fi; "
    .. "\\unset __lk_m __lk_d __lk_f"
end

-- The exported variables and (bash) functions a step left in the shell,
-- dropped with builtins only (an exec of `env -i` costs a millisecond); the
-- start's environment (box.env_text, `export -p`) is then read back.
local CLEAR_ENV = table_concat({
  "__lk_x=$(\\command export -p); IFS='\n'; set -f",
  "for __lk_l in $__lk_x; do case $__lk_l in 'export '*|'declare -x '*) __lk_n=${__lk_l#export }; "
    .. "__lk_n=${__lk_n#declare -x }; __lk_n=${__lk_n%%=*}; case $__lk_n in ''|*[!A-Za-z0-9_]*) ;; "
    .. "*) \\unset \"$__lk_n\" 2>/dev/null;; esac;; esac; done",
  "if \\command [ -n \"${BASH_VERSION-}\" ]; then __lk_x=$(declare -F); for __lk_l in $__lk_x; do "
    .. "case $__lk_l in 'declare -f'*x*' '*) \\unset -f \"${__lk_l##* }\" 2>/dev/null;; esac; done; fi",
  "set +f; \\unset IFS",
}, "\n")

-- Signals a step can have the shell ignore or catch (not 9 and 19, which
-- cannot be): `trap -` gives each its default back, so that the new shell
-- does not inherit an ignored one. (One ignored when the shell started stays
-- ignored: a shell cannot change that, and the start's baseline has it.)
local SIGNALS = "1 2 3 4 5 6 7 8 10 11 12 13 14 15 16 17 18 20 21 22 23 24 25 26 27 28 29 30 31"

-- Step 1: prints the complaint (empty when clean). The old shell is thrown
-- away after it, so its options, PATH and traps are set freely (a step's
-- `set -f` would leave every pattern below matching nothing); `\command`
-- keeps a step's functions and aliases out.
local function wipe_text(box)
  local places = {}
  for i, m in ipairs(box.tmpfs) do places[i] = m end
  places[#places + 1] = "/dev/shm"
  places[#places + 1] = "/dev/mqueue"
  local globs = {}
  for i, m in ipairs(places) do
    local q = shell.quote(m)
    globs[i] = q .. "/* " .. q .. "/.[!.]* " .. q .. "/..?*"
  end
  globs = table_concat(globs, " ")
  local umask, limits = box.baseline:match("^(%d+)\n"), {}
  for flag, value in box.soft_limits:gmatch("(%a) (%w+)\n") do
    limits[#limits + 1] = "\\command ulimit -S -" .. flag .. " " .. value .. " 2>/dev/null"
  end
  local modes, start_modes = {}, {} -- a mount whose own mode a step took from its user is given it back
  for mode in (box.start_modes or ""):gmatch("%d+") do start_modes[#start_modes + 1] = mode end
  for i, m in ipairs(box.tmpfs) do
    local mode = #start_modes == #box.tmpfs and start_modes[i]
    if mode then
      local q = shell.quote(m)
      modes[#modes + 1] = "{ \\command [ -r " .. q .. " ] && \\command [ -w " .. q .. " ] && \\command [ -x " .. q
        .. " ]; } || \\command chmod " .. mode .. " " .. q .. " 2>/dev/null"
    end
  end
  return table_concat({
    "\\command set +e +f +u", "PATH=" .. PATH, "\\unset IFS",
    -- `wait` reaps the shell's own children the sweep killed: a zombie is a process left
    session.sweep_text(box), "\\command wait 2>/dev/null", "__lk_bad=",
    "\\command cd -- " .. shell.quote(box.workdir or "/") .. " 2>/dev/null",
    umask and ("\\command umask " .. umask) or ":",
    "\\command trap - " .. SIGNALS .. " 2>/dev/null",
    table_concat(limits, "; "),
    table_concat(modes, "; "),
    -- rm only when there is something to remove (an exec costs a millisecond); a
    -- directory a step made unreadable is made readable first
    "for __lk_f in " .. globs .. "; do " .. EXISTS .. " && { \\command rm -rf -- " .. globs .. " 2>/dev/null "
      .. "|| { \\command chmod -R u+rwx -- " .. globs .. " 2>/dev/null; \\command rm -rf -- " .. globs
      .. " 2>/dev/null; }; break; }; done",
    "for __lk_d in " .. words(places) .. "; do for __lk_f in " .. ENTRIES .. "; do "
      .. EXISTS .. " && __lk_bad=\"$__lk_f could not be removed\"; done; done",
    "for __lk_k in m:shm q:msg s:sem; do __lk_d=/proc/sysvipc/${__lk_k#*:}; \\command [ -r \"$__lk_d\" ] || continue; "
      .. "{ \\command read -r __lk_z; while \\command read -r __lk_z __lk_i __lk_z; do "
      .. "\\command ipcrm -${__lk_k%%:*} \"$__lk_i\" 2>/dev/null; done; } <\"$__lk_d\"; "
      .. "{ \\command read -r __lk_z; \\command read -r __lk_z && __lk_bad=\"System V IPC objects are left "
      .. "(${__lk_k#*:}): no ipcrm in the image, or they are not the box user's\"; } <\"$__lk_d\"; done",
    restore_text(box.tmpfs),
    CLEAR_ENV,
    "\\command eval " .. shell.quote(box.env_text),
    "\\command printf '%s\\n' \"$__lk_bad\"",
  }, "\n")
end

-- Step 2, the step's whole line, outside `eval` (no step's redirection
-- stays on the new shell): the sentinel, then exec of a new session shell,
-- same pid. The old shell has read this line and no more (nothing more was
-- sent), so the next line is the new one's.
local function respawn_line(box)
  return function(_, token_hex)
    return "\\command printf '\\001%s 0\\n' " .. token_hex .. "; \\command printf '\\001%s 0\\n' " .. token_hex
      .. " >&2; \\exec " .. shell.quote(box.shell) .. "\n"
  end
end

-- A shell that counts its depth (bash, busybox) adds one to SHLVL when it
-- starts: the new shell's first step sets the start's value back.
local function shell_level(env_text)
  local level = env_text:match("SHLVL=['\"]?(%d+)")
  return level and ("SHLVL=" .. level) or nil
end

local function count_words(s)
  local n = 0
  for _ in s:gmatch("%S+") do n = n + 1 end
  return n
end

-- Can this box be reset at all? nil, err when not.
function _M.check(box)
  if not box.read_only then
    return nil, "cannot reset a box with a writable root filesystem (read_only = false): lockup could not put "
      .. "its files back; start a new box instead"
  end
  if #box.writable > #box.tmpfs then
    return nil, "cannot reset a box with a writable volume: what was written to the host stays; start a new box "
      .. "instead"
  end
  if not box.baseline then return nil, "cannot reset this box: its session's start was not noted" end
  return true
end

-- The reset itself, the box's lock held: true, or nil, err (the box is then
-- shut: it could not be made clean).
function _M.run(box)
  local function fail(why)
    box:shut("the box was stopped: a reset could not make it clean (" .. why .. ")")
    return nil, box.dead
  end
  local r, err = session.run(box, wipe_text(box), { timeout = STEP_TIMEOUT, max_output = 65536 })
  if not r then return nil, err end
  box.procs = {} -- the wipe's sweep ended the spawned processes too
  local complaint = r.stdout:match("([^\n]*)\n$")
  if r.code ~= 0 or not complaint then
    return fail(string_format("its cleaning step ended with code %s: %s", tostring(r.code),
      (r.stderr .. r.stdout):gsub("%s+$", "")))
  end
  if complaint ~= "" then return fail(complaint) end
  local baseline, env, npids = box.baseline, box.env_text, count_words(box.lifeline_pids)
  local st
  st, err = session.raw_step(box, respawn_line(box), STEP_TIMEOUT)
  if st ~= "exit" then return fail("its new shell did not answer: " .. tostring(err or st)) end
  local ooms, pid, pids = session.renew(box, shell_level(env))
  if not pids then return fail(box.dead or "its new shell did not answer the probe") end
  box.ooms, box.shell_pid, box.lifeline_pids = ooms, pid, pids
  if count_words(pids) ~= npids then
    return fail(string_format("%d processes are left where the lifeline has %d", count_words(pids), npids))
  end
  if box.baseline ~= baseline then
    return fail("its new shell's umask, limits or ignored signals are not those of the box's start (a step "
      .. "lowered a hard limit, or changed what a reset cannot give back)")
  end
  if box.env_text ~= env then
    return fail("its new shell's environment is not the start's (a step left a variable that cannot be unset: "
      .. "exported and read-only)")
  end
  return true
end

return _M
