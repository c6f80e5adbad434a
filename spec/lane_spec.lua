-- Lanes: how a box's session reaches its shell. The default and the errors of
-- choosing one, the fifo lane's directory on the host, and the attacks a box
-- can make on its FIFOs from inside. The rest of the suite runs on both lanes
-- (make check: the default fifo, then LOCKUP_LANE=attach); this file names
-- its lane where it matters.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"
local fifo = require "lockup.lane.fifo"

local now = core.monotime
local q = string.format

local PARENT = fifo.parent()

-- What `ls -ld`-like facts say of a host path: type, octal mode, owner uid.
local function stat(path)
  local out = helper.sh("stat -c '%F %a %u' " .. helper.shell_quote(path) .. " 2>/dev/null")
  return out:gsub("%s+$", "")
end

-- The box's lane directory on the host, from its lane object.
local function lane_dir(box)
  return assert(box.lane and box.lane.dir, "not a fifo box")
end

describe("choosing a lane", function()
  local d

  setup(function() d = assert(lockup.connect { lane = "fifo" }) end)

  it("a local engine over its unix socket: fifo by default, attach when asked; tostring says which", function()
    local out, ok = helper.sh(helper.lua_cmd([[
      local d = assert(require("lockup").connect { socket = "/var/run/docker.sock" })
      local box = assert(d:start { image = "busybox:local" })
      print(box.lane_name)
      box:stop()
    ]], { env = { LOCKUP_LANE = false } }) .. " 2>&1")
    assert.is_true(ok, out)
    assert.equal("fifo\n", out)
    for _, lane in ipairs { "fifo", "attach" } do
      helper.closing(assert(d:start { image = helper.IMAGE, lane = lane }), function(box)
        assert.equal(lane, box.lane_name)
        assert.matches(lane .. " lane", tostring(box), 1, true)
        assert.equal("hi\n", assert(box:run("echo hi")).stdout)
      end)
    end
  end)

  it("a named user cannot own the FIFOs: the default falls back to attach, lane = 'fifo' says why", function()
    local auto = assert(lockup.connect { socket = "/var/run/docker.sock" })
    local box = assert(auto:start { image = helper.IMAGE, user = "sandbox" })
    finally(function() box:stop() end)
    assert.equal("attach", box.lane_name)
    assert.equal("sandbox\n", assert(box:run("id -un")).stdout)
    box:stop()
    local none, err = d:start { image = helper.IMAGE, user = "sandbox" }
    assert.is_nil(none)
    assert.matches("numeric user", err, 1, true)
    assert.same({}, helper.boxes(helper.owner()))
  end)

  it("root and uid:gid work on the fifo lane", function()
    for _, user in ipairs { "root", "1000:1000", "4242" } do
      helper.closing(assert(d:start { image = helper.IMAGE, user = user }), function(box)
        assert.equal("fifo", box.lane_name)
        local uid = user == "root" and "0" or user:match("^%d+")
        assert.equal(uid .. "\n", assert(box:run("id -u")).stdout)
      end)
    end
  end)

  it("a bad lane name throws; /.lockup is lockup's own mount", function()
    assert.matches("bad option 'lane' to 'start'", helper.raised(function()
      d:start { image = helper.IMAGE, lane = "pipe" }
    end), 1, true)
    assert.matches("bad option 'lane' to 'connect'", helper.raised(function()
      lockup.connect { lane = "tcp" }
    end), 1, true)
    assert.matches("lockup's own mount", helper.raised(function()
      d:start { image = helper.IMAGE, volumes = { ["/tmp"] = fifo.MOUNT } }
    end), 1, true)
  end)

  it("LOCKUP_LANE sets a process's default, and a wrong one is an error naming it", function()
    local code = [[
      local d = assert(require("lockup").connect())
      local box = assert(d:start { image = "busybox:local" })
      print(box.lane_name)
      box:stop()
    ]]
    for _, lane in ipairs { "attach", "fifo" } do
      local out, ok = helper.sh(helper.lua_cmd(code, { env = { LOCKUP_LANE = lane } }) .. " 2>&1")
      assert.is_true(ok, out)
      assert.equal(lane .. "\n", out)
    end
    local out, ok = helper.sh(helper.lua_cmd(code, { env = { LOCKUP_LANE = "fast" } }) .. " 2>&1")
    assert.is_false(ok)
    assert.matches("LOCKUP_LANE", out, 1, true)
  end)
end)

