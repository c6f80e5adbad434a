-- The hostile-input suite, against the real Engine: what a command that tries
-- to hurt the box, the Lua process or the host gets back, and that the host is
-- fine afterwards (this Lua process still works, a fresh box runs `echo ok`,
-- and no container of ours is left once its box is stopped).
-- Durations asserted below are hang guards, not timings.
local helper = require "helper"
local C = require "support.compat"
local lockup = require "lockup"
local core = require "lockup.core"

local now = core.monotime
local MiB = 1024 * 1024

local docker, owner, before
local base_heap -- KB, when the suite began: the specs before it in the same process hold what they hold
-- Under gVisor (LOCKUP_TEST_RUNTIME=runsc) a box is a sandbox whose kernel is
-- the Sentry, a process in the container's cgroups: some limits and reports
-- differ, and each test that sees it says how.
local GVISOR = helper.RUNTIME == "runsc"
-- The pids limit of the fork bomb tests: gVisor's own host threads (Sentry,
-- gofer, ptrace stubs) count in the pids cgroup, and with 64 its shell may not
-- even start ("the box's shell exited (code 2)").
local BOMB_PIDS = GVISOR and 128 or 64
-- The args of every process in the box, one a line: a portable `ps -o args`
-- (the hostile suite also runs under images without ps, e.g. debian-lua:local).
local PROCS = [[for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f"; echo; done 2>/dev/null]]
local opened = {} -- boxes of the running test, stopped by after_each whatever happened

local function start(opts)
  opts = opts or {}
  opts.image, opts.runtime = helper.IMAGE, helper.RUNTIME
  local box, err = docker:start(opts)
  assert(box, err)
  opened[#opened + 1] = box
  return box
end

-- Stops a box and checks its container is gone when stop returns.
local function stop(box)
  local t0 = now()
  local ok, err = box:stop()
  assert.is_true(ok, err)
  assert.is_true(now() - t0 < 20, "stop took " .. (now() - t0) .. " s")
  assert.is_false(helper.exists(box.id))
end

-- The host after a hostile case.
local function host_fine()
  for _, b in ipairs(opened) do b:stop() end
  -- LuaJIT halves its string buffer (50 MB after a 50 MB string.rep) once
  -- per full cycle, and counts it: a few cycles give it back
  for _ = 1, 6 do collectgarbage() end
  -- the Lua process works and its heap is back within a few MB of where it
  -- was (count is in KB)
  assert.equal("okok", ("ok"):rep(2))
  assert.is_true(collectgarbage("count") < base_heap + 24 * 1024, "Lua heap at " .. collectgarbage("count")
    .. " KB, " .. base_heap .. " KB when the suite began")
  local fresh = assert(docker:start { image = helper.IMAGE, runtime = helper.RUNTIME })
  local r = assert(fresh:run("echo ok"))
  assert.equal("ok\n", r.stdout)
  assert.equal("", r.stderr)
  assert.equal(0, r.code)
  stop(fresh)
  assert.same(before, helper.boxes(owner)) -- nothing of ours leaked
end

local function status_field(name)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(name .. ":%s*(%d+)")) -- kB
end

-- The pids cgroup (v1, cgroupfs driver) of a container, when the host has it.
local function pids_current(id)
  local f = io.open("/sys/fs/cgroup/pids/docker/" .. id .. "/pids.current")
  if not f then return nil end
  local v = tonumber(f:read("l"))
  f:close()
  return v
end

-- The fields named in `keys` from the text of a /proc/<pid>/status file.
local function status_lines(stdout, keys)
  local t = {}
  for line in stdout:gmatch("[^\n]+") do
    local k, v = line:match("^(%w+):%s*(.-)%s*$")
    if k and keys[k] then t[k] = v end
  end
  return t
end

-- no_new_privs is set for the box: its /proc/self/status says so, or under
-- gVisor, whose status file has no NoNewPrivs line, the Engine's record does.
local function assert_no_new_privs(box, s)
  if GVISOR and s.NoNewPrivs == nil then
    local info = assert(helper.inspect(box.id))
    assert.is_truthy(table.concat(info.HostConfig.SecurityOpt or {}, " "):find("no-new-privileges", 1, true))
  else
    assert.equal("1", s.NoNewPrivs)
  end
end

-- The shared set-up of both suites below: the connection, and every box a
-- test opened stopped after it.
local function fixtures()
  setup(function()
    docker = helper.docker()
    owner = helper.owner()
    before = helper.boxes(owner)
    for _ = 1, 6 do collectgarbage() end
    base_heap = collectgarbage("count")
  end)

  after_each(function()
    for _, b in ipairs(opened) do b:stop() end
    opened = {}
  end)
end

describe("hostile commands", function()
  fixtures()

  describe("a fork bomb", function()
    it("returns within seconds, stays inside `pids`, and the box stops", function()
      local box = start { pids = BOMB_PIDS }
      local t0 = now()
      local r, err = box:run("f(){ f|f& }; f", { timeout = 5 })
      assert.is_true(now() - t0 < 10, "the step took " .. (now() - t0) .. " s")
      assert(r or err) -- a result (the bomb runs in the background) or a clear error
      lockup.sleep(1)
      local n = pids_current(box.id)
      if n then assert.is_true(n <= BOMB_PIDS, n .. " processes in a box limited to " .. BOMB_PIDS) end
      stop(box)
      host_fine()
    end)

    -- The sweep runs through the exec API, and an exec needs a pid of the
    -- container's own: with the pids used up it fails, and kill_processes says so.
    it("is ended by box:kill_processes(), or that says it could not", function()
      local box = start { pids = BOMB_PIDS }
      assert(box:run("f(){ f|f& }; f", { timeout = 5 }))
      lockup.sleep(1)
      local ok, err = box:kill_processes()
      if ok then
        lockup.sleep(0.5)
        local n = pids_current(box.id)
        if n then assert.is_true(n < 16, n .. " processes still in the box after kill_processes() said true") end
        for i = 1, 5 do
          local r = assert(box:run(("echo ok%d; ls / >/dev/null && echo forked"):format(i)))
          assert.equal(("ok%d\nforked\n"):format(i), r.stdout)
        end
      else
        assert.is_string(err)
      end
      stop(box)
      host_fine()
    end)

    -- A forked child of the session shell (a background job, a pipeline part)
    -- in which an error is raised -- "can't fork" under a fork bomb, a syntax
    -- error in `eval` -- unwinds out of the step's `command eval` into the rest
    -- of the step's line: a guard there makes every process but the session
    -- shell exit before the sentinel, so it cannot print it or read later steps.
    it("cannot split the session: a failing background job leaves one shell", function()
      local box = start()
      assert(box:run("{ eval 'if'; } &"))
      assert(box:run("sleep 0.5"))
      for i = 1, 6 do
        local r = assert(box:run("v=" .. i))
        assert.is_nil(r.stdout:find("\1", 1, true), "a raw sentinel in stdout: " .. tostring(r))
        r = assert(box:run('echo "v=$v"'))
        assert.equal(("v=%d\n"):format(i), r.stdout)
      end
      stop(box)
      host_fine()
    end)
  end)

  describe("a memory bomb", function()
    -- Under gVisor the Sentry (the box's kernel) is charged for the step's
    -- memory and is what the OOM killer takes: the whole box ends with the
    -- step. Mostly the Engine reports that OOM kill; once in two full runs the
    -- sandbox exited with code 2 instead, and nothing reported an OOM.
    it("in a step: the step reports oom = true and the box goes on (under gVisor: ends)", function()
      local box = start { memory = "64m" }
      assert(box:run("cd /tmp; x=kept"))
      local r = assert(box:run("head -c 400000000 /dev/zero | sort", { timeout = 60 }))
      if not GVISOR or r.code == 137 then
        assert.is_true(r.oom, tostring(r))
        assert.equal("oom", r.status)
      end
      assert.is_false(r.ok)
      assert.not_equal(0, r.code)
      if GVISOR then
        assert.is_true(r.exited, tostring(r))
        local again, err = box:run("echo $x")
        assert.is_nil(again)
        assert.matches(r.oom and "memory" or "exited", err)
      else
        assert.is_nil(r.exited)
        r = assert(box:run("echo $x $(pwd)"))
        assert.equal("kept /tmp\n", r.stdout)
      end
      stop(box)
      host_fine()
    end)

    -- died_of_oom() asks the Engine's event log (GET /events); with exactly one
    -- "oom" event the body is one JSON document, decoded as a table.
    it("in the shell itself: exited, oom = true, later calls nil, err", function()
      local box = start { memory = "64m" }
      local r, err = box:run("a=x; while :; do a=$a$a; done", { timeout = 60 })
      assert(r, err)
      assert.is_true(r.exited, tostring(r))
      assert.is_false(r.ok)
      assert.is_true(r.duration < 30)
      local again
      again, err = box:run("echo again")
      assert.is_nil(again)
      assert.is_string(err)
      assert.matches("memory", err)
      assert.is_true(r.oom, "oom flag missing: " .. tostring(r) .. " / " .. err)
      stop(box)
      host_fine()
    end)
  end)

  describe("an endless step", function()
    it("a loop in the shell itself: timed_out, box_stopped, later calls say why", function()
      local box = start()
      local r = assert(box:run("while :; do :; done", { timeout = 1 }))
      assert.is_true(r.timed_out)
      assert.is_true(r.box_stopped)
      assert.is_false(r.ok)
      assert.is_true(r.duration < 10, "took " .. r.duration .. " s")
      local again, err = box:run("echo again")
      assert.is_nil(again)
      assert.matches("timeout", err)
      assert.is_true(helper.eventually(function() return not helper.exists(box.id) end, 10))
      stop(box)
      host_fine()
    end)

    it("`sleep 100`: timed_out, the sleep is killed and the box goes on", function()
      local box = start()
      assert(box:run("x=kept"))
      local r = assert(box:run("sleep 100", { timeout = 1 }))
      assert.is_true(r.timed_out)
      assert.is_nil(r.box_stopped)
      assert.is_true(r.duration < 10, "took " .. r.duration .. " s")
      r = assert(box:run("echo $x; " .. PROCS .. " | grep -c '[s]leep 100'"))
      assert.equal("kept\n0\n", r.stdout)
      stop(box)
      host_fine()
    end)
  end)

  describe("an output flood", function()
    it("`yes` stops at max_output: truncated, stdout exactly at the cap, the box goes on", function()
      local box = start { max_output = 1000 }
      local r = assert(box:run("yes"))
      assert.is_true(r.truncated)
      assert.equal(("y\n"):rep(500), r.stdout)
      r = assert(box:run("yes", { max_output = MiB }))
      assert.is_true(r.truncated)
      assert.equal(MiB, #r.stdout)
      assert.is_true(r.stdout == ("y\n"):rep(math.floor(MiB / 2)))
      r = assert(box:run("yes >&2", { max_output = 3 }))
      assert.equal("y\ny", r.stderr)
      assert.is_true(r.truncated)
      r = assert(box:run("echo ok; " .. PROCS .. " | grep -c '[y]es'"))
      assert.equal("ok\n0\n", r.stdout)
      stop(box)
      host_fine()
    end)

    it("a flood into a callback ends by its timeout, however fast it comes", function()
      local box = start()
      local n = 0
      local t0 = now()
      -- a callback slower than the box: reads never run dry, so no wait ever times out
      local function slow(chunk)
        n = n + #chunk
        local spin = os.clock() + 0.001
        while os.clock() < spin do end
      end
      local r = assert(box:run("dd if=/dev/zero bs=1048576 count=400 2>/dev/null", { timeout = 2, on_stdout = slow }))
      local took = now() - t0
      assert.is_true(r.timed_out, tostring(r))
      assert.is_true(n > 0)
      assert.is_true(took < 2 + 2 + 3, "the step took " .. took .. " s") -- timeout, grace, a sweep
      assert.equal("ok\n", assert(box:run("echo ok")).stdout)
      stop(box)
      host_fine()
    end)

    it("keeps this process's memory bounded while it floods for seconds", function()
      -- Under AddressSanitizer freed memory sits in its quarantine (256 MB
      -- unless ASAN_OPTIONS says otherwise) before it is reused: allow for it.
      local asan = (os.getenv("LD_PRELOAD") or ""):find("asan") or helper.cpath():find("asan")
      local allowance = 32 * 1024 -- kB
      if asan then
        local q = tonumber((os.getenv("ASAN_OPTIONS") or ""):match("quarantine_size_mb=(%d+)"))
        allowance = allowance + (q or 256) * 1024
      end
      local box = start()
      collectgarbage()
      collectgarbage()
      local rss0, lua0 = status_field("VmRSS"), collectgarbage("count")
      local rss_peak, lua_peak = rss0, lua0
      local steps, done, shell_flood = 0, false, nil
      lockup.run(function()
        -- done however this ends: the watcher below would wait for it forever
        local ok, err = pcall(function()
          local t0 = now()
          while now() - t0 < 6 do -- `yes` again and again, each cut at 1 MiB
            local r = assert(box:run("yes", { max_output = MiB }))
            assert(r.truncated and #r.stdout == MiB, tostring(r))
            steps = steps + 1
            -- on the attach lane the kill is an exec, which dockerd busy with
            -- the flood can start too late for the grace: the box is then
            -- stopped, as promised, and the flood goes on in another
            if r.box_stopped then box = start() end
          end
          -- then a flood from the shell itself, which killing processes cannot
          -- stop: lockup reads and drops it until the box is stopped
          shell_flood = assert(box:run("while :; do echo yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy; done",
            { max_output = MiB }))
        end)
        done = true
        if not ok then error(err, 0) end
      end, function()
        while not done do
          rss_peak = math.max(rss_peak, status_field("VmRSS"))
          lua_peak = math.max(lua_peak, collectgarbage("count"))
          lockup.sleep(0.02)
        end
      end)
      assert.is_true(steps >= 3, "only " .. steps .. " flood steps in 6 s")
      assert.is_true(shell_flood.truncated)
      assert.is_true(shell_flood.box_stopped)
      assert.equal(MiB, #shell_flood.stdout)
      shell_flood = nil -- luacheck: ignore 311 (dropping the 1 MiB before measuring the heap)
      assert.is_true(rss_peak - rss0 < allowance,
        ("RSS grew by %.0f kB during the flood (allowed %.0f kB)"):format(rss_peak - rss0, allowance))
      -- a peak of garbage, not of what is kept (the check after collecting
      -- says so): LuaJIT's collector lets it pile up longer (32954 kB seen
      -- there in a full run with the epoll loop; 5.4 stays under 32 MiB)
      local heap_bound = (C.JIT and 48 or 32) * 1024
      assert.is_true(lua_peak - lua0 < heap_bound, ("Lua heap grew by %.0f kB"):format(lua_peak - lua0))
      collectgarbage()
      collectgarbage()
      assert.is_true(collectgarbage("count") - lua0 < 1024)
      stop(box)
      host_fine()
    end)

    it("a single 50 MB line comes back exact, with max_output = 64m and with the default cap", function()
      local box = start()
      local n = 50 * 1000 * 1000
      local expected = ("a"):rep(n) .. "\n"
      for _, max in ipairs { 64 * MiB, false } do
        local r = assert(box:run(("head -c %d /dev/zero | tr '\\0' a; echo"):format(n),
          { max_output = max or nil, timeout = 60 }))
        assert.equal(0, r.code)
        assert.is_nil(r.truncated)
        assert.equal(n + 1, #r.stdout)
        assert.is_true(r.stdout == expected, "the 50 MB line differs")
        assert.equal("", r.stderr)
      end
      expected = nil -- luacheck: ignore 311 (dropping the 50 MB)
      stop(box)
      host_fine()
    end)
  end)

  -- Issue 19: a deadline holds whoever relays the flood. Each call returns
  -- within its timeout plus 1 s, however fast the box writes, with callbacks
  -- or without, and the box is usable after (or says it was stopped).
  describe("a deadline under a flood", function()
    local FLOODS = {
      stdout = "yes",
      stderr = "yes >&2",
      both = "yes & yes >&2",
      -- a process that ignores SIGTERM and forks, under the flood
      forker = "trap '' TERM; (trap '' TERM; while :; do sleep 1; done) & (trap '' TERM; sleep 600) & yes",
    }
    local function drop() end
    local function call(box, how, cmd, opts)
      if how == "run" then return box:run(cmd, opts) end
      return box:exec({ "sh", "-c", cmd }, opts)
    end
    for _, how in ipairs { "run", "exec" } do
      for _, flood in ipairs { "stdout", "stderr", "both", "forker" } do
        for _, callbacks in ipairs { true, false } do
          it(string.format("box:%s of a %s flood, %s callbacks: within its timeout plus 1 s", how, flood,
            callbacks and "with" or "without"), function()
            local box = start()
            local opts = { timeout = 1 }
            if callbacks then opts.on_stdout, opts.on_stderr = drop, drop else opts.max_output = 4 * MiB end
            local t0 = now()
            local r, err = call(box, how, FLOODS[flood], opts)
            local took = now() - t0
            assert(r, err)
            assert.is_true(took < 2, string.format("box:%s took %.2f s (timeout 1 s)", how, took))
            assert.is_true(r.status == "timeout" or r.status == "truncated", tostring(r))
            assert.equal(r.status == "timeout", r.timed_out == true)
            if callbacks then assert.equal("", r.stdout .. r.stderr) end
            if r.box_stopped then
              assert.is_nil(box:run("true"))
            else -- usable, and nothing of the step left running
              assert.equal("ok\n", assert(box:run("echo ok")).stdout)
              local procs -- killed (SIGKILL), and gone once the machine has run their exit
              assert.is_truthy(helper.eventually(function()
                procs = assert(box:run(PROCS)).stdout
                return not (procs:find("yes", 1, true) or procs:find("sleep", 1, true))
              end, 5), procs)
            end
            stop(box)
          end)
        end
      end
    end

    -- Files and the exec API while processes of an earlier step flood the
    -- session's stdout and stderr (nobody reads them between steps): each
    -- call is done long before its timeout, and the box stops within its bound.
    it("files in and out, exec and stop while the box floods its session's output", function()
      local box = start()
      assert(box:run("yes >/dev/null & (yes & yes >&2) &"))
      local t0 = now()
      assert(box:put("f.txt", "hello", { timeout = 5 }))
      assert.equal("hello", assert(box:get("f.txt", { timeout = 5 })))
      local host = helper.tmpdir() .. "/f"
      assert(box:get_file("f.txt", host, { timeout = 5 }))
      assert(box:put_file(host, "g.txt", { timeout = 5 }))
      assert.equal("hello\n", assert(box:exec({ "sh", "-c", "cat g.txt; echo" }, { timeout = 5 })).stdout)
      assert.is_true(now() - t0 < 25, "the file calls took " .. (now() - t0) .. " s")
      t0 = now()
      stop(box)
      assert.is_true(now() - t0 < 11, "stop took " .. (now() - t0) .. " s")
    end)
  end)

  describe("the filesystem", function()
    it("a full tmpfs: non-zero code, stderr says no space, the box goes on", function()
      local box = start { disk = "16m" }
      -- busybox head reports ENOSPC only as "standard output: I/O error"
      local r = assert(box:run("head -c 400000000 /dev/zero > /tmp/f"))
      assert.not_equal(0, r.code)
      assert.not_equal("", r.stderr)
      r = assert(box:run("rm /tmp/f; cat /dev/zero > /tmp/f"))
      assert.not_equal(0, r.code)
      assert.matches("No space left on device", r.stderr)
      r = assert(box:run("ls -l /tmp/f | awk '{print $5}'"))
      assert.equal(tostring(16 * MiB) .. "\n", r.stdout)
      r = assert(box:run("dd if=/dev/zero of=/work/g bs=1M count=400"))
      assert.not_equal(0, r.code)
      assert.matches("No space left on device", r.stderr)
      r = assert(box:run("rm /tmp/f /work/g && echo x > /tmp/small && cat /tmp/small"))
      assert.equal("x\n", r.stdout)
      assert.equal(0, r.code)
      stop(box)
      host_fine()
    end)

    it("writing outside the writable mounts: read-only file system", function()
      local box = start()
      for _, path in ipairs { "/etc/x", "/x", "/bin/x" } do
        local r = assert(box:run("touch " .. path))
        assert.equal(1, r.code)
        -- gVisor checks the user's rights before the mount's read-only flag:
        -- nobody gets EACCES there (root gets EROFS: see user = 'root'), and
        -- /proc/mounts below shows the mount read-only
        assert.matches(GVISOR and "Permission denied" or "Read%-only file system", r.stderr)
      end
      local r = assert(box:run("echo x > /etc/passwd"))
      assert.not_equal(0, r.code)
      r = assert(box:run("grep ' / ' /proc/mounts"))
      assert.matches("^%S+ / %S+ ro[,%s]", r.stdout)
      stop(box)
      host_fine()
    end)
  end)

  describe("the box's privileges", function()
    it("has no network but loopback (only 127.0.0.1 is ever tried)", function()
      local box = start()
      local r = assert(box:run("ls /sys/class/net"))
      assert.equal("lo\n", r.stdout)
      -- no IPv4 route at all (the header line only) and no address but loopback
      r = assert(box:run("cat /proc/net/route"))
      assert.equal(1, select(2, r.stdout:gsub("\n", "")))
      r = assert(box:run("command -v ip && command -v nc"))
      if r.code ~= 0 then
        stop(box)
        pending(helper.IMAGE .. " has no `ip` or `nc`: the address and loopback checks are left to busybox:local")
      end
      r = assert(box:run("ip -o addr | awk '{print $2, $4}'"))
      for line in r.stdout:gmatch("[^\n]+") do assert.matches("^lo ", line) end
      -- nothing listens on loopback inside: the connection is refused
      r = assert(box:run("nc -w 2 127.0.0.1 80 </dev/null"))
      assert.not_equal(0, r.code)
      assert.matches("refused", r.stderr)
      stop(box)
      host_fine()
    end)

    it("/proc/self/status: no capabilities, no_new_privs, uid and gid 65534", function()
      local box = start()
      local r = assert(box:run("cat /proc/self/status"))
      local s = status_lines(r.stdout, { CapEff = true, CapPrm = true, CapBnd = true, CapInh = true,
        CapAmb = true, NoNewPrivs = true, Uid = true, Gid = true })
      for _, k in ipairs { "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb" } do
        if not (GVISOR and k == "CapAmb" and s[k] == nil) then -- gVisor shows no CapAmb line
          assert.equal("0000000000000000", s[k], k)
        end
      end
      assert_no_new_privs(box, s)
      assert.equal("65534\t65534\t65534\t65534", s.Uid)
      assert.equal("65534\t65534\t65534\t65534", s.Gid)
      r = assert(box:run("id -u; id -g"))
      assert.equal("65534\n65534\n", r.stdout)
      stop(box)
      host_fine()
    end)
  end)

  describe("a command that attacks the session", function()
    -- kill(-1) spares its caller, the session shell, and PID 1 (a namespace's
    -- init never gets a signal it has no handler for). On the attach lane the
    -- shell's input is relayed by a `cat` that dies with the rest: the shell
    -- reads EOF and exits, so this step or the next comes back exited (137).
    -- On the fifo lane the shell reads its FIFO itself and PID 1 starts the
    -- watcher of `life` again: the box goes on, every other process killed.
    it("`kill -9 -1` on the attach lane ends the shell: exited (on this step or the next), a clear error after",
      function()
        local box = start()
        if box.lane_name ~= "attach" then return pending("the attach lane's behaviour") end
        local r, err = box:run("kill -9 -1", { timeout = 20 })
        assert(r, err)
        assert.is_true(r.duration < 15)
        if not r.exited then
          assert.equal(0, r.code)
          r, err = box:run("echo again", { timeout = 20 })
          assert(r, err)
        end
        assert.is_true(r.exited, tostring(r))
        assert.equal("", r.stdout) -- the box ran nothing more
        assert.equal(137, r.code)
        assert.equal("exited", r.status)
        assert.is_false(r.ok)
        local again
        again, err = box:run("echo again")
        assert.is_nil(again)
        assert.is_string(err)
        assert.matches("killed", err)
        stop(box)
        host_fine()
      end)

    it("`kill -9 -1` on the fifo lane kills every process but the shell; the box goes on, its lifeline too",
      function()
        local box = start()
        if box.lane_name ~= "fifo" then return pending("the fifo lane's behaviour") end
        assert(box:run("sleep 600 >/dev/null 2>&1 &"))
        local r = assert(box:run("kill -9 -1; echo after", { timeout = 20 }))
        assert.equal("after\n", r.stdout)
        assert.equal(0, r.code)
        assert.is_nil(r.exited)
        for _ = 1, 50 do -- no race: the shell is never among the killed
          assert.equal("again\n", assert(box:run("echo again")).stdout)
        end
        -- killed with SIGKILL is not yet gone: a loaded machine may take a while to run its exit
        local procs
        assert.is_truthy(helper.eventually(function()
          procs = assert(box:run(PROCS)).stdout
          return not procs:find("sleep 600", 1, true)
        end, 5), procs)
        -- twice: the watcher PID 1 started again is killed and started again
        assert.equal("", assert(box:run("kill -9 -1")).stdout)
        assert.equal("ok\n", assert(box:run("echo ok")).stdout)
        -- a timed-out step is still killed (PID 1 sweeps on a word from the new watcher)
        r = assert(box:run("sleep 600", { timeout = 1 }))
        assert.is_true(r.timed_out)
        assert.equal("ok\n", assert(box:run("echo ok")).stdout)
        -- and the lifeline holds: the host's end closed (as when this process
        -- dies), the container goes away
        box.lane:close()
        local gone = helper.eventually(function() return not helper.exists(box.id) end, 10)
        assert.is_truthy(gone, "the container outlived its lane after kill -9 -1")
        stop(box)
        host_fine()
      end)

    it("closing its own stdout and stderr: the box goes on", function()
      local box = start()
      local r = assert(box:run("exec >&- 2>&-; echo lost; echo lost >&2"))
      assert.equal("", r.stdout)
      assert.equal("", r.stderr)
      r = assert(box:run("exec 0<&- 1>/dev/null 2>&1; echo lost"))
      assert.equal("", r.stdout)
      r = assert(box:run("echo back; echo err >&2"))
      assert.equal("back\n", r.stdout)
      assert.equal("err\n", r.stderr)
      stop(box)
      host_fine()
    end)

    -- Each step gets its output through the session shell's fds 7 and 8, which
    -- a step may redirect or close for good: each command line sets them
    -- afresh from the shell's own stdout and stderr.
    it("cannot blind later steps by redirecting the session's fds 7 and 8", function()
      for _, attack in ipairs { "exec 7>/dev/null 8>/dev/null", "exec 7>&- 8>&-" } do
        local box = start()
        assert(box:run(attack))
        local r = assert(box:run("echo back; echo err >&2"))
        assert.equal("back\n", r.stdout, attack)
        assert.equal("err\n", r.stderr, attack)
        stop(box)
      end
      host_fine()
    end)

    it("look-alike sentinels and terminal escapes come back byte for byte, tostring has no raw control byte", function()
      local box = start()
      local cases = {
        { [[printf '\001aaaa 0\n'; printf '\001 0\n\001'; echo after; (exit 5)]],
          "\1aaaa 0\n\1 0\n\1after\n", "", 5 },
        { [[printf '\001aaaa 0\n' >&2; printf '\001%032d 1\n' 0 >&2]],
          "", "\1aaaa 0\n\1" .. ("0"):rep(32) .. " 1\n", 0 },
        { [[printf '\033[2J\033]0;x\007'; printf '\033[31mred\033[0m\033c' >&2]],
          "\27[2J\27]0;x\7", "\27[31mred\27[0m\27c", 0 },
        { [[printf '\r\033[1A\033[K\010\177\000\033P+q\033\\']], "\r\27[1A\27[K\8\127\0\27P+q\27\\", "", 0 },
      }
      for _, c in ipairs(cases) do
        local r = assert(box:run(c[1]))
        assert.equal(c[2], r.stdout)
        assert.equal(c[3], r.stderr)
        assert.equal(c[4], r.code)
        local s = tostring(r)
        assert.is_nil(s:find("\27", 1, true), "raw ESC in tostring: " .. s)
        assert.is_nil(s:find("[%z\1-\31\127]"), "raw control byte in tostring")
      end
      local r = assert(box:run("echo still in step"))
      assert.equal("still in step\n", r.stdout)
      stop(box)
      host_fine()
    end)

    -- What the user sees: the step that starts the ticker returns at once; a
    -- later step's stdout carries the ticks written while it ran, and those
    -- written between steps (they wait in the connection until the next step
    -- reads; some may be dropped). box:kill_processes() ends the ticker; ticks
    -- already on their way may still show up in the very next step.
    it("a daemonized process that keeps printing: later output has its ticks until kill_processes()", function()
      local box = start()
      -- the output with the ticks taken out, and how many there were
      local function ticks(s)
        return s:gsub("tick\n", "")
      end
      local r = assert(box:run("(while :; do echo tick; sleep 0.1; done) &", { timeout = 10 }))
      assert.equal(0, r.code)
      assert.is_true(r.duration < 5)
      assert.equal("", (ticks(r.stdout)))
      lockup.sleep(0.5)
      r = assert(box:run("sleep 0.5; echo later"))
      local rest, n = ticks(r.stdout)
      assert.equal("later\n", rest)
      assert.is_true(n >= 3, n .. " ticks in a step of 0.5 s, after 0.5 s between steps")
      r = assert(box:run("echo x=$((1+1))"))
      assert.equal("x=2\n", (ticks(r.stdout)))
      assert.is_true(box:kill_processes())
      assert(box:run("sleep 0.3")) -- what was already on its way
      for i = 1, 2 do
        r = assert(box:run("sleep 0.5; echo later" .. i))
        assert.equal("later" .. i .. "\n", r.stdout)
      end
      r = assert(box:run(PROCS .. " | grep -c '[s]leep 0.1'"))
      assert.equal("0\n", r.stdout)
      stop(box)
      host_fine()
    end)
  end)

  it("50 boxes at once from one lockup.run, one of them hostile: the 49 others get their exact output", function()
    local N, HOSTILE = 50, 17
    local ready, got, hostile = 0, {}, {}
    local fns = {}
    for i = 1, N do
      fns[i] = function()
        -- a start that fails still counts, or the others would wait forever
        local started, box = pcall(start, i == HOSTILE and { pids = BOMB_PIDS, memory = "64m" } or nil)
        ready = ready + 1
        while ready < N do lockup.sleep(0.02) end
        assert(started, box)
        if i == HOSTILE then
          hostile.bomb = { box:run("f(){ f|f& }; f", { timeout = 10 }) }
          hostile.loop = { box:run("a=x; while :; do a=$a$a; done", { timeout = 20 }) }
        else
          assert(box:run(("cd /tmp; x=%d"):format(i)))
          local r = assert(box:run(("yes line%d | head -n 2000; echo \"$x $(pwd)\"; echo err%d >&2; (exit %d)")
            :format(i, i, i)))
          got[i] = { r.code, r.stdout, r.stderr }
        end
        box:stop()
        return i
      end
    end
    local t0 = now()
    local results = { lockup.run(C.unpack(fns)) }
    assert.is_true(now() - t0 < 90, "50 boxes took " .. (now() - t0) .. " s")
    assert.equal(N, #results)
    assert(hostile.bomb[1] or hostile.bomb[2])
    assert(hostile.loop[1] or hostile.loop[2])
    for i = 1, N do
      if i ~= HOSTILE then
        local want = ("line%d\n"):format(i):rep(2000) .. ("%d /tmp\n"):format(i)
        assert.same({ i, want, ("err%d\n"):format(i) }, got[i], "box " .. i)
      end
    end
    host_fine()
  end)
end)

describe("opting out of the secure defaults", function()
  fixtures()

  it("user = 'root': uid 0, capabilities still dropped, root filesystem still read-only", function()
    local box = start { user = "root" }
    local r = assert(box:run("id -u; cat /proc/self/status; touch /etc/x"))
    assert.matches("^0\n", r.stdout)
    local s = status_lines(r.stdout, { CapEff = true, CapPrm = true, CapBnd = true, NoNewPrivs = true })
    assert.equal("0000000000000000", s.CapEff)
    assert.equal("0000000000000000", s.CapPrm)
    assert.equal("0000000000000000", s.CapBnd)
    assert_no_new_privs(box, s)
    assert.matches("Read%-only file system", r.stderr)
    stop(box)
    host_fine()
  end)

  it("read_only = false: the root filesystem is writable (as far as the user's rights go)", function()
    local box = start { read_only = false }
    local r = assert(box:run("grep ' / ' /proc/mounts; touch /x"))
    assert.matches("^%S+ / %S+ rw[,%s]", r.stdout)
    assert.matches("Permission denied", r.stderr) -- nobody may not write /, but not for a read-only mount
    assert.is_nil(r.stderr:find("Read-only", 1, true))
    stop(box)
    box = start { read_only = false, user = "root" }
    r = assert(box:run("touch /x /etc/x && ls /x /etc/x"))
    assert.equal(0, r.code, r.stderr)
    assert.equal("/etc/x\n/x\n", r.stdout)
    stop(box)
    host_fine()
  end)

  it("network = true: the container is not on NetworkMode none (no traffic is sent)", function()
    local box = start { network = true }
    local info = assert(helper.inspect(box.id))
    assert.not_equal("none", info.HostConfig.NetworkMode)
    -- (a daemon run with --bridge=none, as here, still sets Config.NetworkDisabled
    -- on start for the default network: the box gets no interface but lo)
    stop(box)
    host_fine()
  end)

  it("cap_add = {'CHOWN'}: in CapEff for root; for the default user only in the bounding set", function()
    local box = start { cap_add = { "CHOWN" }, user = "root" }
    local r = assert(box:run("cat /proc/self/status"))
    local s = status_lines(r.stdout, { CapEff = true, CapPrm = true, CapBnd = true })
    assert.equal("0000000000000001", s.CapEff) -- CAP_CHOWN is bit 0
    assert.equal("0000000000000001", s.CapBnd)
    r = assert(box:run("touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u /tmp/f"))
    assert.equal("1000\n", r.stdout)
    stop(box)
    -- a non-root user gets no effective capability from cap_add (Docker sets no
    -- ambient capabilities): CHOWN is only allowed back into the bounding set
    box = start { cap_add = { "CHOWN" } }
    r = assert(box:run("cat /proc/self/status"))
    s = status_lines(r.stdout, { CapEff = true, CapPrm = true, CapBnd = true })
    assert.equal("0000000000000000", s.CapEff)
    assert.equal("0000000000000001", s.CapBnd)
    stop(box)
    host_fine()
  end)

  it("an unknown option such as `memroy` throws, naming it, and starts nothing", function()
    local ok, err = pcall(docker.start, docker, { image = helper.IMAGE, memroy = "64m" })
    assert.is_false(ok)
    assert.matches("unknown option 'memroy'", tostring(err))
    assert.same(before, helper.boxes(owner))
    host_fine()
  end)
end)
