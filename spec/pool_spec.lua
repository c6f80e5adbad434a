-- Warm pools against the real Engine: started, never-used boxes handed out
-- once, refilled in the background within a rate limit, and nothing leaked
-- when things go wrong (the image removed, an idle box killed, the process
-- killed). The daemon restart is in faults_spec.lua, with the other
-- daemon-killing specs.
local lockup = require "lockup"
local core = require "lockup.core"
local helper = require "helper"
local C = require "support.compat"

local now = core.monotime
local raised = helper.raised

local function pool_of(opts)
  opts.docker = opts.docker or helper.docker()
  opts.image = opts.image or helper.IMAGE
  if helper.RUNTIME then opts.start = { runtime = helper.RUNTIME } end
  return assert(lockup.pool(opts))
end

-- Turns lockup's loop (lockup.sleep runs the pool's background refills)
-- until the pool has `n` boxes ready; false after `seconds`.
local function until_ready(pool, n, seconds)
  return helper.eventually(function() return pool:stats().ready >= n end, seconds or 30)
end

describe("lockup.pool", function()
  local before

  before_each(function()
    before = helper.box_set()
  end)

  after_each(function()
    -- every box of the spec's pools is gone once they are closed and released
    -- (a set, not a count: a box of an earlier spec may finish going meanwhile)
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  it("hands out a started, never-used box at once, and refills behind it", function()
    local pool = pool_of { size = 2 }
    finally(function() pool:close() end)
    assert.is_truthy(until_ready(pool, 2))
    local t0 = now()
    local box = assert(pool:acquire())
    local took = now() - t0
    assert.is_true(took < 1, "acquire took " .. took .. " s with boxes ready")
    assert.equal("hello\n", assert(box:run("echo hello")).stdout)
    assert.equal("", assert(box:run("ls -A /tmp")).stdout) -- nothing ran in it before
    local s = pool:stats()
    assert.equal(1, s.hits)
    assert.equal(0, s.misses)
    assert.equal(1, s.in_use)
    assert.equal(2, s.size)
    -- the one handed out is replaced: two ready again beside it
    assert.is_truthy(until_ready(pool, 2))
    assert.equal(1, pool:stats().in_use)
    pool:release(box)
    assert.equal(0, pool:stats().in_use)
    assert.is_truthy(helper.eventually(function() return not helper.exists(box.id) end, 10))
  end)

  it("never hands out the same box twice: nothing one task did reaches the next", function()
    local pool = pool_of { size = 1 }
    finally(function() pool:close() end)
    local seen = {}
    for i = 1, 3 do
      local box = assert(pool:acquire())
      assert.is_nil(seen[box.id])
      seen[box.id] = true
      assert.equal("", assert(box:run("cat /tmp/mark 2>/dev/null")).stdout)
      assert(box:run("echo task" .. i .. " > /tmp/mark"))
      if i % 2 == 1 then pool:release(box) else box:stop() end
    end
  end)

  it("serves many tasks at once within its rate limit, each its own box", function()
    local pool = pool_of { size = 1, max_starting = 2 }
    finally(function() pool:close() end)
    local ids, most, done = {}, 0, 0
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = function()
        local box = assert(pool:acquire(60))
        ids[#ids + 1] = box.id
        assert(box:run("true"))
        pool:release(box)
        done = done + 1
      end
    end
    tasks[#tasks + 1] = function() -- watches how many starts are in flight
      while done < 5 do
        local s = pool:stats()
        if s.starting > most then most = s.starting end
        lockup.sleep(0.005)
      end
    end
    lockup.run(C.unpack(tasks))
    assert.equal(5, #ids)
    local distinct = {}
    for _, id in ipairs(ids) do distinct[id] = true end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.equal(5, n)
    assert.is_true(most <= 2, most .. " starts in flight at once")
    assert.is_true(pool:stats().misses >= 3)
  end)

  it("starts one cold when empty, if asked to (when_empty = \"cold\")", function()
    local pool = pool_of { size = 1, when_empty = "cold", max_starting = 1 }
    finally(function() pool:close() end)
    local a = assert(pool:acquire()) -- the refill has not finished: this one is started for the caller
    local b = assert(pool:acquire())
    assert.are_not.equal(a.id, b.id)
    assert.is_true(pool:stats().misses >= 1)
    pool:release(a)
    pool:release(b)
  end)

  it("says when no box is ready in time, and does not hang", function()
    local pool = pool_of { size = 1 }
    finally(function() pool:close() end)
    local t0 = now()
    local box, err = pool:acquire(0)
    assert.is_nil(box)
    assert.matches("no box ready within 0 s", err, 1, true)
    assert.matches("raise size", err, 1, true)
    assert.is_true(now() - t0 < 1)
  end)

  it("refills in the background outside lockup.run, while a lockup call waits", function()
    local pool = pool_of { size = 2 }
    finally(function() pool:close() end)
    assert.is_false(lockup.run ~= nil and pool:stats().ready == 2) -- nothing is started yet at creation
    lockup.sleep(0) -- a call that waits turns the loop once
    assert.is_truthy(until_ready(pool, 2, 30)) -- only lockup.sleep ran: the refill went on during it
  end)

  it("never hands out a box that died while idle", function()
    local pool = pool_of { size = 2 }
    finally(function() pool:close() end)
    assert.is_truthy(until_ready(pool, 2))
    local victim = pool.ready[pool.head] -- the next in line
    helper.remove(victim.id) -- killed and removed from outside
    assert.is_truthy(helper.eventually(function() return not helper.exists(victim.id) end, 10))
    for _ = 1, 2 do
      local box = assert(pool:acquire())
      assert.are_not.equal(victim.id, box.id)
      assert.equal("ok\n", assert(box:run("echo ok")).stdout)
      pool:release(box)
    end
    assert.equal(1, pool:stats().died)
  end)

  it("lets a dropped box go: collected, its container ends", function()
    local pool = pool_of { size = 1 }
    finally(function() pool:close() end)
    local id
    do
      local box = assert(pool:acquire())
      id = box.id
    end
    assert.is_truthy(helper.eventually(function()
      collectgarbage()
      collectgarbage()
      return not helper.exists(id)
    end, 20))
    assert.equal(0, pool:stats().in_use)
  end)

  it("survives its image being removed, says why it cannot start, and recovers", function()
    local tag = "lockup-spec-pool-" .. core.random_hex(4) .. ":latest"
    local d = helper.docker()
    local repo, version = tag:match("^(.*):(.*)$")
    assert(d:request("POST", "/images/" .. helper.IMAGE .. "/tag", { query = { repo = repo, tag = version } }))
    local undo = helper.undo(finally)
    undo(function() d:request("DELETE", "/images/" .. tag) end)
    local pool = pool_of { size = 1, image = tag }
    undo(function() pool:close() end)
    assert.is_truthy(until_ready(pool, 1))
    assert(d:request("DELETE", "/images/" .. tag))
    -- boxes started before still work; then starts fail, clearly and at once
    local err
    for _ = 1, 4 do
      local box, aerr = pool:acquire(20)
      if not box then err = aerr break end
      pool:release(box)
    end
    assert.is_string(err)
    assert.matches(tag, err, 1, true)
    assert.matches("not found", err, 1, true)
    assert.is_true(pool:stats().failed >= 1)
    -- the image back: the pool starts boxes again by itself
    assert(d:request("POST", "/images/" .. helper.IMAGE .. "/tag", { query = { repo = repo, tag = version } }))
    local box = assert(pool:acquire(30))
    assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    pool:release(box)
  end)

  it("runs prepare on each new box before it is ready, and says why one failed", function()
    local undo = helper.undo(finally)
    local pool = pool_of { size = 1, prepare = function(box) return box:put("ready.txt", "prepared\n") end }
    undo(function() pool:close() end)
    local box = assert(pool:acquire())
    assert.equal("prepared\n", assert(box:run("cat ready.txt")).stdout)
    pool:release(box)
    local failing = pool_of { size = 1, prepare = function() return nil, "no such setup" end }
    undo(function() failing:close() end)
    local none, err = failing:acquire(20)
    assert.is_nil(none)
    assert.matches("preparing a new box: no such setup", err, 1, true)
    local raising = pool_of { size = 1, prepare = function() error("setup raised") end }
    undo(function() raising:close() end)
    none, err = raising:acquire(20)
    assert.is_nil(none)
    assert.matches("setup raised", err, 1, true)
  end)

  it("close() removes the boxes it holds, ends waiters, and refuses more", function()
    local pool = pool_of { size = 3 }
    assert.is_truthy(until_ready(pool, 3))
    local ids = {}
    for i = pool.head, pool.tail do ids[#ids + 1] = pool.ready[i].id end
    assert.is_true(pool:close())
    for _, id in ipairs(ids) do assert.is_false(helper.exists(id)) end
    local box, err = pool:acquire()
    assert.is_nil(box)
    assert.matches("closed", err)
    assert.is_true(pool:close()) -- idempotent
  end)

  it("leaves no container when its process is killed (SIGKILL)", function()
    local dir = helper.tmpdir()
    finally(function() helper.rm_rf(dir) end)
    local code = ([[
      local lockup = require "lockup"
      local pool = assert(lockup.pool{ image = %q, size = 3 })
      while pool:stats().ready < 3 do lockup.sleep(0.05) end
      local f = assert(io.open(%q, "w"))
      f:write(io.open("/proc/self/stat"):read("*l"):match("^(%%d+)"))
      f:close()
      lockup.sleep(600)
    ]]):format(helper.IMAGE, dir .. "/pid")
    helper.sh(helper.lua_cmd(code) .. " >/dev/null 2>&1 &")
    local pid = helper.eventually(function() return helper.read(dir .. "/pid") end, 60)
    assert.is_truthy(pid, "the pool's process did not get its boxes ready")
    local owner = helper.owner(pid)
    assert.equal(3, #helper.boxes(owner))
    helper.sh("kill -9 " .. pid)
    assert.is_truthy(helper.eventually(function() return #helper.boxes(owner) == 0 end, 20))
  end)

  it("refuses bad options, naming them", function()
    local d = helper.docker()
    assert.matches("option 'image' is required", raised(function() lockup.pool { docker = d, size = 1 } end))
    assert.matches("option 'size' is required", raised(function() lockup.pool { docker = d, image = "x" } end))
    assert.matches("'size'.*whole number, at least 1",
      raised(function() lockup.pool { docker = d, image = "x", size = 0 } end))
    assert.matches("'size'.*whole number", raised(function() lockup.pool { docker = d, image = "x", size = 1.5 } end))
    assert.matches("'max_starting'", raised(function()
      lockup.pool { docker = d, image = "x", size = 1, max_starting = 0 } end))
    assert.matches("when_empty", raised(function()
      lockup.pool { docker = d, image = "x", size = 1, when_empty = "later" } end))
    assert.matches("unknown option 'sise'", raised(function() lockup.pool { docker = d, image = "x", sise = 1 } end))
    assert.matches("'memory'", raised(function()
      lockup.pool { docker = d, image = "x", size = 1, start = { memory = 0 } } end))
    local pool = pool_of { size = 1 }
    finally(function() pool:close() end)
    assert.matches("a number of seconds", raised(function() pool:acquire(-1) end))
    assert.matches("a box this pool handed out", raised(function() pool:release({}) end))
  end)
end)