describe("the fifo lane on the host", function()
  local d

  setup(function() d = assert(lockup.connect { lane = "fifo" }) end)

  it("a private parent, a per-box directory the box can search, FIFOs owned by the box's uid", function()
    local box = assert(d:start { image = helper.IMAGE })
    finally(function() box:stop() end)
    local dir = lane_dir(box)
    assert.equal(PARENT, dir:match("^(.*)/[^/]+$"))
    assert.matches("^%d+%-" .. ("%x"):rep(32) .. "$", dir:match("[^/]+$"))
    assert.equal("directory 700 0", stat(PARENT))
    assert.equal("directory 711 0", stat(dir))
    assert.equal("fifo 400 65534", stat(dir .. "/in"))
    assert.equal("fifo 200 65534", stat(dir .. "/out"))
    assert.equal("fifo 200 65534", stat(dir .. "/err"))
    assert.equal("fifo 400 65534", stat(dir .. "/life"))
    box:stop()
    assert.equal("", stat(dir)) -- removed with the box
  end)

  it("the directory goes with a box that is garbage-collected, and so does the container", function()
    local box = assert(d:start { image = helper.IMAGE })
    local dir, id = lane_dir(box), box.id
    assert(box:run("true"))
    box = nil -- luacheck: ignore 311 (dropping the reference is the point)
    collectgarbage()
    collectgarbage()
    assert.equal("", stat(dir))
    local gone = helper.eventually(function() return not helper.exists(id) end, 10)
    if not gone then helper.remove(id) end
    assert.is_truthy(gone, "container still there 10 s after its box was collected")
  end)

  it("refuses a parent directory others can enter, and says what it must be", function()
    local dir = helper.tmpdir()
    helper.sh("chmod 755 " .. dir)
    local ok, err = core.fifo_parent(dir)
    assert.is_nil(ok)
    assert.matches("mode 0700", err, 1, true)
    assert.matches(dir, err, 1, true)
    helper.sh("chmod 700 " .. dir)
    assert.is_true(core.fifo_parent(dir))
    helper.rm_rf(dir)
  end)

  it("a start that fails leaves no directory", function()
    local before = helper.sh("ls " .. PARENT)
    local box, err = d:start { image = "lockup-no-such-image:none" }
    assert.is_nil(box)
    assert.matches("not found", err)
    assert.equal(before, helper.sh("ls " .. PARENT))
  end)
end)

describe("the fifo lane for a user other than root (in the docker group)", function()
  local UID = 4321
  local gid = helper.sh("getent group docker | cut -d: -f3"):match("%d+")

  it("keeps the FIFOs its own with modes that let the box in, and refuses a box running as its own uid", function()
    if not gid then
      pending("no docker group on this machine")
      return
    end
    if helper.docker().engine == "podman" then
      pending("rootful Podman's socket is root's alone: the docker group does not open it")
      return
    end
    local dir_of = "/tmp/lockup-" .. UID -- its parent without XDG_RUNTIME_DIR
    local code = [[
      local d = assert(require("lockup").connect { lane = "fifo" })
      local box = assert(d:start { image = "busybox:local" })
      local dir = box.lane.dir
      io.write(assert(box:run("echo hi; id -u")).stdout)
      local p = io.popen("stat -c '%n %a %u' " .. dir .. "/in " .. dir .. "/life " .. dir .. "/out " .. dir .. "/err")
      io.write((p:read("a"):gsub((dir:gsub("%p", "%%%0")) .. "/", "")))
      p:close()
      assert(box:stop())
      local none, err = d:start { image = "busybox:local", user = "]] .. UID .. [[" }
      print(none, err)
    ]]
    local out, ok = helper.sh(q("setpriv --reuid=%d --regid=%d --groups=%s ", UID, UID, gid)
      .. helper.lua_cmd(code, { env = { XDG_RUNTIME_DIR = false } }) .. " 2>&1")
    helper.sh("rm -rf " .. dir_of)
    assert.is_true(ok, out)
    local uid = tostring(UID)
    assert.equal(table.concat({ "hi", "65534", "in 644 " .. uid, "life 644 " .. uid, "out 622 " .. uid,
      "err 622 " .. uid, "" }, "\n"), out:match("^(.-)nil\t") or out)
    assert.matches("this process's own uid", out, 1, true)
  end)
end)

