-- A box's life against the real Engine: failed starts leave nothing behind,
-- every way a box ends removes its container, and prune finds the strays.
local lockup = require "lockup"
local helper = require "helper"
local C = require "support.compat"

local q = string.format

local function random_name(prefix)
  return prefix .. require("lockup.core").random_hex(6)
end

local raised = helper.raised

describe("docker:start errors", function()
  local d, before

  before_each(function()
    d = helper.docker()
    before = helper.boxes(helper.owner())
  end)

  after_each(function()
    assert.same(before, helper.boxes(helper.owner())) -- no container left behind
  end)

  it("says an unknown image is not found, and to build or pull it", function()
    local image = random_name("lockup-spec-missing-") .. ":latest"
    local box, err = d:start({ image = image })
    assert.is_nil(box)
    assert.is_string(err)
    assert.matches(image, err, 1, true)
    assert.matches("not found", err, 1, true)
    assert.matches("pull", err, 1, true)
    assert.matches("build", err, 1, true)
  end)

  it("names a missing shell and says what to do", function()
    local name = random_name("lockup-spec-noshell-")
    local box, err = d:start({ image = helper.IMAGE, shell = "/bin/nosuch", name = name })
    assert.is_nil(box)
    assert.is_string(err)
    assert.matches("/bin/nosuch", err, 1, true)
    assert.matches(helper.IMAGE, err, 1, true)
    assert.matches("shell = ", err, 1, true) -- give another with start{ shell = ... }
    assert.is_false(helper.exists(name))
  end)

  it("passes the daemon's own message on (a name already in use)", function()
    local name = random_name("lockup-spec-dup-")
    local first, err = d:start({ image = helper.IMAGE, name = name })
    finally(function() if first then first:stop() end end)
    assert.is_not_nil(first, err)
    local with_first = helper.boxes(helper.owner())
    assert.equal(#before + 1, #with_first)
    local second, err2 = d:start({ image = helper.IMAGE, name = name })
    assert.is_nil(second)
    assert.is_string(err2)
    if d.engine == "podman" then -- Podman words it its own way
      assert.matches(q('the container name "%s" is already in use', name), err2, 1, true)
    else
      assert.matches(q('The container name "/%s" is already in use', name), err2, 1, true)
    end
    assert.matches(first.id, err2, 1, true)
    assert.same(with_first, helper.boxes(helper.owner())) -- the failed one left nothing
    -- the first box is untouched
    local r = assert(first:run("echo still here"))
    assert.equal("still here\n", r.stdout)
    assert.is_true(first:stop())
  end)

  it("throws on an unknown option, naming it", function()
    local err = raised(function() local box = d:start({ image = helper.IMAGE, memroy = 1 }); return box end)
    assert.matches("'memroy'", err, 1, true)
    assert.matches("unknown option", err, 1, true)
    assert.matches("start", err, 1, true)
    -- the error points at the caller's line, not into lockup
    assert.matches("^spec/lifecycle_spec%.lua:%d+:", err)
  end)

  it("refuses a label that would overwrite lockup's owner label", function()
    local err = raised(function()
      local box = d:start({ image = helper.IMAGE, labels = { ["lockup.owner"] = "elsewhere/1" } })
      return box
    end)
    assert.matches("lockup.owner", err, 1, true)
    assert.matches("^spec/lifecycle_spec%.lua:%d+:", err)
  end)

  it("throws on an option of the wrong type, naming it and the type expected", function()
    local err = raised(function() local box = d:start({ image = helper.IMAGE, timeout = "5" }); return box end)
    assert.matches("'timeout'", err, 1, true)
    assert.matches("number expected, got string", err, 1, true)
    err = raised(function() local box = d:start({ image = helper.IMAGE, env = "A=1" }); return box end)
    assert.matches("'env'", err, 1, true)
    assert.matches("table expected, got string", err, 1, true)
    err = raised(function() local box = d:start({ image = 42 }); return box end)
    assert.matches("'image'", err, 1, true)
    err = raised(function() local box = d:start({ shell = "/bin/sh" }); return box end)
    assert.matches("'image'", err, 1, true)
    assert.matches("required", err, 1, true)
  end)
end)

describe("a box's container", function()
  local d

  before_each(function() d = helper.docker() end)

  it("is running while the box lives, labelled lockup.owner = <host>/<pid>", function()
    local box, err = d:start({ image = helper.IMAGE, labels = { ["lockup.spec"] = "yes" } })
    finally(function() if box then box:stop() end end)
    assert.is_not_nil(box, err)
    assert.matches("^%x+$", box.id)
    assert.equal(64, #box.id)
    local info = assert(helper.inspect(box.id))
    assert.is_true(info.State.Running)
    assert.equal(helper.owner(), info.Config.Labels["lockup.owner"])
    assert.equal("yes", info.Config.Labels["lockup.spec"])
    assert.is_true(box:stop())
  end)

  it("is removed by box:stop() before it returns; stop is idempotent; later calls fail", function()
    local box, err = d:start({ image = helper.IMAGE })
    assert.is_not_nil(box, err)
    assert.is_true(helper.exists(box.id))
    assert.is_true(box:stop())
    assert.is_false(helper.exists(box.id))
    assert.is_true(box:stop())
    assert.is_true(box:stop())
    local r, rerr = box:run("echo hi")
    assert.is_nil(r)
    assert.matches("stopped", rerr, 1, true)
    r, rerr = box:exec({ "echo", "hi" })
    assert.is_nil(r)
    assert.matches("stopped", rerr, 1, true)
    assert.matches(box.id:sub(1, 12), tostring(box), 1, true)
  end)

  -- Lua 5.4 only: to-be-closed variables (`<close>`) are 5.4 syntax; LuaJIT
  -- has none, and there the explicit box:stop() above is the way.
  if C.CLOSE then
    it("is removed at the end of a <close> scope, also when it ends by an error", function()
      helper.load54([[
        local d, helper, assert = ...
        local id
        do
          local box <close>, err = d:start({ image = helper.IMAGE })
          assert.is_not_nil(box, err)
          id = box.id
          assert.is_true(helper.exists(id))
        end
        assert.is_false(helper.exists(id))

        local ok, perr = pcall(function()
          local box <close> = assert(d:start({ image = helper.IMAGE }))
          id = box.id
          error("boom")
        end)
        assert.is_false(ok)
        assert.matches("boom", perr)
        assert.is_false(helper.exists(id))
      ]], "lifecycle_spec <close> scope")(d, helper, assert)
    end)
  end

  it("goes away soon after the box is garbage-collected", function()
    local box, err = d:start({ image = helper.IMAGE })
    assert.is_not_nil(box, err)
    local id = box.id
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    assert.is_true(helper.exists(id))
    box, err = nil, nil -- luacheck: ignore 311 (dropping the references is the point)
    collectgarbage()
    collectgarbage()
    local gone = helper.eventually(function() return not helper.exists(id) end, 5)
    if not gone then helper.remove(id) end
    assert.is_truthy(gone, "container " .. id .. " still there 5 s after the box was collected")
  end)

  it("goes away soon after its Lua process is killed (SIGKILL) in the middle of a command", function()
    local code = [[
      io.stdout:setvbuf("no")
      local d = assert(require("lockup").connect())
      local box = assert(d:start({ image = "busybox:local" }))
      local f = io.open("/proc/self/stat"); local pid = f:read("l"):match("^%d+"); f:close()
      print(pid .. " " .. box.id)
      print("RETURNED", box:run("sleep 600"))
    ]]
    local p = assert(io.popen(helper.lua_cmd(code) .. " 2>&1", "r"))
    local line = p:read("l") or ""
    local pid, id = line:match("^(%d+) (%x+)$")
    if not pid then
      local rest = p:read("a")
      p:close()
      error("the subprocess said: " .. line .. "\n" .. (rest or ""))
    end
    local ok, err = pcall(function()
      local info = assert(helper.inspect(id))
      assert.equal(helper.owner(pid), info.Config.Labels["lockup.owner"])
      -- the command is running in the box when the process dies
      assert.is_truthy(helper.eventually(function()
        local status, top = d:request("GET", "/containers/" .. id .. "/top")
        for _, proc in ipairs(status and top.Processes or {}) do
          if table.concat(proc, " "):find("sleep 600", 1, true) then return true end
        end
      end, 10), "sleep 600 never ran in the box")
    end)
    os.execute("kill -9 " .. pid)
    local rest = p:read("a")
    p:close()
    if not ok then
      helper.remove(id)
      error(err, 0)
    end
    assert.is_nil(rest:find("RETURNED", 1, true), rest) -- it never got to return
    local gone = helper.eventually(function() return not helper.exists(id) end, 15)
    if not gone then helper.remove(id) end
    assert.is_truthy(gone, "container " .. id .. " still there 15 s after its owner was killed")
  end)

  it("exits with the shell: code 3, exited = true; later runs fail; the container is gone", function()
    local box, err = d:start({ image = helper.IMAGE })
    assert.is_not_nil(box, err)
    local r = assert(box:run("echo bye; exit 3"))
    assert.equal(3, r.code)
    assert.is_true(r.exited)
    assert.is_false(r.ok)
    assert.is_falsy(r.timed_out)
    assert.equal("bye\n", r.stdout)
    assert.is_false(helper.exists(box.id))
    local r2, err2 = box:run("echo again")
    assert.is_nil(r2)
    assert.is_string(err2)
    assert.matches("shell exited", err2, 1, true)
    assert.matches("3", err2, 1, true)
    local r3, err3 = box:exec({ "echo", "again" })
    assert.is_nil(r3)
    assert.matches("shell exited", err3, 1, true)
    assert.is_true(box:stop())
    assert.is_false(helper.exists(box.id))
  end)
end)

describe("prune", function()
  local d, host, created

  -- A container made straight through the API (never started), like a stray.
  local function make(labels)
    local status, body = d:request("POST", "/containers/create", {
      body = { Image = helper.IMAGE, Cmd = { "true" }, Labels = labels },
    })
    assert(status, body)
    created[#created + 1] = body.Id
    return body.Id
  end

  local function alive(pid)
    return C.execute("kill -0 " .. pid .. " 2>/dev/null") == true
  end

  -- A pid that surely belongs to no process: a child that has exited and been reaped.
  local function dead_pid()
    local pid = C.tointeger((helper.sh("sh -c 'echo $$'")))
    assert(pid and not alive(pid), "no dead pid to use")
    return pid
  end

  -- The lockup containers of this host whose owner is dead (prune's own targets),
  -- as the spec sees them.
  local function dead_owned()
    local n = 0
    for _, id in ipairs(helper.boxes()) do
      local label = assert(helper.inspect(id)).Config.Labels["lockup.owner"]
      local h, pid = tostring(label):match("^(.*)/(%d+)$")
      if h == host and not alive(pid) then n = n + 1 end
    end
    return n
  end

  before_each(function()
    d = helper.docker()
    host = helper.hostname()
    created = {}
  end)

  after_each(function()
    for _, id in ipairs(created) do helper.remove(id) end
  end)

  it("removes exactly the boxes of dead owners on this host", function()
    local earlier = dead_owned() -- strays from before this spec: prune takes them too
    local dead = make({ ["lockup.owner"] = host .. "/" .. dead_pid() })
    local live = make({ ["lockup.owner"] = helper.owner() })
    local elsewhere = make({ ["lockup.owner"] = "some-other-host.example/" .. dead_pid() })
    local odd = make({ ["lockup.owner"] = "not an owner" })
    local unrelated = make()
    local n, err = lockup.prune()
    assert.equal(1 + earlier, n, err)
    assert.is_false(helper.exists(dead))
    assert.is_true(helper.exists(live))
    assert.is_true(helper.exists(elsewhere))
    assert.is_true(helper.exists(odd))
    assert.is_true(helper.exists(unrelated))
    -- nothing more to do
    n, err = d:prune()
    assert.equal(0, n, err)
    assert.is_true(helper.exists(live))
  end)

  it("spares a running box of this process", function()
    local box, err = d:start({ image = helper.IMAGE })
    finally(function() if box then box:stop() end end)
    assert.is_not_nil(box, err)
    assert.is_number(lockup.prune())
    assert.is_true(helper.exists(box.id))
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
  end)

  it("with all = true removes every lockup container, and nothing else", function()
    local ours = {
      make({ ["lockup.owner"] = host .. "/" .. dead_pid() }),
      make({ ["lockup.owner"] = helper.owner() }),
      make({ ["lockup.owner"] = "some-other-host.example/1" }),
    }
    local unrelated = make()
    local other_label = make({ ["lockup.spec"] = "not lockup's" })
    local all = #helper.boxes()
    assert.is_true(all >= #ours)
    local n, err = lockup.prune({ all = true })
    assert.equal(all, n, err)
    assert.same({}, helper.boxes())
    for _, id in ipairs(ours) do assert.is_false(helper.exists(id)) end
    assert.is_true(helper.exists(unrelated))
    assert.is_true(helper.exists(other_label))
    -- the method on a connection does the same
    local again = make({ ["lockup.owner"] = helper.owner() })
    n, err = d:prune({ all = true })
    assert.equal(1, n, err)
    assert.is_false(helper.exists(again))
    assert.is_true(helper.exists(unrelated))
  end)
end)

-- Under load the Engine may still list a container once its wait call has
-- answered (its removal in progress, or failed and left it dead): stop() must
-- see it gone before it says true, or say that it is not.
describe("box:stop() on many boxes at once", function()
  it("100 boxes started, then stopped together: none of them is left once its stop() said true", function()
    local N = 100
    local d = helper.docker()
    local owner = helper.owner()
    local before = helper.boxes(owner)
    local boxes, started, left, failed = {}, 0, {}, {}
    local tasks = {}
    for i = 1, N do
      tasks[i] = function()
        local box, err = d:start({ image = helper.IMAGE })
        assert(box, err)
        boxes[i] = box
        started = started + 1
        while started < N do lockup.sleep(0.05) end -- then all stop at once
        local ok, serr = box:stop()
        if not ok then failed[#failed + 1] = serr
        elseif helper.exists(box.id) then left[#left + 1] = box.id:sub(1, 12) end
      end
    end
    local ok, err = pcall(lockup.run, C.unpack(tasks))
    for _, box in pairs(boxes) do -- whatever happened, nothing stays behind
      if not box:stop() then helper.remove(box.id) end
    end
    assert(ok, err)
    assert.same({}, left, #left .. " containers still there after stop() returned true")
    -- nil, err is allowed (a very slow Engine) if it says so and names prune
    for _, e in ipairs(failed) do assert.matches("lockup.prune()", e, 1, true) end
    assert.same(before, helper.boxes(owner))
  end)
end)

-- A removal that fails (here: a file the daemon cannot unlink in the
-- container's directory) answers the wait call too, leaving the container
-- "dead" behind: stop() says so, and a later stop() removes it.
describe("box:stop() when the Engine cannot remove the container", function()
  it("returns nil, err naming lockup.prune(); once removal works, stop() removes it", function()
    local d = helper.docker()
    local status, info = d:request("GET", "/info")
    assert(status, info)
    local box = assert(d:start({ image = helper.IMAGE }))
    local pin = info.DockerRootDir .. "/containers/" .. box.id .. "/pin"
    local _, pinned = helper.sh("touch " .. helper.shell_quote(pin) .. " && chattr +i " .. helper.shell_quote(pin))
    if not pinned then
      assert.is_true(box:stop())
      pending("needs root, chattr and the Engine's data root on this host's ext4 (" .. pin .. ")")
      return
    end
    finally(function() -- whatever failed, nothing stays pinned or behind
      helper.sh("chattr -i " .. helper.shell_quote(pin))
      helper.remove(box.id)
    end)
    local ok, err = box:stop()
    helper.sh("chattr -i " .. helper.shell_quote(pin))
    assert.is_nil(ok)
    assert.matches("is not gone yet", err, 1, true)
    assert.matches("lockup.prune()", err, 1, true)
    assert.is_true(helper.exists(box.id))
    assert.is_true(box:stop())
    assert.is_false(helper.exists(box.id))
  end)
end)

-- gVisor does not pass host FIFOs into its sandbox: a runsc box takes the
-- attach lane by itself, and the fifo lane asked for is refused, saying why.
describe("a box under gVisor (runtime = 'runsc')", function()
  it("runs on the attach lane when the lane is left to lockup; lane = 'fifo' is refused", function()
    local d = helper.docker()
    local status, info = d:request("GET", "/info")
    assert(status, info)
    if not (info.Runtimes or {}).runsc then
      pending("the Engine has no runtime runsc (scripts/setup.sh registers it when runsc is installed)")
      return
    end
    local before = helper.boxes(helper.owner())
    local lane -- left to lockup, unless LOCKUP_LANE=fifo asks every box for the fifo lane
    if d.lane == "fifo" then
      local refused, err = d:start({ image = helper.IMAGE, runtime = "runsc" })
      assert.is_nil(refused)
      assert.matches("fifo lane does not work with runtime 'runsc'", err, 1, true)
      lane = "attach"
    end
    local box, err = d:start({ image = helper.IMAGE, runtime = "runsc", lane = lane })
    finally(function() if box then box:stop() end end)
    assert.is_not_nil(box, err)
    assert.equal("attach", box.lane_name)
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    assert.is_true(box:stop())
    local refused
    refused, err = d:start({ image = helper.IMAGE, runtime = "runsc", lane = "fifo" })
    assert.is_nil(refused)
    assert.matches("fifo lane does not work with runtime 'runsc'", err, 1, true)
    assert.matches('lane = "attach"', err, 1, true)
    assert.same(before, helper.boxes(helper.owner()))
  end)
end)

describe("a task that raises inside lockup.run", function()
  -- Lua 5.4 only: `<close>` is 5.4 syntax (LuaJIT has no to-be-closed
  -- variables); the scheduler closes a dead task's coroutine, which runs them.
  if C.CLOSE then
    it("still closes its `<close>` box: the container is gone when run returns", function()
      helper.load54([[
        local lockup, helper, assert = ...
        local d = helper.docker()
        local id
        local ok, err = pcall(lockup.run, function()
          local box <close> = assert(d:start({ image = helper.IMAGE }))
          id = box.id
          error("boom")
        end)
        assert.is_false(ok)
        assert.matches("boom", err)
        assert.is_string(id)
        assert.is_false(helper.exists(id))
      ]], "lifecycle_spec <close> in a task")(lockup, helper, assert)
    end)
  end
end)

describe("a box's defaults", function()
  it("has networking off, the none log driver, AutoRemove, and lockup's owner label", function()
    local box = assert(helper.docker():start({ image = helper.IMAGE }))
    finally(function() box:stop() end)
    local info = assert(helper.inspect(box.id))
    assert.equal("none", info.HostConfig.NetworkMode)
    assert.equal("none", info.HostConfig.LogConfig.Type)
    assert.is_true(info.HostConfig.AutoRemove)
    -- Podman takes NetworkDisabled but leaves it out of inspect: NetworkMode none says it
    if helper.docker().engine ~= "podman" then assert.is_true(info.Config.NetworkDisabled) end
    assert.equal(helper.owner(), info.Config.Labels["lockup.owner"])
    -- inside: a loopback device and nothing else
    assert.equal("lo\n", assert(box:run("ls /sys/class/net")).stdout)
  end)
end)
