-- box:reset() and lockup.pool{ reset = true }, against the real Engine, on the
-- lane the run picks: what a step leaves in a box is gone after a reset; what
-- a reset cannot undo stops the box; a pool hands a reset box out clean, or
-- discards it. Every box and pool a test makes is ended by after_each.
--
local lockup = require "lockup"
local helper = require "helper"

local raised = helper.raised

local opened, pools, dirs = {}, {}, {} -- what the running test made, ended by after_each
local before -- this process's boxes when the test began (helper.box_set)

-- The stdout of a step that must succeed.
local function sh(box, cmd)
  local r, err = box:run(cmd)
  assert(r, err)
  assert.equal(0, r.code, "`" .. cmd .. "` failed: " .. r.stderr)
  return r.stdout
end

-- The processes a step sees, counted with builtins in the session shell itself:
-- the count adds no process of its own.
local function count(box)
  return tonumber(sh(box, "n=0; for p in /proc/[0-9]*; do n=$((n + 1)); done; echo $n"))
end

local function words(s)
  local n = 0
  for _ in s:gmatch("%S+") do n = n + 1 end
  return n
end

-- A started box. Its lifeline's processes are all known (on the fifo lane
-- PID 1 forks its watcher before the shell, so the first probe finds it; a
-- box that missed it would fail every reset: "3 processes are left where
-- the lifeline has 2").
local function start(opts)
  opts = opts or {}
  opts.image = opts.image or helper.IMAGE
  opts.runtime = opts.runtime or helper.RUNTIME
  local box, err = helper.docker():start(opts)
  assert(box, err)
  opened[#opened + 1] = box
  assert.equal(count(box), words(box.lifeline_pids))
  return box
end

-- A box of `image`, or nil when the Engine has no such image.
local function start_if_any(image)
  local status = helper.docker():request("GET", "/images/" .. image .. "/json")
  if not status then return nil end
  return start { image = image }
end

local function has(box, cmd)
  return assert(box:run("command -v " .. cmd)).code == 0
end

-- reset() must fail saying it could not make the box clean, and leave it dead.
local function fails_and_stops(box)
  local ok, err = box:reset()
  assert.is_nil(ok)
  assert.matches("a reset could not make it clean", err, 1, true)
  local r, rerr = box:run("echo ok")
  assert.is_nil(r)
  assert.is_string(rerr)
  -- the lane is closed: the lifeline ends the container, AutoRemove removes it
  assert.is_truthy(helper.eventually(function() return not helper.exists(box.id) end, 10))
end

-- Lowers the open files limit's hard value in the session shell itself (the
-- soft one first: a hard limit cannot go under it); says what it is then.
local LOWER_HARD = "ulimit -S -n 64; ulimit -H -n 64; ulimit -H -n"