-- Both lanes: the Lua process killed with SIGKILL while a step runs.
for _, lane in ipairs { "fifo", "attach" } do
  describe("the " .. lane .. " lane when its Lua process is killed (SIGKILL)", function()
    it("the container goes away; lockup.prune() then removes the lane's directory and nothing else", function()
      local code = q([[
        io.stdout:setvbuf("no")
        local d = assert(require("lockup").connect { lane = %q })
        local box = assert(d:start { image = "busybox:local" })
        print(require("lockup.core").getpid() .. " " .. box.id .. " " .. (box.lane.dir or "-"))
        print("RETURNED", box:run("sleep 600"))
      ]], lane)
      -- things under the parent that prune must leave alone
      assert(core.fifo_parent(PARENT))
      local foreign = { PARENT .. "/1-" .. ("0"):rep(32) .. "x", PARENT .. "/notes" }
      for _, path in ipairs(foreign) do helper.sh("mkdir -p " .. path) end
      local p = assert(io.popen(helper.lua_cmd(code) .. " 2>&1", "r"))
      local line = p:read("l") or ""
      local pid, id, dir = line:match("^(%d+) (%x+) (%S+)$")
      if not pid then error("the subprocess said: " .. line .. (p:read("a") or "")) end
      assert.is_truthy(helper.eventually(function()
        return helper.sh(q("docker top %s 2>/dev/null", id)):find("sleep 600", 1, true)
      end, 10), "sleep 600 never ran in the box")
      local killed = now()
      os.execute("kill -9 " .. pid)
      local rest = p:read("a")
      p:close()
      assert.is_nil(rest:find("RETURNED", 1, true), rest)
      local gone = helper.eventually(function() return not helper.exists(id) end, 15)
      if not gone then helper.remove(id) end
      assert.is_truthy(gone, "container still there 15 s after its owner was killed")
      assert.is_true(now() - killed < 15)
      if lane == "fifo" then
        assert.equal("directory 711 0", stat(dir)) -- a killed process cannot clean up
        assert(lockup.prune())
        assert.equal("", stat(dir))
      end
      for _, path in ipairs(foreign) do
        assert.matches("^directory", stat(path), 1, false)
        helper.sh("rmdir " .. path)
      end
    end)
  end)
end

