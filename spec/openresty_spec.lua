-- lockup inside a real nginx (spec/support/nginx.lua): handlers in
-- spec/fixtures/openresty/handlers.lua use the same API as a script, over
-- cosockets, and never block the worker; a request's boxes go away with it
-- however it ends.
local helper = require "helper"
local nginx = require "support.nginx"
local cjson = require "cjson"

local function boxes_set()
  local set = {}
  for _, id in ipairs(helper.boxes()) do set[id] = true end
  return set
end

-- Boxes that exist now and did not in `before`.
local function new_boxes(before)
  local list = {}
  for _, id in ipairs(helper.boxes()) do
    if not before[id] then list[#list + 1] = id end
  end
  return list
end

local function none_left(before, seconds)
  return helper.eventually(function() return #new_boxes(before) == 0 end, seconds or 20)
end

-- A JPEG's width and height, from its start-of-frame segment (baseline or progressive).
local function jpeg_size(data)
  local i = 3
  while i < #data do
    local marker, len = data:byte(i + 1), data:byte(i + 2) * 256 + data:byte(i + 3)
    if marker == 0xC0 or marker == 0xC2 then
      return data:byte(i + 7) * 256 + data:byte(i + 8), data:byte(i + 5) * 256 + data:byte(i + 6)
    end
    i = i + 2 + len
  end
end

local function url_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("lockup inside nginx #nginx", function()
  local server
  setup(function() server = nginx.start() end)
  teardown(function() if server then server:stop() end end)

  it("runs a command in a box from a handler and returns code, stdout and stderr exactly, and its cost", function()
    local body, status = server:curl { path = "/run?cmd=" .. url_encode("printf 'a\\0b\\n'; echo oops >&2; exit 3") }
    assert.equal(200, status, body .. server:log())
    local r = cjson.decode(body)
    assert.equal(3, r.code)
    assert.equal("a\0b\n", r.stdout)
    assert.equal("oops\n", r.stderr)
    assert.equal("attach", r.lane)
    assert.is_nil(r.cpu_user) -- the step ended the shell: the box's cgroup went with it
    -- what a step cost, from the box's cgroup, read from inside nginx too
    body = server:curl { path = "/run?cmd=" .. url_encode("dd if=/dev/zero of=/dev/null bs=100M count=1") }
    r = cjson.decode(body)
    assert.is_true(type(r.cpu_user) == "number" and r.cpu_user + r.cpu_sys > 0, body)
    assert.is_true(r.memory_peak >= 100 * 1024 * 1024, body)
  end)

  -- Issue 19 on the cosocket lane: a 1 s timeout holds under a flood,
  -- through box:run and box:exec, and the box answers after.
  it("ends a flooding step at its timeout plus 1 s, through run and exec", function()
    for _, how in ipairs { "run", "exec" } do
      for _, cmd in ipairs { "yes", "yes >&2", "yes & yes >&2" } do
        local body, status = server:curl { path = "/flood?how=" .. how .. "&cmd=" .. url_encode(cmd) }
        assert.equal(200, status, body .. server:log())
        local r = cjson.decode(body)
        assert.is_true(r.took < 2, how .. " of " .. cmd .. " took " .. r.took .. " s")
        assert.is_true(r.status == "timeout" or r.status == "truncated", body)
        if not r.box_stopped then assert.equal("ok\n", r.after, body) end
      end
    end
  end)

  it("moves files in and out, and an exec's stdin ends without a half-close", function()
    local data = ("hello, box\n"):rep(20000)
    helper.write(server.dir .. "/upload", data)
    local body, status = server:curl { path = "/files", flags = "--data-binary @" .. server.dir .. "/upload" }
    assert.equal(200, status, body .. server:log())
    local r = cjson.decode(body)
    assert.equal(data:upper(), r.back)
    assert.equal(tostring(#data) .. "\n", r.counted)
    assert.equal(0, r.code)
  end)

  it("drives processes in a box: line by line, stdin ended, two light threads on one process, a terminal", function()
    local body, status = server:curl { path = "/process" }
    assert.equal(200, status, body .. server:log())
    local r = cjson.decode(body)
    assert.same({ "got:line 1", "got:line 2", "got:line 3" }, r.answers)
    assert.equal("bye\n", r.rest)
    assert.equal(0, r.code)
    local want = {}
    for i = 1, 50 do want[i] = tostring(i) end
    assert.equal(table.concat(want, ","), r.got)
    assert.equal(0, r.cat_code)
    assert.equal("40 100", r.size)
  end)

  it("never blocks the worker: 20 requests each sleeping 1 s in a box, while /ping answers", function()
    local before = boxes_set()
    local out = server.dir .. "/load"
    os.execute("rm -f " .. out .. ".*")
    for i = 1, 20 do
      os.execute(string.format("curl -s -o %s.%d -w '%%{http_code}' 'http://127.0.0.1:%d/run?cmd=sleep%%201' >%s.%d.code &",
        out, i, server.port, out, i))
    end
    local pings = {}
    for i = 1, 20 do
      local body, status, took = server:curl { path = "/ping" }
      assert.equal("pong\n", body)
      assert.equal(200, status)
      pings[i] = took
      os.execute("sleep 0.1")
    end
    assert.is_true(helper.eventually(function()
      for i = 1, 20 do
        local f = io.open(out .. "." .. i .. ".code")
        local code = f and f:read("a")
        if f then f:close() end
        if code ~= "200" then return false end
      end
      return true
    end, 120), "not every request succeeded")
    for i = 1, 20 do
      local f = assert(io.open(out .. "." .. i))
      assert.equal(0, cjson.decode(f:read("a")).code)
      f:close()
    end
    table.sort(pings)
    print(string.format("    /ping under 20 box requests: median %.1f ms, max %.1f ms",
      pings[10] * 1000, pings[20] * 1000))
    -- a worker blocked by a box would hold a /ping for the box's whole second;
    -- a loaded machine (load 11 seen) delays one by tens of ms
    assert.is_true(pings[20] < 0.5, string.format("a /ping took %.0f ms", pings[20] * 1000))
    assert.is_true(none_left(before))
  end)

  it("runs lockup.run's tasks concurrently in a handler", function()
    local body, status, took = server:curl { path = "/many?n=5" }
    assert.equal(200, status, body .. server:log())
    assert.equal("1\n2\n3\n4\n5\n\n", body) -- each stdout, then ngx.say's newline
    assert.is_true(took < 5 * 1 + 3, "the 5 boxes ran one after another: " .. took .. " s")
  end)

  it("leaves no box behind when a handler raises", function()
    local before = boxes_set()
    local _, status = server:curl { path = "/raise" }
    assert.equal(500, status)
    assert.matches("handler failed on purpose", server:log(), 1, true)
    assert.is_true(none_left(before))
  end)

  it("leaves no box behind when the client goes away mid-request", function()
    local before = boxes_set()
    local _, _, took = server:curl { path = "/hold?seconds=60", flags = "--max-time 3" }
    assert.is_true(took < 10)
    assert.is_true(none_left(before), "a box outlived its aborted request")
  end)

  it("leaves no box behind across nginx -s reload with a box running", function()
    local before = boxes_set()
    os.execute(string.format("curl -s -o /dev/null 'http://127.0.0.1:%d/hold?seconds=60' &", server.port))
    assert.is_true(helper.eventually(function() return #new_boxes(before) > 0 end, 20), "no box started")
    server:reload()
    assert.is_true(none_left(before, 30), "a box outlived the reload")
    assert.equal("pong\n", server:get("/ping"))
  end)

  it("calls an inmate from a handler", function()
    local dir = url_encode(io.popen("pwd"):read("*l") .. "/spec/fixtures/inmates/basic")
    local body, status = server:curl { path = "/inmate?s=foobar&dir=" .. dir, flags = "--max-time 300" }
    assert.equal(200, status, body .. server:log())
    assert.equal("raboof\n", body)
  end)

  it("serves the thumbnail example: POST a JPEG, get a 120x120 JPEG back", function()
    local body, status = server:curl { path = "/thumbnail",
      flags = "--max-time 600 --data-binary @examples/photo.jpg" }
    assert.equal(200, status, body .. server:log())
    assert.equal("\255\216\255", body:sub(1, 3)) -- a JPEG's start of image
    assert.same({ 120, 120 }, { jpeg_size(body) })
  end)

  it("keeps warm boxes in a worker's pool and hands each out once, to any request", function()
    local before = boxes_set()
    local function pooled()
      local body, status = server:curl { path = "/pooled", flags = "--max-time 120" }
      assert.equal(200, status, body .. server:log())
      return cjson.decode(body)
    end
    local function stats()
      return cjson.decode((server:curl { path = "/pool_stats" }))
    end
    local first = pooled() -- makes the pool: this one waited for a start
    assert.equal("pooled\n", first.stdout)
    assert.is_truthy(helper.eventually(function() return stats().ready == 2 end, 60), server:log())
    local seen = { [first.id] = true }
    local fast = {}
    for _ = 1, 4 do
      local r = pooled()
      assert.is_nil(seen[r.id], "a box was handed out twice")
      seen[r.id] = true
      fast[#fast + 1] = r.acquire_ms
      assert.is_truthy(helper.eventually(function() return stats().ready == 2 end, 60))
    end
    table.sort(fast)
    print(string.format("    pool:acquire inside nginx, warm: median %.1f ms, max %.1f ms", fast[2], fast[4]))
    assert.is_true(stats().hits >= 4)
    -- a parked box whose container is killed is never handed out
    local victim = stats().waiting[1]
    helper.remove(victim)
    local r = pooled()
    assert.are_not.equal(victim, r.id)
    assert.equal("pooled\n", r.stdout)
    assert.equal(1, r.stats.died)
    assert.equal("closed\n", (server:curl { path = "/pool_close" }))
    assert.is_true(none_left(before), "a pooled box outlived its pool")
  end)

  it("resets a pooled box in the request that gives it back, and hands it out clean", function()
    local before = boxes_set()
    local function reset_pooled(cmd, close)
      local body, status = server:curl { path = "/reset_pooled?cmd=" .. url_encode(cmd)
        .. (close and "&close=1" or ""), flags = "--max-time 120" }
      assert.equal(200, status, body .. server:log())
      return cjson.decode(body)
    end
    local first = reset_pooled("echo litter > /tmp/litter; sleep 100 & echo used")
    assert.equal("used\n", first.stdout)
    local second = reset_pooled("ls -A /tmp; ps -o comm | grep -c sleep")
    assert.equal(first.id, second.id) -- the same container, reused
    assert.equal("0\n", second.stdout) -- no file, no process left
    assert.is_true(second.stats.resets >= 1)
    reset_pooled("true", true)
    assert.is_true(none_left(before), "a pooled box outlived its pool")
  end)

  it("ends a worker's warm boxes with the worker (nginx -s reload)", function()
    local before = boxes_set()
    local body, status = server:curl { path = "/pooled", flags = "--max-time 120" }
    assert.equal(200, status, body .. server:log())
    assert.is_truthy(helper.eventually(function()
      return cjson.decode((server:curl { path = "/pool_stats" })).ready == 2
    end, 60))
    server:reload() -- the old worker exits: its parked connections close, and the boxes end
    assert.is_true(none_left(before, 30), "a parked box outlived its worker")
  end)

  it("names the phase where it cannot run, and says what to do", function()
    local p = io.popen(string.format("curl -s -D - -o /dev/null 'http://127.0.0.1:%d/header_filter'", server.port))
    local head = p:read("a")
    p:close()
    assert.matches("header_filter phase", head, 1, true)
    assert.matches("ngx.timer.at", head, 1, true)
  end)
end)