describe("box:reset", function()
  before_each(function() before = helper.box_set() end)
  after_each(function()
    for _, box in ipairs(opened) do box:stop() end
    opened = {}
    for _, dir in ipairs(dirs) do helper.rm_rf(dir) end
    dirs = {}
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  describe("makes the box clean again", function()
    it("empties /tmp, the workdir and /dev/shm, hidden names and directories too", function()
      local box = start()
      sh(box, "echo t >/tmp/t; echo w >/work/w; echo s >/dev/shm/s; mkdir -p /tmp/d/e /work/.d; "
        .. "echo x >/tmp/d/e/x; echo h >/tmp/.h; echo h >'/tmp/..h'; echo h >'/work/-rf'")
      assert.is_true(box:reset())
      assert.equal("", sh(box, "ls -A /tmp; ls -A /work; ls -A /dev/shm"))
      assert.equal("again\n", sh(box, "echo again >/tmp/a && cat /tmp/a")) -- still writable
    end)

    it("kills every process a step left: in the background, ignoring SIGTERM, daemonized", function()
      local box = start()
      local base = count(box) -- the lifeline's: the only ones a reset leaves
      sh(box, "sleep 1000 & sh -c 'trap \"\" TERM; sleep 1000' & "
        .. "( (setsid sleep 1000 || sleep 1000) >/dev/null 2>&1 & )")
      local dirty = count(box)
      assert.is_true(dirty >= base + 3, dirty .. " processes, " .. base .. " at start")
      assert.is_true(box:reset())
      assert.equal(base, count(box))
      assert.is_nil(sh(box, "cat /proc/[0-9]*/cmdline 2>/dev/null; true"):find("sleep", 1, true))
    end)

    it("drops what a step exported and reads the start's environment back", function()
      local box = start { env = { A = "1" } }
      local ENV = 'printf "%s|" "$HOME" "$PATH" "${A-unset}" "${LEAK-unset}" "${B-unset}"; env | grep -c LEAK'
      local start_env = sh(box, ENV .. "; true")
      assert.matches("|1|unset|unset|0\n", start_env, 1, true)
      sh(box, "export LEAK=1 HOME=/elsewhere PATH=/nowhere:$PATH A=2; B=3")
      assert.are_not.equal(start_env, sh(box, ENV)) -- it lasts from step to step: the reset is what ends it
      assert.is_true(box:reset())
      assert.equal(start_env, sh(box, ENV .. "; true"))
    end)

    it("leaves the next step's processes exactly the start's environment", function()
      local box = start { env = { A = "1" } }
      local start_env = sh(box, "env | sort")
      sh(box, "cd /tmp")
      assert.is_true(box:reset())
      local env = sh(box, "env | sort")
      assert.equal(start_env, env)
    end)

    it("drops a step's functions and aliases, and goes back to the start's workdir", function()
      local box = start { workdir = "/scratch" }
      assert.equal("/scratch\n", sh(box, "pwd"))
      sh(box, "f() { echo from-f; }; alias ll='echo from-ll'; mkdir /scratch/sub; cd /scratch/sub")
      -- the function and the directory last from step to step (the session
      -- drops aliases after each step by itself): the reset is what ends them
      assert.equal("from-f\n/scratch/sub\n", sh(box, "f; pwd"))
      assert.is_true(box:reset())
      assert.equal("/scratch\n", sh(box, "pwd"))
      assert.equal("", sh(box, "command -v f; alias ll 2>/dev/null; true"))
      assert.equal("", sh(box, "ls -A /scratch"))
    end)

    it("undoes a step's umask", function()
      local box = start()
      local start_umask = sh(box, "umask")
      sh(box, "umask 077")
      assert.equal("0077\n", sh(box, "umask"))
      local ok, err = box:reset()
      assert.is_true(ok, err)
      assert.equal(start_umask, sh(box, "umask"))
    end)

    it("removes System V IPC objects a step made", function()
      local box = start()
      if not has(box, "ipcmk") then box = start_if_any("debian-lua:local") end -- busybox has no ipcmk
      if not box or not has(box, "ipcmk") then
        pending("no ipcmk in " .. helper.IMAGE .. " nor in debian-lua:local")
        return
      end
      -- objects of each kind, counted from /proc/sysvipc (its first line is a header)
      local IPCS = "for k in shm msg sem; do n=-1; while read -r _; do n=$((n + 1)); done </proc/sysvipc/$k; "
        .. "printf '%s=%s ' $k $n; done"
      assert.equal("shm=0 msg=0 sem=0 ", sh(box, IPCS))
      sh(box, "ipcmk -M 4096 && ipcmk -Q && ipcmk -S 1")
      assert.equal("shm=1 msg=1 sem=1 ", sh(box, IPCS))
      assert.is_true(box:reset())
      assert.equal("shm=0 msg=0 sem=0 ", sh(box, IPCS))
    end)

    it("resets twice in a row", function()
      local box = start()
      sh(box, "echo x >/tmp/x; sleep 1000 &")
      assert.is_true(box:reset())
      assert.is_true(box:reset())
      assert.equal("", sh(box, "ls -A /tmp"))
      assert.equal("ok\n", sh(box, "echo ok"))
    end)

    it("resets one box 20 times, each time clean", function()
      local box = start()
      local base = count(box)
      for i = 1, 20 do
        sh(box, "echo " .. i .. " >/tmp/f" .. i .. "; export V" .. i .. "=1; sleep 1000 &")
        local ok, err = box:reset()
        assert.is_true(ok, err)
        assert.equal("", sh(box, "ls -A /tmp; env | grep '^V[0-9]'; true"))
        assert.equal(base, count(box))
      end
    end)
  end)

  describe("stops the box when it cannot make it clean", function()
    it("a step lowered a hard limit for good", function()
      local box = start()
      assert.equal("64\n", sh(box, LOWER_HARD))
      fails_and_stops(box)
    end)

  end)

  it("gives the shell back a signal a step made it ignore (exec would keep that)", function()
    local box = start()
    -- grep's own status: it inherits what the shell ignores (exec keeps SIG_IGN)
    local ignored = sh(box, "grep SigIgn /proc/self/status")
    assert.equal("ok\n", sh(box, "trap '' HUP TERM; echo ok"))
    assert.are_not.equal(ignored, sh(box, "grep SigIgn /proc/self/status"))
    local ok, err = box:reset()
    assert.is_true(ok, err)
    assert.equal(ignored, sh(box, "grep SigIgn /proc/self/status"))
  end)

  -- Found while writing this spec: what a step leaves that the wipe cannot
  -- see through, or that the reset does not read back.
  describe("leaves nothing that hides from it", function()
    it("a step's `set -f`: files are still found and removed", function()
      local box = start()
      sh(box, "echo secret >/tmp/s; echo secret >/work/s; set -f")
      local ok, err = box:reset()
      assert.is_true(ok, err)
      assert.equal("", sh(box, "ls -A /tmp; ls -A /work"))
    end)

    it("a writable mount made unreadable (chmod 0 /work): its files go, its mode comes back", function()
      local box = start()
      local modes = sh(box, "stat -c %a /tmp /work")
      sh(box, "echo secret >/work/s; chmod 0 /work")
      local ok, err = box:reset()
      assert.is_true(ok, err)
      assert.equal(modes, sh(box, "stat -c %a /tmp /work"))
      assert.equal("", sh(box, "ls -A /work"))
    end)

    it("an exported read-only variable: gone, or the reset fails", function()
      -- busybox sh and dash exit on `unset` of a read-only variable (the reset
      -- fails); bash (bash:local, as /bin/sh) carries on
      for _, image in ipairs { helper.IMAGE, "bash:local" } do
        local box = image == helper.IMAGE and start() or start_if_any(image)
        if box then
          sh(box, "export SECRET=from-the-last-task; readonly SECRET")
          local ok, err = box:reset()
          if ok then
            assert.equal("\n0\n", sh(box, "echo \"${SECRET-}\"; env | grep -c SECRET; true"))
          else
            assert.is_string(err)
            assert.is_truthy(box.dead)
          end
        end
      end
    end)
  end)

  describe("refuses", function()
    it("a stopped box", function()
      local box = start()
      assert.is_true(box:stop())
      local ok, err = box:reset()
      assert.is_nil(ok)
      assert.equal("the box was stopped", err)
    end)

    it("a paused box, saying so; resumed, it resets", function()
      local box = start()
      assert.is_true(box:pause())
      local ok, err = box:reset()
      assert.is_nil(ok)
      assert.matches("paused", err, 1, true)
      assert.is_true(box:resume())
      assert.is_true(box:reset())
      assert.equal("ok\n", sh(box, "echo ok"))
    end)

    it("while a call is in flight, which then ends as usual", function()
      local box = start()
      local r, ok, err, during
      lockup.run(function()
        r = box:run("sleep 1; echo done")
      end, function()
        lockup.sleep(0.2)
        during = r == nil
        ok, err = box:reset()
      end)
      assert.is_true(during)
      assert.is_nil(ok)
      assert.matches("in flight", err, 1, true)
      assert.equal("done\n", r.stdout)
      assert.equal(0, r.code)
      assert.is_true(box:reset()) -- once it is over
    end)

    it("a writable root filesystem, and the box goes on", function()
      local box = start { read_only = false }
      sh(box, "echo x >/tmp/x")
      local ok, err = box:reset()
      assert.is_nil(ok)
      assert.matches("writable root filesystem", err, 1, true)
      assert.equal("x\n", sh(box, "cat /tmp/x"))
    end)

    it("a writable volume, and the box goes on; a read-only one resets", function()
      local dir = helper.tmpdir()
      dirs[#dirs + 1] = dir
      helper.sh("chmod 0777 " .. helper.shell_quote(dir))
      local box = start { volumes = { [dir] = "/data:rw" } }
      sh(box, "echo from-the-box >/data/f")
      local ok, err = box:reset()
      assert.is_nil(ok)
      assert.matches("writable volume", err, 1, true)
      assert.equal("from-the-box\n", sh(box, "cat /data/f"))
      local ro = start { volumes = { [dir] = "/data" } }
      assert.is_true(ro:reset())
      assert.equal("from-the-box\n", sh(ro, "cat /data/f"))
      assert.equal("from-the-box\n", helper.read(dir .. "/f"))
    end)
  end)
end)

describe("lockup.pool{ reset = true }", function()
  before_each(function() before = helper.box_set() end)
  after_each(function()
    for _, pool in ipairs(pools) do pool:close() end
    pools = {}
    for _, box in ipairs(opened) do box:stop() end
    opened = {}
    for _, dir in ipairs(dirs) do helper.rm_rf(dir) end
    dirs = {}
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  local function pool_of(opts)
    opts.docker = helper.docker()
    opts.image = opts.image or helper.IMAGE
    opts.size = opts.size or 1
    if opts.reset == nil then opts.reset = true end
    if helper.RUNTIME then
      opts.start = opts.start or {}
      opts.start.runtime = helper.RUNTIME
    end
    local pool = assert(lockup.pool(opts))
    pools[#pools + 1] = pool
    return pool
  end

  -- A box from the pool; its lifeline's processes all known (see `start`).
  local function take(pool)
    local box = assert(pool:acquire())
    assert.equal(count(box), words(box.lifeline_pids))
    return box
  end

  -- Turns lockup's loop until the pool has done `n` resets in all.
  local function wait_resets(pool, n)
    assert.is_truthy(helper.eventually(function() return pool:stats().resets >= n end, 20),
      "resets: " .. pool:stats().resets .. ", last error: " .. tostring(pool:stats().last_error))
  end

  -- Acquires until the pool hands out box `id` again (the ready queue is first
  -- in, first out, and the refill may have queued a new box before it); the
  -- others go back after.
  local function take_back(pool, id)
    local others = {}
    for _ = 1, 5 do
      local box = assert(pool:acquire())
      if box.id == id then
        for _, o in ipairs(others) do pool:release(o) end
        return box
      end
      others[#others + 1] = box
    end
    error("the pool did not hand box " .. id:sub(1, 12) .. " out again")
  end

  it("hands a released box out again clean, and counts the reset", function()
    local pool = pool_of {}
    local box = take(pool)
    local id, base = box.id, count(box)
    sh(box, "echo task >/tmp/mark; echo task >/work/mark; sleep 1000 & export TASK=1")
    assert.is_true(pool:release(box))
    assert.equal(1, pool:stats().resetting) -- done in the background
    wait_resets(pool, 1)
    assert.equal(0, pool:stats().resetting)
    box = take_back(pool, id)
    assert.equal("", sh(box, "ls -A /tmp; ls -A /work; printf %s \"${TASK-}\""))
    assert.equal(base, count(box))
    assert.equal(0, pool:stats().reset_failed)
    pool:release(box)
    wait_resets(pool, 2)
  end)

  it("runs prepare again after each reset", function()
    local n = 0
    local pool = pool_of { prepare = function(box)
      n = n + 1
      local r = box:run("echo " .. n .. " >/tmp/marker")
      return r and r.code == 0
    end }
    local box = take(pool)
    local id = box.id
    local last = sh(box, "cat /tmp/marker")
    for i = 1, 3 do
      sh(box, "echo junk >/tmp/junk; rm /tmp/marker")
      pool:release(box)
      wait_resets(pool, i)
      box = take_back(pool, id)
      assert.equal("marker\n", sh(box, "ls -A /tmp"))
      local marker = sh(box, "cat /tmp/marker")
      assert.are_not.equal(last, marker) -- written again, after the reset
      last = marker
    end
    pool:release(box)
  end)

  it("discards a box whose reset fails, and still hands out a clean one", function()
    local pool = pool_of {}
    local box = take(pool)
    assert.equal("64\n", sh(box, LOWER_HARD))
    pool:release(box)
    assert.is_truthy(helper.eventually(function() return pool:stats().reset_failed >= 1 end, 20))
    local s = pool:stats()
    assert.equal(1, s.reset_failed)
    assert.equal(0, s.resets)
    assert.matches("could not make it clean", s.last_error, 1, true)
    assert.is_truthy(box.dead)
    assert.is_truthy(helper.eventually(function() return not helper.exists(box.id) end, 10))
    local fresh = take(pool)
    assert.are_not.equal(box.id, fresh.id)
    assert.equal("", sh(fresh, "ls -A /tmp"))
    assert.equal("1024\n", sh(fresh, "ulimit -H -n"))
    pool:release(fresh)
  end)

  it("refuses to be made for boxes it could not reset", function()
    local dir = helper.tmpdir()
    dirs[#dirs + 1] = dir
    local d = helper.docker()
    for _, opts in ipairs { { read_only = false }, { volumes = { [dir] = "/data:rw" } } } do
      local err = raised(function() lockup.pool { docker = d, image = helper.IMAGE, size = 1, reset = true, start = opts } end)
      assert.matches("bad option 'reset' to 'pool'", err, 1, true)
    end
    pool_of { start = { volumes = { [dir] = "/data" } } } -- a read-only volume is fine
  end)

  it("close() while a reset is in flight leaves no container", function()
    local hold, renewing = false, false
    -- once `hold` is set, prepare (which the pool's reset runs, and counts in
    -- `resetting`) waits: close() comes in the middle of it
    local pool = pool_of { prepare = function()
      if hold then
        renewing = true
        lockup.sleep(0.5)
      end
      return true
    end }
    local box = take(pool)
    sh(box, "sleep 1000 &")
    assert.is_truthy(helper.eventually(function() return pool:stats().ready >= 1 end, 30)) -- the refill too
    hold = true
    pool:release(box)
    assert.is_truthy(helper.eventually(function() return renewing end, 10))
    assert.equal(1, pool:stats().resetting)
    assert.is_true(pool:close())
    assert.equal(0, pool:stats().resetting)
    assert.is_false(helper.exists(box.id))
    assert.is_true(helper.no_new_boxes(before))
  end)
end)