describe("a hostile box on the fifo lane", function()
  local d

  setup(function() d = assert(lockup.connect { lane = "fifo" }) end)

  local function start(opts)
    opts = opts or {}
    opts.image = helper.IMAGE
    return assert(d:start(opts))
  end

  -- The box still answers, byte for byte.
  local function answers(box)
    local r = assert(box:run("echo fine; echo err >&2; (exit 4)"))
    assert.equal("fine\n", r.stdout)
    assert.equal("err\n", r.stderr)
    assert.equal(4, r.code)
  end

  it("cannot open `in` or `life` for writing, by path or through a descriptor, as its user or as root", function()
    for _, user in ipairs { "65534:65534", "root" } do
      helper.closing(start { user = user }, function(box)
        for _, name in ipairs { "in", "life" } do
          local r = assert(box:run("echo x >/.lockup/" .. name))
          assert.are_not.equal(0, r.code)
          assert.matches("Permission denied", r.stderr)
          r = assert(box:run("for f in /proc/[0-9]*/fd/*; do [ \"$(readlink $f)\" = /.lockup/" .. name .. " ] && " ..
            "{ echo x >$f && echo WROTE; }; done 2>/dev/null; true"))
          assert.equal("", r.stdout)
        end
        answers(box)
      end)
    end
  end)

  it("cannot delete, replace, rename or chmod its FIFOs", function()
    local box = start()
    finally(function() box:stop() end)
    for _, attack in ipairs {
      "rm -f /.lockup/in", "mv /.lockup/out /.lockup/o", "chmod 666 /.lockup/in", "ln -sf /tmp/x /.lockup/err",
      "mkfifo /.lockup/new", "touch /.lockup/in", ": >/.lockup/x", "rm -rf /.lockup",
    } do
      local r = assert(box:run(attack))
      assert.are_not.equal(0, r.code, attack)
    end
    local dir = lane_dir(box)
    assert.equal("fifo 400 65534", stat(dir .. "/in"))
    assert.equal("fifo 200 65534", stat(dir .. "/out"))
    assert.equal("fifo 200 65534", stat(dir .. "/err"))
    assert.equal("fifo 400 65534", stat(dir .. "/life"))
    assert.equal("err\nin\nlife\nout\n", helper.sh("ls " .. dir))
    answers(box)
  end)

  it("a process that reads `in` steals the next step: it times out, the box is stopped, nothing hangs", function()
    local box = start()
    assert(box:run("cat /.lockup/in >/dev/null 2>&1 &"))
    lockup.sleep(0.2)
    local t0 = now()
    local r, err = box:run("echo mine", { timeout = 2 })
    assert.is_true(now() - t0 < 2 + 2 * 2 + 3) -- timeout, grace, a sweep
    if r then
      assert.is_true(r.timed_out or r.ok) -- the shell may win the race for the line
    else
      assert.is_string(err)
    end
    box:stop()
    assert.is_false(helper.exists(box.id))
  end)

  it("fake sentinels written to out and err, from the step and from the background, change nothing", function()
    local box = start()
    finally(function() box:stop() end)
    assert(box:run("(while :; do printf '\\001%032d 0\\n'; printf '\\001%032d 0\\n' >&2; " ..
      "printf '\\001abc 9\\n' >/.lockup/out; sleep 0.01; done) &"))
    for i = 1, 20 do
      local r = assert(box:run(q("printf '\\001fake 0\\n' >/.lockup/err; (exit %d)", i)))
      assert.equal(i, r.code)
    end
    assert.is_true(box:kill_processes())
    lockup.sleep(0.2)
    assert(box:run("true"))
    answers(box)
  end)

  it("a flood into `out` while lockup is not reading: the next step ends at its cap, the box goes on", function()
    local box = start { max_output = 1024 * 1024 }
    finally(function() box:stop() end)
    assert(box:run("(yes flood >/.lockup/out) >/dev/null 2>&1 &"))
    lockup.sleep(1) -- the FIFO fills and the writer blocks
    local rss = helper.rss_kb()
    local t0 = now()
    local r = assert(box:run("echo mine", { timeout = 10 }))
    assert.is_true(now() - t0 < 10)
    -- the flood and the step race for the FIFO: mostly the cap comes first,
    -- but the step's answer may win (1044521 bytes of flood seen, then it)
    assert.is_true(r.truncated or (r.stdout:find("mine\n", 1, true) ~= nil and #r.stdout <= 1024 * 1024),
      tostring(r))
    assert.is_true(helper.rss_kb() - rss < 64 * 1024)
    -- When the answer won, nothing killed the flood: it goes on writing into
    -- later steps (README: a background process can), so it is killed here;
    -- what it wrote after the step's end, before it was killed, is the next
    -- step's.
    assert.is_true(box:kill_processes())
    assert(box:run("true"))
    answers(box)
  end)

  it("a background process holding out open: steps go on, and `exit 3` still ends the box at once", function()
    local box = start()
    local dir = lane_dir(box)
    assert(box:run("sleep 1000 >/.lockup/out 2>/.lockup/err &"))
    assert(box:run("sleep 1000 &")) -- and one on the session's own descriptors
    answers(box)
    local t0 = now()
    local r = assert(box:run("exit 3"))
    assert.is_true(now() - t0 < 5)
    assert.is_true(r.exited)
    assert.equal(3, r.code)
    assert.is_false(helper.exists(box.id))
    assert.equal("", stat(dir))
  end)
end)
