-- The session protocol's shell text (lua/lockup/shell.lua), without Docker:
-- each text run by the shells lockup meets, here on the host (dash, bash,
-- busybox sh). What would act on the host's processes (the lifelines) is
-- only parsed (`sh -n`); what kills every process it sees (the sweep,
-- proc_kill, the watchdog) runs as PID 1 of a PID namespace of its own
-- (`unshare -fp --mount-proc`, where the host allows it), which sees only the
-- test's processes and ends them all when it exits.
local shell = require "lockup.shell"
local helper = require "helper"
local C = require "support.compat"

local SHELLS = {}
for _, sh in ipairs { "dash", "bash", "busybox sh" } do
  local bin = sh:match("^%S+")
  if C.execute("command -v " .. bin .. " >/dev/null 2>&1") then SHELLS[#SHELLS + 1] = sh end
end

local TOKEN = "0123456789abcdef0123456789abcdef"

-- Runs `sh` with `input` on its stdin; its stdout and stderr, apart.
local function run(sh, input)
  local dir = helper.tmpdir()
  helper.write(dir .. "/in", input)
  C.execute(string.format("cd %s && %s <in >out 2>err", dir, sh))
  local out, err = helper.read(dir .. "/out"), helper.read(dir .. "/err")
  helper.rm_rf(dir)
  return out, err
end

-- Does `sh -n` accept `text`?
local function parses(sh, text)
  local dir = helper.tmpdir()
  helper.write(dir .. "/text", text)
  local ok = C.execute(string.format("%s -n %s/text 2>/dev/null", sh, dir))
  helper.rm_rf(dir)
  return ok == true
end

-- Can this host give a test a PID namespace of its own (root, or user
-- namespaces)? Without one, what kills processes by listing /proc is not run.
local ISOLATED = C.execute("unshare -fp --mount-proc true >/dev/null 2>&1") == true

-- `run`, with `sh` as PID 1 of a new PID namespace (and its own /proc): the
-- text sees only the processes it starts, cannot kill PID 1 (itself), and
-- every process left is killed when it exits.
local function run_isolated(sh, input)
  return run("unshare -fp --mount-proc " .. sh, input)
end

-- Shell functions for the texts run in a namespace (builtins, so that they
-- add no process of their own to what they see; __t_settle's sleep between
-- looks is waited for before the next):
-- __t_live lists the live (not zombie) processes but the shell (and the
-- subshell it may run in) as "pid state ppid pgrp session comm";
-- __t_settle N waits (up to 3 s) until N live processes named sleep run;
-- __t_down N until N at most do (a signal other than KILL takes a moment).
local PRELUDE = table.concat({
  '__t_live() { read -r __t_me </proc/self/stat; __t_me=${__t_me%% *}; for __t_d in /proc/[0-9]*; do',
  '  __t_p=${__t_d#/proc/}; case " $$ $__t_me " in *" $__t_p "*) continue;; esac;',
  '  __t_l=; read -r __t_l <"$__t_d/stat" 2>/dev/null || continue; __t_c=${__t_l#*(}; __t_c=${__t_c%)*};',
  '  set -- ${__t_l##*) }; [ "$1" = Z ] || echo "$__t_p $1 $2 $3 $4 $__t_c"; done; }',
  '__t_settle() { __t_i=0; while [ $__t_i -lt 300 ]; do __t_n=0; for __t_d in /proc/[0-9]*; do',
  '  __t_l=; read -r __t_l <"$__t_d/stat" 2>/dev/null || continue;',
  '  case $__t_l in *") Z "*) ;; *"(sleep) "*) __t_n=$((__t_n + 1));; esac; done;',
  '  [ $__t_n -ge "$1" ] && return 0; sleep 0.01; __t_i=$((__t_i + 1)); done; echo unsettled; return 1; }',
  '__t_down() { __t_i=0; while [ $__t_i -lt 300 ]; do __t_n=0; for __t_d in /proc/[0-9]*; do',
  '  __t_l=; read -r __t_l <"$__t_d/stat" 2>/dev/null || continue;',
  '  case $__t_l in *") Z "*) ;; *"(sleep) "*) __t_n=$((__t_n + 1));; esac; done;',
  '  [ $__t_n -le "$1" ] && return 0; sleep 0.01; __t_i=$((__t_i + 1)); done; return 1; }',
  '',
}, "\n")

-- The text under test in a run: its stderr into text.err, apart from the
-- shell's own (which reports the jobs the test's kills end).
local function under_test(text)
  return "{ " .. text .. "\n} 2>>text.err"
end

-- Runs `lines` (shell lines, after PRELUDE) with `sh` as a namespace's PID
-- 1: their stdout, and what the text under test said on stderr.
local function isolated(sh, lines)
  local out = run_isolated(sh, PRELUDE .. table.concat(lines, "\n")
    .. "\n: >>text.err; echo ---stderr; cat text.err\n")
  local before, err = out:match("^(.*)%-%-%-stderr\n(.*)$")
  assert(before, out)
  return before, err
end

-- A stderr without the shell's "cannot open /proc/N/..." for a process
-- that ended while the text looked (a fault of its own: "says nothing of a
-- process that ends while it looks"), which the other tests leave aside,
-- and without bash's reports of the test shell's jobs the text killed
-- ("bash: line 19:     2 Killed   sleep 100").
local function but_vanished(err)
  return (err:gsub("[^\n]*/proc/%d+/%a+[^\n]*\n", ""):gsub("bash: line %d+: +%d+ %u[^\n]*\n", ""))
end

-- __t_live's lines as { [pid] = { state, ppid, pgrp, session, comm } }.
local function live(text)
  local procs = {}
  for pid, state, ppid, pgrp, sid, comm in text:gmatch("(%d+) (%S+) (%d+) (%d+) (%d+) ([^\n]*)\n") do
    procs[pid] = { state = state, ppid = ppid, pgrp = pgrp, sid = sid, comm = comm }
  end
  return procs
end

local function count(procs)
  local n = 0
  for _ in pairs(procs) do n = n + 1 end
  return n
end

-- The pids of a set of processes, sorted, as one string (for a readable diff).
local function pids_of(procs)
  local list = {}
  for pid in pairs(procs) do list[#list + 1] = tonumber(pid) end
  table.sort(list)
  return table.concat(list, " ")
end

-- Runs `sh -c text x args...` (args: shell words) with `input` on its stdin,
-- `env` (assignments) before it: its stdout and stderr.
local function spawn(sh, text, args, input, env)
  local dir = helper.tmpdir()
  helper.write(dir .. "/in", input or "")
  C.execute(string.format("cd %s && %s %s -c %s x %s <in >out 2>err", dir, env or "", sh, shell.quote(text), args))
  local out, err = helper.read(dir .. "/out"), helper.read(dir .. "/err")
  helper.rm_rf(dir)
  return out, err
end

local now = require("lockup.core").monotime

describe("lockup.shell", function()
  for _, sh in ipairs(SHELLS) do
    describe("on " .. sh, function()
      it("has lifelines and a sweep the shell parses", function()
        assert.is_true(parses(sh, shell.lifeline("fifo")))
        assert.is_true(parses(sh, shell.lifeline("attach")))
        assert.is_true(parses(sh, shell.sweep(" 1 7 8 ")))
      end)

      it("runs a step's line: its output, then the sentinel with its code on stdout, and one on stderr", function()
        local box = {} -- a shell whose pid is not known yet: the first line
        local line = shell.command_line("printf 'a\\0b'; echo oops >&2; (exit 3)", TOKEN, nil, box)
        local out, err = run(sh, line)
        assert.equal("a\0b\1" .. TOKEN .. " 3\n", out)
        assert.equal("oops\n\1" .. TOKEN .. " 0\n", err)
      end)

      it("writes a step's stdin byte for byte (NULs, %, quotes, a leading -)", function()
        local all = {}
        for b = 0, 255 do all[#all + 1] = string.char(b) end
        local data = "-" .. table.concat(all):rep(70) .. "%s%%'\\"
        local dir = helper.tmpdir()
        local writer = shell.stdin_writer(data, dir .. "/stdin")
        local line = shell.step_line(writer, "/dev/null", TOKEN, {})
        local out = run(sh, line)
        assert.equal("\1" .. TOKEN .. " 0\n", out)
        assert.equal(data, helper.read(dir .. "/stdin"))
        helper.rm_rf(dir)
      end)

      it("probes: the OOM count, its pid, the pids it sees", function()
        local out = run(sh, "\\exec 7>&1 8>&2;" .. shell.PROBE .. "\n")
        assert.matches("^%d+ %d+ [%d ]+\n$", out)
      end)

      it("notes the baseline a reset compares with, in its sections", function()
        local out = run(sh, "__lk_bad=complaint; __lk_modes='755 1777'; " .. shell.BASELINE .. "\n")
        local complaint, modes, fingerprint, soft, env = out:match("^([^\n]*)\n([^\n]*)\n(.-)\n%-%-\n(.-)%-%-\n(.*)$")
        assert.equal("complaint", complaint)
        assert.equal("755 1777", modes)
        assert.matches("^0?%d%d%d\n", fingerprint) -- the umask first
        assert.matches("signals %x+\nsignals %x+$", fingerprint)
        assert.matches("^n %d+\n", soft:match("n %d+\n"))
        assert.matches("PATH", env, 1, true)
      end)

      -- The sweep's pids and spared sessions are those of processes the text
      -- starts: the text writes them into the sweep (its placeholders), then
      -- runs it in the namespace's PID 1, under `set -f`.
      it("sweeps every process but its pids and those of the spared sessions", function()
        if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
        local dir = helper.tmpdir()
        helper.write(dir .. "/sweep", shell.sweep(" 1 @KEEP@ ", " @SPARE@ ") .. "\n")
        local out, err = isolated(sh, {
          "cd " .. dir,
          "sleep 100 & K=$!", -- in pids
          "setsid sh -c 'sleep 100 & exec sleep 100' & S=$!", -- a session of its own, with a child: spared
          "sleep 100 & O=$!",
          "sh -c 'sleep 100 & exec sleep 100' & O2=$!",
          "__t_settle 6",
          "sed \"s/@KEEP@/$K/; s/@SPARE@/$S/\" sweep >sweep.sh",
          "set -f",
          under_test(". ./sweep.sh"),
          "case $- in *f*) echo noglob;; esac; set +f",
          "echo \"ids $K $S $O $O2\"",
          "wait $O; echo \"O $?\"; wait $O2; echo \"O2 $?\"",
          "__t_live",
        })
        helper.rm_rf(dir)
        assert.equal("", but_vanished(err))
        local k, sid, o, o2 = out:match("ids (%d+) (%d+) (%d+) (%d+)\n")
        assert.truthy(k, out)
        assert.matches("noglob\n", out, 1, true) -- set -f is put back
        assert.matches("\nO 137\nO2 137\n", out, 1, true)
        local procs = live(out:match("O2 137\n(.*)$"))
        assert.equal(3, count(procs), out) -- K, S and S's child
        assert.equal("sleep", procs[k] and procs[k].comm, out)
        assert.equal(sid, procs[sid] and procs[sid].sid, out)
        for pid, p in pairs(procs) do
          assert.is_true(pid == k or p.sid == sid, out) -- the spared session's child too
          assert.is_true(pid ~= o and pid ~= o2, out)
        end
      end)

      -- A step's process that writes a newline into its name (/proc/N/comm,
      -- 15 bytes) makes the first line of its stat end early, with fields of
      -- its choosing: there, a spared session's id.
      it("spares no process that forges a spared session in its name", function()
        if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
        local dir = helper.tmpdir()
        helper.write(dir .. "/sweep", shell.sweep(" 1 ", " @SPARE@ ") .. "\n")
        local out = isolated(sh, {
          "cd " .. dir,
          "setsid sleep 100 & S=$!",
          "mkfifo ff",
          [[sh -c 'printf "x) S 1 1 %s \n_" "$1" >/proc/$$/comm; exec 3<>ff; read x <&3' forger $S & F=$!]],
          "__t_settle 1",
          "__t_i=0; while [ $__t_i -lt 300 ]; do read -r l </proc/$F/stat; case $l in *'(x)'*) break;; esac; "
            .. "sleep 0.01; __t_i=$((__t_i + 1)); done",
          "sed \"s/@SPARE@/$S/\" sweep >sweep.sh",
          under_test(". ./sweep.sh"),
          "echo \"forged: $l\"",
          "sleep 0.2", -- a process just sent SIGKILL may still show R for a moment
          -- the state from /proc/N/status, whose Name escapes the newline
          "for p in $S $F; do while read -r k v _; do [ \"$k\" = State: ] && echo \"$p $v\"; done "
            .. "</proc/$p/status; done",
          "echo \"ids $S $F\"",
        })
        helper.rm_rf(dir)
        local s, f = out:match("ids (%d+) (%d+)\n")
        assert.truthy(s, out)
        assert.matches("forged: " .. f .. " (x) S 1 1 " .. s .. "\n", out, 1, true)
        assert.matches("\n" .. s .. " S\n", out, 1, true) -- the spared session lives on
        -- the forger must not: killed (a zombie, or reaped already by PID 1)
        assert.is_nil(out:find("\n" .. f .. " [^Z]"), out)
      end)

      -- The process box:spawn started (P, a session leader, with children), a
      -- daemon it started that left the session but kept the token, and
      -- processes with other tokens (or none), which must live on.
      for _, sig in ipairs { 9, 15 } do
        it("proc_kill sends " .. sig .. " to a process's session and to the processes with its token only", function()
          if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
          local out, err = isolated(sh, {
            "LOCKUP_PROC=" .. TOKEN .. " setsid sh -c "
              .. "'sleep 100 & env -u LOCKUP_PROC sleep 100 & setsid sleep 100 & exec sleep 100' & P=$!",
            "LOCKUP_PROC=" .. TOKEN:reverse() .. " sleep 100 & U1=$!",
            "LOCKUP_PROC=" .. TOKEN .. "0 sleep 100 & U2=$!",
            "X_LOCKUP_PROC=" .. TOKEN .. " sleep 100 & U3=$!",
            "sleep 100 & U4=$!",
            "__t_settle 8",
            "echo \"ids $P $U1 $U2 $U3 $U4\"",
            "__t_live",
            "echo --",
            under_test(shell.proc_kill("$P", TOKEN, sig)),
            "wait $P; echo \"P $?\"",
            "__t_down 4",
            "__t_live",
          })
          assert.equal("", but_vanished(err))
          local ids = { out:match("^ids (%d+) (%d+) (%d+) (%d+) (%d+)\n") }
          assert.equal(5, #ids, out)
          local p = table.remove(ids, 1)
          local before, status, after = out:match("^ids [^\n]*\n(.-)%-%-\nP (%d+)\n(.*)$")
          before, after = live(before), live(after)
          assert.equal(8, count(before), out)
          -- the daemon: its own session and group, a child of P
          local daemon = 0
          for pid, proc in pairs(before) do
            if proc.sid == pid and proc.pgrp == pid and proc.ppid == p then daemon = daemon + 1 end
          end
          assert.equal(1, daemon, out)
          assert.equal(tostring(128 + sig), status)
          table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
          assert.equal(table.concat(ids, " "), pids_of(after))
        end)
      end

      -- A process that ends between the /proc glob and the read of its files
      -- (common in a box being swept): here /proc is a directory that has a
      -- process's entry but none of its files. The `2>/dev/null` written after
      -- `<file` comes too late for the shell's own "cannot open" message.
      it("says nothing of a process that ends while it looks", function()
        if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
        local out, err = isolated(sh, {
          "mkdir -p fake/4242 && mount --bind fake /proc || echo no mount",
          under_test(shell.sweep(" 1 ", " 7 ")),
          under_test(shell.proc_kill(4343, TOKEN, 15)),
          under_test(shell.relay_end(4242, 1, 2)),
        })
        assert.equal("", out)
        assert.equal("", err)
      end)

      it("has a watchdog that kills the process and all it started after its time", function()
        if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
        local text = shell.watchdog(sh, 1, TOKEN) .. "sleep 100 & exec sleep 100"
        local t0 = now()
        local out = isolated(sh, {
          "LOCKUP_PROC=" .. TOKEN .. " setsid " .. sh .. " -c " .. shell.quote(text) .. " & P=$!",
          "__t_settle 3",
          "echo \"P=$P\"",
          "__t_live",
          "wait $P; echo \"P $?\"",
          "__t_i=0; while [ $__t_i -lt 300 ] && [ -n \"$(__t_live)\" ]; do sleep 0.01; __t_i=$((__t_i + 1)); done",
          "__t_live",
        })
        local elapsed = now() - t0
        local p, started, rest = out:match("^P=(%d+)\n(.-)(P %d+\n.*)$")
        assert.truthy(p, out)
        -- the sleep, its child, the watchdog (in its session, not its child: PID 1 adopted it) and its own sleep
        started = live(started)
        assert.equal(4, count(started), out)
        local watchdogs = 0
        for _, proc in pairs(started) do
          if proc.ppid ~= p and proc.sid == p and proc.comm ~= "sleep" then watchdogs = watchdogs + 1 end
        end
        assert.equal(1, watchdogs, out)
        assert.equal("P 137\n", rest) -- and then nothing lives on
        assert.is_true(elapsed >= 0.9 and elapsed < 4, "killed after " .. elapsed .. " s")
      end)

      it("has a watchdog that goes away soon after the process ends by itself", function()
        if not ISOLATED then return pending("no PID namespace here (unshare -fp --mount-proc)") end
        local text = shell.watchdog(sh, 5, TOKEN) .. "exec sleep 0.2"
        local t0 = now()
        local out = isolated(sh, {
          "LOCKUP_PROC=" .. TOKEN .. " setsid " .. sh .. " -c " .. shell.quote(text) .. " & P=$!",
          "wait $P; echo \"P $? $P\"",
          "__t_live >live",
          "while read -r p _; do printf 'left %s\\n' \"$(tr '\\0' ' ' </proc/$p/cmdline)\"; done <live",
          "sleep 1.3",
          "echo after",
          "__t_live",
        })
        local elapsed = now() - t0
        local p = out:match("^P 0 (%d+)\n")
        assert.truthy(p, out)
        assert.matches("\nleft [^\n]* lockup%-watchdog " .. p .. " \n", out) -- it was there
        assert.matches("\nafter\n$", out) -- and it went away
        assert.is_true(elapsed < 3, "took " .. elapsed .. " s")
      end)

      it("spawns: its pid first, then the command in its place, with its arguments", function()
        local cmd = sh .. " -c 'echo $$; printf \"[%s]\" \"$@\"' y a 'b c'"
        local out, err = spawn(sh, shell.SPAWN, cmd)
        local pid = out:match("^(%d+)\n")
        assert.equal(pid .. "\n" .. pid .. "\n[a][b c]", out)
        assert.equal("", err)
        -- on a terminal: columns and rows first (no terminal here: stty fails, quietly)
        out, err = spawn(sh, shell.SPAWN_TTY, "80 24 " .. cmd)
        pid = out:match("^(%d+)\n")
        assert.equal(pid .. "\n" .. pid .. "\n[a][b c]", out)
        assert.equal("", err)
      end)

      it("spawns with a relay: its pid and the relay's first, stdin passed on whole, no FIFO left", function()
        local data = helper.all_bytes():rep(400) -- more than a pipe holds
        local tmp = helper.tmpdir()
        local out, err = spawn(sh, shell.SPAWN_RELAYED, sh .. " -c 'echo $$; exec cat' y", data, "TMPDIR=" .. tmp)
        assert.equal("", err)
        local pid, relay, pid2, rest = out:match("^(%d+) (%d+)\n(%d+)\n(.*)$")
        assert.truthy(pid, out:sub(1, 100))
        assert.equal(pid, pid2)
        assert.are_not.equal(pid, relay)
        assert.is_true(data == rest, "stdin passed on altered: " .. #rest .. " bytes of " .. #data)
        assert.equal("", (helper.sh("ls -A " .. tmp)))
        -- the relay ended (a zombie until the host's init reaps it, which may take a while)
        local stat = helper.read("/proc/" .. relay .. "/stat")
        assert.is_true(stat == nil or stat:match("^%d+ %(.*%) (%u)") == "Z", stat)
        helper.rm_rf(tmp)
      end)

      -- A relay `cat` from the FIFO `feed` into the FIFO `mid`, started by a
      -- shell the test writes to line by line, to learn the relay's pid; `mid`
      -- has a reader (`cat`) or none (the shell holds it open unread). Its
      -- output ("relay CODE"), relay_end's stderr, how long relay_end and what
      -- follows took, what the reader got and what was sent.
      local function relay_case(reads, n, tries)
        local dir = helper.tmpdir()
        local data = helper.all_bytes():rep(math.ceil(n / 256)):sub(1, n)
        helper.write(dir .. "/data", data)
        local p = assert(io.popen(string.format("cd %s && exec %s >out 2>/dev/null", dir, sh), "w"))
        p:write("mkfifo feed mid\n", reads and "cat <mid >got &\n" or "exec 4<>mid\n",
          "cat <feed >mid & r=$!\nexec 3<>feed\necho $r >relay.pid\n")
        p:flush()
        local relay = helper.eventually(function()
          return tonumber((helper.read(dir .. "/relay.pid") or ""):match("^(%d+)\n"))
        end, 5)
        if not relay then p:close() end
        assert.truthy(relay, "no relay")
        local t0 = now()
        p:write("cat data >&3\n", under_test(shell.relay_end(relay, n, tries)), "\n",
          "exec 3>&- 4>&-\nwait $r; echo \"relay $?\"\nwait\n")
        p:close()
        local elapsed = now() - t0
        local out, err, got = helper.read(dir .. "/out"), helper.read(dir .. "/text.err"), helper.read(dir .. "/got")
        helper.rm_rf(dir)
        return out, err, elapsed, got, data
      end

      it("ends a relay once it has passed on all that was sent", function()
        local out, err, elapsed, got, data = relay_case(true, 100000, 100)
        assert.equal("", err)
        assert.equal("relay 143\n", out) -- killed (TERM)
        assert.is_true(got == data, "the reader got " .. #got .. " bytes of " .. #data)
        assert.is_true(elapsed < 0.5, "took " .. elapsed .. " s (it gives up after 1 s)")
      end)

      it("ends a relay after its tries when the process does not read", function()
        local out, err, elapsed = relay_case(false, 100000, 30)
        assert.equal("", err)
        assert.equal("relay 143\n", out)
        assert.is_true(elapsed >= 0.3 and elapsed < 3, "took " .. elapsed .. " s")
      end)

      it("lists the processes: its own pid, then each one's stat line and command line", function()
        local out = run(sh, table.concat({
          "sleep 12345 & s=$!",
          "i=0; while [ $i -lt 300 ]; do read -r l </proc/$s/stat; case $l in *'(sleep) '*) break;; esac; "
            .. "sleep 0.01; i=$((i + 1)); done",
          "echo \"ids $$ $s\"",
          shell.PROCESSES,
          "kill $s; wait $s",
        }, "\n") .. "\n")
        local me, s, list = out:match("^ids (%d+) (%d+)\n(.*)$")
        assert.truthy(me, out)
        assert.equal(me, list:match("^(%d+)\n\2"))
        local argv
        for stat, cmdline in list:gmatch("\2([^\n]*)\n([^\2]*)") do
          if stat:match("^ *(%d+) ") == s then
            assert.matches("^ *%d+ %(sleep%) S " .. me .. " ", stat)
            argv = {}
            for a in cmdline:gmatch("([^%z]*)%z") do argv[#argv + 1] = a end
          end
        end
        assert.same({ "sleep", "12345" }, argv)
      end)
    end)
  end

  it("defines bash's step function read-only, and says so", function()
    local out = run("bash", shell.definition(12345) .. "\n")
    assert.equal(shell.STEP_FN .. " unalias", out)
  end)

  it("quotes any bytes for the shell", function()
    for _, sh in ipairs(SHELLS) do
      local s = "it's \"a\" $HOME `x` \\ \n end"
      local out = run(sh, "printf '%s' " .. shell.quote(s) .. "\n")
      assert.equal(s, out)
    end
  end)
end)
