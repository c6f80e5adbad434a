-- lockup.inmate against the real Engine: jails built from the inmate
-- directories in spec/fixtures/inmates/ (basic: values, yields, errors, crashes;
-- other: the same names, other answers; hostile: forged frames and probes of
-- the jail's walls; nolua: a base image without Lua), called from the host.
-- Every test ends with no container of this process left (after_each).
-- Durations asserted below are hang guards and "it did not wait" checks, with
-- room for a loaded machine; the figures worth reading are printed.
local helper = require "helper"
local C = require "support.compat"
local lockup = require "lockup"
local core = require "lockup.core"
local codec = require "lockup.inmate.codec"

local now = core.monotime
local fmt = string.format

local FIXTURES = "spec/fixtures/inmates"
local BASIC, OTHER, HOSTILE, NOLUA = FIXTURES .. "/basic", FIXTURES .. "/other", FIXTURES .. "/hostile",
  FIXTURES .. "/nolua"

local owner, before

-- The error a call raised: asserts it raised an InmateError of `kind`.
local function fails(kind, fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error of kind " .. kind .. ", the call returned")
  assert.equal("table", type(e), "expected an InmateError, got: " .. tostring(e))
  assert.equal("lockup.inmate.error", (getmetatable(e) or {}).__name)
  assert.equal(kind, e.kind, tostring(e))
  assert.is_string(e.message)
  return e
end

-- jail:call(...) that must fail with `kind`.
local function call_fails(kind, jail, ...)
  return fails(kind, jail.call, jail, ...)
end

-- Containers of this process that were not there when the suite began.
local function new_boxes()
  local old = {}
  for _, id in ipairs(before) do old[id] = true end
  local list = {}
  for _, id in ipairs(helper.boxes(owner)) do
    if not old[id] then list[#list + 1] = id end
  end
  return list
end

local function no_leak()
  assert.same({}, new_boxes())
end

-- A copy of a fixture in a fresh temp directory: its path (the inmate dir) and
-- the temp dir to remove.
local function copy_fixture(dir)
  local tmp = helper.tmpdir()
  local _, ok = helper.sh(fmt("cp -r %s %s/inmate", helper.shell_quote(dir), helper.shell_quote(tmp)))
  assert(ok, "cp -r failed")
  return tmp .. "/inmate", tmp
end

-- Removes a throwaway image; fine if it is not there.
local function remove_image(name)
  if name and helper.docker():image_exists(name) then assert(helper.docker():remove_image(name, { force = true })) end
end

-- Every image id the Engine has, intermediate ones too, as a set.
local function all_images()
  local status, list = helper.docker():request("GET", "/images/json", { query = { all = 1 } })
  assert(status, list)
  local set = {}
  for _, img in ipairs(list) do set[img.Id] = img end
  return set
end

-- A jail of the basic inmate whose on_output tells when nap() is running:
-- returns it, a function that waits (inside lockup.run) until a call naps,
-- and one that says whether one does yet.
local function napping_jail(opts)
  local napping = false
  opts = opts or {}
  opts.dir = opts.dir or BASIC
  opts.on_output = function(chunk) napping = napping or chunk:find("napping", 1, true) ~= nil end
  local jail = lockup.inmate(opts)
  return jail, function()
    assert(helper.eventually(function() return napping end, 20), "the call never started napping")
  end, function() return napping end
end

-- Strips the directory from paths in a message: "spec/.../basic/inmate.lua:12"
-- and "/inmate/inmate.lua:12" both read "inmate.lua:12".
local function pathless(s)
  return (s:gsub("[^%s'\"]*/(inmate%.lua:)", "%1"))
end

setup(function()
  owner = helper.owner()
  before = helper.boxes(owner)
end)

after_each(function()
  -- every case, whatever it did, leaves no container of ours behind
  assert.same({}, new_boxes(), "containers left behind by this test")
end)

describe("lockup.inmate", function()
  describe("the issue's example", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("builds lockup-inmate:<hash> and runs reverse in the jail", function()
      assert.matches("^lockup%-inmate:%x+$", jail.image)
      assert.equal("raboof", jail:reverse("foobar"))
      assert.matches(jail.image, tostring(jail), 1, true)
      no_leak()
    end)

    it("streams count's yields to the callback as they happen, before the call returns", function()
      local seen, at = {}, {}
      local t0 = now()
      local r = C.pack(jail:count(3, 0.4, function(...)
        assert.equal(1, select("#", ...))
        seen[#seen + 1] = ...
        at[#at + 1] = now() - t0
      end))
      local returned = now() - t0
      print(fmt("\n    yields at %.2f, %.2f, %.2f s; the call returned at %.2f s", at[1], at[2], at[3], returned))
      assert.same({ 1, 2, 3 }, seen)
      assert.same({ n = 2, "done", 3 }, r)
      -- the inmate sleeps 0.4 s after each yield: each arrived while it slept
      for i = 1, 3 do
        assert.is_true(returned - at[i] >= 0.3, fmt("yield %d came only with the result", i))
      end
      assert.is_true(at[3] - at[2] >= 0.3, "yield 3 came with yield 2")
    end)

    -- A box step's stdout, where the protocol travels, keeps a trailing 0x01
    -- back (it could begin the step's sentinel): yield(1) ends in 0x01, and
    -- the runner follows it with an empty P frame so that it arrives at once.
    it("a yield arrives when it is made, whatever its last byte (yield(1) ends in 0x01)", function()
      local at = {}
      local t0 = now()
      jail:count(2, 1, function() at[#at + 1] = now() - t0 end)
      local returned = now() - t0
      assert.is_true(at[2] - at[1] >= 0.7, fmt("yield 1 arrived at %.2f s, with yield 2 (%.2f s; returned at %.2f s)",
        at[1], at[2], returned))
    end)

    it("without a callback, drops the yields and returns the results", function()
      assert.same({ n = 2, "done", 2 }, C.pack(jail:count(2)))
      assert.same({ n = 2, "done", 2 }, C.pack(jail:call("count", 2)))
    end)

    it("finds the inmate's own modules (package.path) and data files (next to the module)", function()
      assert.equal("HI!", jail:shout("hi"))
      assert.same({ "alpha", "beta", "gamma" }, jail:words())
    end)
  end)

  describe("jail:build()", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("returns the same name twice, the second time without building", function()
      local id_before = select(2, helper.docker():request("GET", "/images/" .. jail.image .. "/json")).Id
      local t0 = now()
      local a = jail:build()
      local t1 = now()
      local b = jail:build()
      local t2 = now()
      print(fmt("\n    jail:build() on an image that exists: %.0f ms, then %.0f ms", (t1 - t0) * 1000, (t2 - t1) * 1000))
      assert.equal(jail.image, a)
      assert.equal(a, b)
      assert.is_true(t2 - t1 < 1, "the second build took " .. (t2 - t1) .. " s")
      local id_after = select(2, helper.docker():request("GET", "/images/" .. b .. "/json")).Id
      assert.equal(id_before, id_after)
      -- another jail of the same directory (wherever it sits) has the same name
      local dir, tmp = copy_fixture(BASIC)
      finally(function() helper.rm_rf(tmp) end)
      assert.equal(a, lockup.inmate { dir = dir }.image)
    end)

    it("gives a new name when a file of the inmate directory changes, built once", function()
      local dir, tmp = copy_fixture(BASIC)
      local built = {}
      finally(function()
        for _, name in ipairs(built) do remove_image(name) end
        helper.rm_rf(tmp)
      end)
      local token = "token-" .. core.random_hex(8)
      helper.write(dir .. "/data/words.txt", "alpha beta\ngamma\n" .. token .. "\n")
      local events = 0
      local progress = function() events = events + 1 end
      local t0 = now()
      local edited = lockup.inmate { dir = dir, on_progress = progress }
      local t1 = now()
      built[1] = edited.image
      assert.matches("^lockup%-inmate:%x+$", edited.image)
      assert.are_not.equal(jail.image, edited.image)
      assert.is_true(events > 0, "no build progress: the image was not built")
      assert.same({ "alpha", "beta", "gamma", token }, edited:words())
      -- built once: the next jail of that directory finds it
      events = 0
      local t2 = now()
      local again = lockup.inmate { dir = dir, on_progress = progress }
      local t3 = now()
      print(fmt("\n    edited inmate: build %.2f s, then %.3f s (skipped)", t1 - t0, t3 - t2))
      assert.equal(edited.image, again.image)
      assert.equal(edited.image, again:build())
      assert.equal(0, events)
      -- a change in a module changes the name again
      helper.write(dir .. "/lib/strings.lua", "return { shout = function(s) return s .. '?' end }\n")
      local j3 = lockup.inmate { dir = dir }
      built[2] = j3.image
      assert.are_not.equal(edited.image, j3.image)
      assert.equal("hi?", j3:shout("hi"))
    end)

    it("skips the build when given image =", function()
      local events = 0
      local t0 = now()
      -- the image decides, not the dir: other/'s functions are not in it (the
      -- client is given: Podman takes 1-7 s to answer a new one's /version)
      local prebuilt = lockup.inmate { image = jail.image, dir = OTHER, docker = helper.docker(),
        on_progress = function() events = events + 1 end }
      assert.is_true(now() - t0 < 2)
      assert.equal(jail.image, prebuilt.image)
      assert.equal(jail.image, prebuilt:build())
      assert.equal(0, events)
      assert.equal("basic", prebuilt:whoami())
      -- a name the Engine does not know: kind "build", at once, saying so
      local e = fails("build", lockup.inmate, { image = "lockup-inmate:00000000000000000000000000000000" })
      assert.matches("not on the Engine", e.message, 1, true)
    end)
  end)

  describe("values", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("keep nil holes in arguments and results (select('#'))", function()
      local n, types = jail:types(nil, 2, nil, 2.5, nil)
      assert.equal(5, n)
      assert.same({ "nil", "integer", "nil", "float", "nil" }, types)
      -- 2.0 is a float on Lua 5.4; LuaJIT has no integer subtype, and there an
      -- integral number crosses as an integer (lockup.compat)
      n, types = jail:types(2.0)
      assert.equal(1, n)
      assert.same({ C.INTEGERS and "float" or "integer" }, types)
      assert.same({ n = 4, nil, 2, nil, nil }, C.pack(jail:echo(nil, 2, nil, nil)))
      assert.same({ n = 0 }, C.pack(jail:echo()))
      assert.same({ n = 5, 1, nil, "three", nil, nil }, C.pack(jail:multi()))
    end)

    it("round trip nested tables, integers and floats apart, the extremes exactly", function()
      local nested = { a = { b = { c = { 1, 2, { d = "e" } } } }, true, [2.5] = "float key", [false] = "f",
        [-1] = { {}, { {} } }, list = { 1.0, 2, "3" } }
      -- Integers apart from floats, and integers beyond 2^53, exist on Lua 5.4
      -- only; on LuaJIT the extremes are -2^63 and 2^53 as doubles.
      local want = C.INTEGERS and { 1, 1.0, math.maxinteger, math.mininteger, 2 ^ 53, 0.1 } or { 1, -2 ^ 63, 2 ^ 53, 0.1 }
      local r = C.pack(jail:echo(nested, C.unpack(want)))
      assert.same(nested, r[1])
      for i, v in ipairs(want) do
        assert.equal(v, r[i + 1])
        if C.INTEGERS then assert.equal(math.type(v), math.type(r[i + 1]), "value " .. i) end
      end
      if C.INTEGERS then
        assert.equal("float", math.type(r[1].list[1]))
        local _, types = jail:types(1, 1.0, math.maxinteger, 2 ^ 63)
        assert.same({ "integer", "float", "integer", "float" }, types)
      else -- LuaJIT: integral doubles in the int64 range cross as integers, 2^63 as a float
        local _, types = jail:types(1, 1.5, -2 ^ 63, 2 ^ 53, 2 ^ 63)
        assert.same({ "integer", "float", "integer", "integer", "float" }, types)
      end
    end)

    it("keep -0.0, NaN, inf and -inf", function()
      local z, nan, inf, ninf = jail:echo(-0.0, 0 / 0, math.huge, -math.huge)
      assert.equal(-math.huge, 1 / z)
      assert.is_true(nan ~= nan)
      assert.equal(math.huge, inf)
      assert.equal(-math.huge, ninf)
      -- and the jail sees them so too
      assert.same({ n = 4, false, -math.huge, false, false }, C.pack(jail:float_facts(-0.0)))
      assert.is_true((jail:float_facts(0 / 0)))
      assert.same({ n = 4, false, 0.0, true, false }, C.pack(jail:float_facts(math.huge)))
    end)

    it("keep every byte: all 256, NUL, in values and keys", function()
      local all = helper.all_bytes()
      local s = "\0" .. all .. "\0\0"
      local r, t = jail:echo(s, { [all] = all, ["\0"] = "\0" })
      assert.equal(s, r)
      assert.same({ [all] = all, ["\0"] = "\0" }, t)
      assert.equal(all:reverse(), jail:reverse(all))
    end)

    it("carry a big string (3 MB) both ways", function()
      local parts = {}
      for i = 1, 3 * 1024 do parts[i] = C.bin_pack(">I4", i):rep(256) end -- 1 KiB each, all different
      local big = table.concat(parts)
      local t0 = now()
      local back = jail:echo(big)
      local t1 = now()
      print(fmt("\n    %d bytes there and back: %.2f s", #big, t1 - t0))
      assert.equal(#big, #back)
      assert.is_true(big == back, "the big string came back different")
      local len, sum = jail:measure(big)
      local want = 0
      for i = 1, #big, 4093 do want = (want + big:byte(i)) % 1000003 end
      assert.equal(#big, len)
      assert.equal(want, sum)
    end)

    it("come back as several results", function()
      assert.same({ n = 3, 1, "two", { 3 } }, C.pack(jail:echo(1, "two", { 3 })))
    end)

    describe("that cannot cross", function()
      -- A connection of its own whose start is counted: nothing may start.
      local starts, spied
      setup(function()
        starts = 0
        local d = assert(lockup.connect())
        local start = d.start
        d.start = function(...)
          starts = starts + 1
          return start(...)
        end
        spied = lockup.inmate { dir = BASIC, docker = d }
      end)

      it("raise kind argument saying what and where, and start no container", function()
        local boxes0, starts0 = helper.boxes(owner), starts
        local cyclic = {}
        cyclic.self = cyclic
        local cases = {
          { { 1, { cb = print } }, "cannot send a function (at args[2].cb)" },
          { { "x", cyclic }, "cannot send a table that contains itself (at args[2].self)" },
          { { { list = { 1, { deeper = cyclic } } } }, "cannot send a table that contains itself (at args[1].list[2].deeper.self)" },
          { { io.stdout }, "cannot send a userdata (at args[1])" },
          { { coroutine.create(print), 1 }, "cannot send a thread (at args[1])" },
          { { { [{}] = 1 } }, "cannot send a table as a table key (at args[1])" },
        }
        for _, case in ipairs(cases) do
          local args = case[1]
          local e = fails("argument", spied.echo, spied, C.unpack(args))
          assert.equal(case[2], e.message)
          assert.equal("echo", e.fn)
        end
        assert.equal(starts0, starts)
        assert.same(boxes0, helper.boxes(owner))
        -- and the jail still works
        assert.equal("cba", spied:reverse("abc"))
        assert.equal(starts0 + 1, starts)
      end)

      -- The request's item 1 is the name: only the path's root is renumbered.
      it("name the path exactly, even under a key that reads like a path", function()
        local e = fails("argument", spied.echo, spied, 1, { ["args[5]"] = print })
        assert.equal('cannot send a function (at args[2]["args[5]"])', e.message)
      end)

      it("a result that cannot cross raises kind error, saying what and where", function()
        local e = call_fails("error", spied, "return_function")
        assert.equal("cannot send a function (at return[2])", e.message)
      end)
    end)
  end)

  describe("errors", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("error('x') in the jail: kind error, the inmate's message and traceback", function()
      local e = call_fails("error", jail, "fail", "x")
      assert.matches("^/inmate/inmate%.lua:%d+: x$", e.message)
      assert.equal("fail", e.fn)
      assert.matches("stack traceback:", e.traceback, 1, true)
      assert.matches("/inmate/inmate%.lua:%d+: in ", e.traceback)
      assert.equal(jail.image, e.jail)
      -- what the call cost in its box (issue 22)
      assert.is_true(type(e.cpu_user) == "number" and type(e.cpu_sys) == "number", tostring(e.cpu_user))
      local text = tostring(e)
      assert.matches("[jail " .. jail.image .. "] fail(): error: " .. e.message, text, 1, true)
      assert.matches("(in the jail) stack traceback:", text, 1, true)
      no_leak()
    end)

    it("an error value that is a table: its tostring", function()
      assert.matches("^table: ", call_fails("error", jail, "fail_table").message)
      assert.equal("a custom error object", call_fails("error", jail, "fail_tostring").message)
    end)

    it("names that are not the module's own functions: kind unknown_function", function()
      local names = { "nope", "__index", "os.exit", "../x", "", "print", "require", "inmate.reverse", "reverse.x",
        "/inmate/inmate.lua", "count\0" }
      local errs, tasks = {}, {}
      for i, name in ipairs(names) do
        tasks[i] = function() errs[i] = call_fails("unknown_function", jail, name) end
      end
      lockup.run(C.unpack(tasks))
      for i, name in ipairs(names) do
        assert.equal("the inmate module has no function " .. fmt("%q", name):gsub("\\\n", "\\n"), errs[i].message)
        assert.equal(name, errs[i].fn)
      end
    end)

    it("os.exit(3) in the jail: kind crashed, with the exit code", function()
      local e = call_fails("crashed", jail, "exit", 3)
      assert.matches("exit code 3", e.message, 1, true)
    end)

    it("a segfault: kind crashed, naming the signal", function()
      local e = call_fails("crashed", jail, "segv")
      assert.matches("segmentation fault", e.message:lower(), 1, true)
    end)

    it("a call past its own timeout: kind timeout, within seconds", function()
      local t0 = now()
      local e = call_fails("timeout", jail, { "sleep", timeout = 1 }, 30)
      local took = now() - t0
      print(fmt("\n    a 1 s call timeout raised after %.2f s", took))
      assert.is_true(took < 8, "took " .. took .. " s")
      assert.equal("no answer within 1s", e.message)
      assert.equal("sleep", e.fn)
    end)

    it("the jail's timeout option applies to every call; a call's own overrides it", function()
      local quick = lockup.inmate { dir = BASIC, timeout = 1 }
      local t0 = now()
      call_fails("timeout", quick, "sleep", 30)
      assert.is_true(now() - t0 < 8)
      assert.same({ n = 2, 2, "late" }, C.pack(quick:call({ "sleep", timeout = 10 }, 2, "late")))
    end)

    it("out of memory (start = { memory = '64m' }): kind oom", function()
      local small = lockup.inmate { dir = BASIC, start = { memory = "64m" } }
      local t0 = now()
      local e = call_fails("oom", small, "hog")
      assert.is_true(now() - t0 < 30)
      assert.matches("memory", e.message, 1, true)
      assert.is_true(e.memory_peak > 32 * 1024 * 1024, tostring(e.memory_peak)) -- up to the limit, 64 MiB
    end)

    it("the container removed during the call: kind died", function()
      local j, running = napping_jail()
      local e, took
      local t0 = now()
      lockup.run(function()
        e = call_fails("died", j, "nap", 30)
        took = now() - t0
      end, function()
        running()
        local ids = new_boxes()
        assert.equal(1, #ids)
        helper.remove(ids[1])
      end)
      assert.is_true(took < 15, "took " .. took .. " s")
      assert.matches("went away", e.message, 1, true)
    end)

    it("a base image without lua5.4: the build raises kind build, with the build's output", function()
      local dir, tmp = copy_fixture(NOLUA)
      -- a file of its own, so that the failed build's layers are this run's
      helper.write(dir .. "/run.txt", core.random_hex(8))
      local images0 = all_images()
      local base_id = select(2, helper.docker():request("GET", "/images/busybox:local/json")).Id
      finally(function()
        helper.rm_rf(tmp)
        -- the failed build's intermediate layers (new images descending from
        -- busybox:local), the newest first
        local images, ours = all_images(), {}
        for id, img in pairs(images) do
          local n, at = 0, img
          while at and not images0[at.Id] and at.ParentId ~= base_id do at, n = images[at.ParentId], n + 1 end
          if not images0[id] and at and at.ParentId == base_id then ours[#ours + 1] = { id = id, depth = n } end
        end
        table.sort(ours, function(a, b) return a.depth > b.depth end)
        for _, img in ipairs(ours) do helper.docker():request("DELETE", "/images/" .. img.id) end
      end)
      local e = fails("build", lockup.inmate, { dir = dir, base = "busybox:local" })
      assert.matches("has no lua5.4", e.message, 1, true)
      assert.matches("--- output of that step ---", e.message, 1, true) -- the build's own output follows
      assert.matches("lockup: the base image busybox:local has no lua5.4 on its PATH", e.message, 1, true)
      assert.equal("not built", e.jail)
      assert.matches("build: build failed", tostring(e), 1, true)
    end)

    it("a syntax error in inmate.lua: kind error at call time, with the message", function()
      local dir, tmp = copy_fixture(OTHER)
      helper.write(dir .. "/inmate.lua", "return {\n  f = function( end\n}\n")
      local jail2
      finally(function()
        remove_image(jail2 and jail2.image)
        helper.rm_rf(tmp)
      end)
      jail2 = lockup.inmate { dir = dir } -- builds: a syntax error is the jail's business
      local e = call_fails("error", jail2, "f")
      assert.matches("/inmate/inmate.lua:2:", e.message, 1, true)
      assert.matches("expected near 'end'", e.message, 1, true)
    end)
  end)

  describe("the protocol", function()
    local jail
    local output = {}
    setup(function()
      jail = lockup.inmate { dir = HOSTILE, on_output = function(chunk) output[#output + 1] = chunk end }
    end)

    it("cannot be confused by frame-looking prints on stdout and stderr, or frame bytes in values", function()
      output = {}
      local r = C.pack(jail:noisy())
      assert.same({ n = 3, "R\0\0\0\0", "H\0\0\0\5hello", { ["E\0\0\0\0"] = "Y\0\0\0\0" } }, r)
      local printed = table.concat(output)
      assert.matches("H\0\0\0\5helloR\0\0\0\0\n", printed, 1, true)
      assert.matches("Y\0\0\0\4\0\0\0\0\n", printed, 1, true)
      assert.matches("E\0\0\0\1xstderr says hi\n", printed, 1, true)
    end)

    -- Issue 19: the deadline holds however fast the jail prints (the box
    -- started for the call counts in the call's timeout).
    it("a call whose jail floods stdout and stderr: kind timeout, within its timeout plus 1 s", function()
      output = {}
      local t0 = now()
      local e = call_fails("timeout", jail, { "flood", timeout = 3 })
      local took = now() - t0
      assert.is_true(took < 4, "took " .. took .. " s")
      assert.equal("flood", e.fn)
      assert.is_true(#output > 0) -- on_output saw the flood as it came
    end)

    it("is versioned: a jail whose runtime speaks another version is refused, saying so", function()
      -- an image like a jail's, but with a runtime that says protocol 2
      local runtime = package.searchpath("lockup.inmate.runner", package.path):match("^(.*)/[^/]+$")
      local codec_text = helper.read(runtime .. "/codec.lua")
      local changed = codec_text:gsub("_M%.PROTOCOL = 1", "_M.PROTOCOL = 2")
      assert.are_not.equal(codec_text, changed)
      local tag = "lockup-spec-protocol2:" .. core.random_hex(4)
      assert(helper.docker():build { tag = tag, context = {
        Dockerfile = "FROM debian-lua:local\nCOPY lockup /lockup\nCOPY inmate /inmate\n",
        inmate = { dir = BASIC },
        ["lockup/runtime/runner.lua"] = { file = runtime .. "/runner.lua" },
        ["lockup/runtime/codec.lua"] = changed,
      } })
      finally(function() remove_image(tag) end)
      local other = lockup.inmate { image = tag }
      local e = call_fails("protocol", other, "reverse", "abc")
      assert.matches("speaks protocol 2", e.message, 1, true)
      assert.matches("rebuild", e.message, 1, true)
    end)
  end)

  describe("jail output is data", function()
    local jail
    setup(function() jail = lockup.inmate { dir = HOSTILE } end)

    local function R(...) return codec.frame(codec.RETURN, codec.encode_values(select("#", ...), ...)) end

    it("a forged R on fd 3: the host gets strings, runs nothing", function()
      local code = "os.exit(1)"
      local r = C.pack(jail:raw(R(code, "return os.exit(1)", { __index = "os.exit", __gc = "os.exit(2)" },
        "\27Lua"), true))
      assert.same({ n = 4, "os.exit(1)", "return os.exit(1)", { __index = "os.exit", __gc = "os.exit(2)" }, "\27Lua" }, r)
      assert.is_nil(getmetatable(r[3]))
      assert.equal("string", type(r[1]))
      -- still here, and a global named like the value was not touched
      assert.equal("function", type(os.exit))
    end)

    it("a forged Y reaches the callback as data; the call's own result follows", function()
      local got = {}
      local r = jail:raw(codec.frame(codec.YIELD, codec.encode_values(1, "require('os').exit(1)")), false,
        nil, function(v) got[#got + 1] = v end)
      assert.equal("honest", r)
      assert.same({ "require('os').exit(1)" }, got)
    end)

    it("a forged E: raised as kind error (the jail cannot choose the host's kinds)", function()
      for _, kind in ipairs { "timeout", "oom", "closed", "died", "protocol", "build", "argument", "error" } do
        local e = call_fails("error", jail, "raw", codec.frame(codec.ERROR, codec.encode_value {
          kind = kind, message = "forged " .. kind, traceback = "os.exit(1)" }), true)
        assert.equal("forged " .. kind, e.message)
        assert.equal("os.exit(1)", e.traceback)
      end
      -- the kinds the runner itself sends pass through as data
      local e = call_fails("unknown_function", jail, "raw", codec.frame(codec.ERROR,
        codec.encode_value { kind = "unknown_function", message = "forged" }), true)
      assert.equal("forged", e.message)
    end)

    it("garbage, out of order, oversized or malformed frames on fd 3: kind protocol", function()
      local cases = {
        { "Zgarbage", true, "unknown frame type" },
        { R("forged"), false, "bytes after the final frame" }, -- the runner's own R follows it
        { "R\255\255\255\255", false, "a frame larger than 4194304 bytes, the jail's max_frame", limit = true },
        { codec.frame(codec.HELLO, codec.encode_value { protocol = 1, runtime = "again" }), false, "unexpected H frame" },
        { codec.frame(codec.CALL, codec.encode_values(1, "reverse")), false, "unexpected C frame" },
        { codec.frame(codec.RETURN, "\0\0\0\9S"), true, "malformed values list" },
        { codec.frame(codec.RETURN, "\0\0\0\1Q"), true, "unknown tag" },
        { codec.frame(codec.ERROR, codec.encode_value "just a string"), true, "malformed error frame" },
        { codec.frame(codec.YIELD, "\0\0\0\1M\0\0\0\1N\0"), false, "nil table key" },
      }
      local errs, tasks = {}, {}
      for i, case in ipairs(cases) do
        tasks[i] = function() errs[i] = call_fails("protocol", jail, "raw", case[1], case[2]) end
      end
      lockup.run(C.unpack(tasks))
      for i, case in ipairs(cases) do
        -- a limit reached is not said to be a broken protocol: honest answers can be too big
        assert.equal(not case.limit, errs[i].message:find("the jail broke the protocol: ", 1, true) == 1)
        assert.matches(case[3], errs[i].message, 1, true)
      end
    end)

    it("a frame cut short by the jail's end: kind crashed, not a result", function()
      local e = call_fails("crashed", jail, "raw", R("cut short"):sub(1, 9), true)
      assert.matches("without an answer", e.message, 1, true)
    end)

    -- docs/inmate-protocol.md section 1: the host ends the call at the first
    -- violation and throws the container away, without waiting for the jail.
    it("a protocol violation ends the call at once, without waiting for the jail", function()
      local t0 = now()
      local e = call_fails("protocol", jail, { "raw", timeout = 30 }, "Zgarbage", true, 15)
      local took = now() - t0
      assert.matches("unknown frame type", e.message, 1, true)
      assert.is_true(took < 8, fmt("the call ended %.1f s after the garbage (the jail lingered 15 s)", took))
    end)
  end)

  describe("isolation", function()
    local jail, tmp, secret
    local CONTENT = "host secret " .. core.random_hex(8)
    setup(function()
      jail = lockup.inmate { dir = HOSTILE }
      tmp = helper.tmpdir()
      secret = tmp .. "/secret.txt"
      helper.write(secret, CONTENT)
    end)
    teardown(function() helper.rm_rf(tmp) end)

    it("a host file is not there for the jail, and stays intact", function()
      local data, err = jail:read_file(secret)
      assert.is_nil(data)
      assert.matches("No such file or directory", err, 1, true)
      local e = call_fails("error", jail, "write_file", secret, "pwned")
      assert.matches("No such file or directory", e.message, 1, true)
      assert.equal(CONTENT, helper.read(secret))
    end)

    it("outside its tmpfs the jail cannot write: Read-only file system", function()
      for _, path in ipairs { "/etc/x", "/inmate/inmate.lua", "/lockup/runtime/runner.lua", "/x" } do
        local e = call_fails("error", jail, "write_file", path, "x")
        assert.matches("Read-only file system", e.message, 1, true)
      end
      assert.is_true(jail:write_file("/tmp/x", "scratch space is fine"))
    end)

    it("has no network: only lo, and connections fail", function()
      assert.same({ "lo" }, jail:interfaces())
      local rc, out = jail:connect("192.0.2.1", 80) -- TEST-NET-1: never routed
      assert.are_not.equal(0, rc)
      assert.matches("Network is unreachable", out, 1, true)
      rc, out = jail:connect("127.0.0.1", 9) -- the jail's own loopback, nothing listens
      assert.are_not.equal(0, rc)
      assert.matches("Connection refused", out, 1, true)
    end)
  end)

  describe("concurrency", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("runs 20 calls of a 1 s sleep at once, each getting its own result", function()
      local N = 20
      local results, tasks = {}, {}
      for i = 1, N do
        tasks[i] = function() results[i] = C.pack(jail:sleep(1, "call " .. i)) end
      end
      local t0 = now()
      lockup.run(C.unpack(tasks))
      local wall = now() - t0
      print(fmt("\n    %d concurrent 1 s calls: %.2f s wall (%.1fx one call's sleep; one after another >= %d s)",
        N, wall, wall, N))
      for i = 1, N do assert.same({ n = 2, 1, "call " .. i }, results[i]) end
      assert.is_true(wall < 15, fmt("%d calls took %.1f s", N, wall))
    end)
  end)

  describe("nothing leaks", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("after a normal call, an error, a timeout, a crash and a raising callback", function()
      jail:reverse("x")
      no_leak()
      call_fails("error", jail, "fail", "x")
      no_leak()
      call_fails("timeout", jail, { "sleep", timeout = 1 }, 30)
      no_leak()
      call_fails("crashed", jail, "exit", 1)
      no_leak()
      call_fails("crashed", jail, "segv")
      no_leak()
      local ok, err = pcall(jail.count, jail, 3, 5, function() error("boom from the callback", 0) end)
      assert.is_false(ok)
      assert.equal("boom from the callback", err)
      no_leak()
    end)

    it("jail:close() during a call: the call raises kind closed at once; later calls too", function()
      local j, running = napping_jail()
      local e, took, t0
      lockup.run(function()
        e = call_fails("closed", j, "nap", 30)
        took = now() - t0
      end, function()
        running()
        t0 = now()
        j:close()
      end)
      print(fmt("\n    the call raised %.2f s after jail:close()", took))
      assert.is_true(took < 5, "took " .. took .. " s")
      assert.equal("the jail was closed during the call", e.message)
      no_leak()
      e = fails("closed", j.reverse, j, "x")
      assert.equal("attempt to use a closed jail", e.message)
      j:close() -- idempotent
      call_fails("closed", j, "reverse", "x")
      assert.matches("closed", tostring(j), 1, true)
    end)

    -- A close while a call's box is still starting ends that call too.
    it("jail:close() while a call's box is still starting: the call raises kind closed at once", function()
      local j, _, is_napping = napping_jail()
      local e, took, t0
      lockup.run(function()
        e = call_fails("closed", j, "nap", 8)
        took = now() - t0
      end, function()
        lockup.sleep(0.05) -- the other task is inside docker:start
        assert.is_false(is_napping())
        t0 = now()
        j:close()
      end)
      assert.equal("closed", e.kind)
      assert.is_true(took < 5, fmt("the call raised %.1f s after jail:close()", took))
    end)

    -- Lua 5.4 only: `<close>` is 5.4 syntax; LuaJIT has no to-be-closed variables.
    if C.CLOSE then
      it("a jail in a <close> variable is closed at the end of its scope", function()
        local j = helper.load54([[
          local lockup, BASIC, assert = ...
          local j
          do
            local scoped <close> = lockup.inmate { dir = BASIC }
            j = scoped
            assert.equal("cba", scoped:reverse("abc"))
          end
          return j
        ]], "inmate_spec <close> jail")(lockup, BASIC, assert)
        call_fails("closed", j, "reverse", "x")
      end)
    end
  end)

  describe("per-jail state", function()
    local basic, other
    setup(function()
      basic = lockup.inmate { dir = BASIC }
      other = lockup.inmate { dir = OTHER }
    end)

    it("two jails from different dirs, used at once, give their own results", function()
      local r = {}
      lockup.run(
        function() r[1] = { basic:sleep(1, "b") } end,
        function() r[2] = { other:sleep(1) } end,
        function() r[3] = basic:reverse("abc") end,
        function() r[4] = other:reverse("abc") end,
        function() r[5] = { basic:whoami(), other:whoami() } end)
      assert.same({ 1, "b" }, r[1])
      assert.same({ "other slept 1" }, r[2])
      assert.equal("cba", r[3])
      assert.equal("other:cba", r[4])
      assert.same({ "basic", "other" }, r[5])
      assert.are_not.equal(basic.image, other.image)
    end)

    it("each call runs in a fresh process: a global set by one call is gone for the next", function()
      assert.equal(1, basic:bump())
      assert.equal(1, basic:bump())
    end)
  end)

  describe("local_mode", function()
    local jail, loc
    setup(function()
      jail = lockup.inmate { dir = BASIC }
      loc = lockup.inmate { dir = BASIC, local_mode = true }
    end)

    it("gives the same results as the jail", function()
      assert.is_false(loc.image)
      assert.is_nil(loc:build())
      assert.equal(jail:reverse("foobar"), loc:reverse("foobar"))
      local ys_jail, ys_local = {}, {}
      local rj = C.pack(jail:count(3, nil, function(v) ys_jail[#ys_jail + 1] = v end))
      local rl = C.pack(loc:count(3, nil, function(v) ys_local[#ys_local + 1] = v end))
      assert.same(rj, rl)
      assert.same(ys_jail, ys_local)
      assert.same({ 1, 2, 3 }, ys_local)
      assert.same(C.pack(jail:multi()), C.pack(loc:multi()))
      local values = { nil, 1, 1.0, -0.0, math.maxinteger or 2 ^ 53, helper.all_bytes(), { a = { 1, 2 } }, nil }
      local vj, vl = C.pack(jail:types(C.unpack(values, 1, 8))), C.pack(loc:types(C.unpack(values, 1, 8)))
      assert.same(vj, vl)
      assert.same(C.pack(jail:echo(C.unpack(values, 1, 8))), C.pack(loc:echo(C.unpack(values, 1, 8))))
      assert.equal(jail:shout("x"), loc:shout("x"))
      assert.same(jail:words(), loc:words())
    end)

    it("raises the same error kinds and messages (paths aside)", function()
      local cases = {
        { "error", "fail", "x" },
        { "error", "fail_tostring" },
        { "error", "return_function" },
        { "unknown_function", "nope" },
        { "unknown_function", "os.exit" },
        { "unknown_function", "" },
      }
      for _, case in ipairs(cases) do
        local ej = call_fails(case[1], jail, C.unpack(case, 2))
        local el = call_fails(case[1], loc, C.unpack(case, 2))
        assert.equal(pathless(ej.message), pathless(el.message))
        assert.equal(ej.fn, el.fn)
        assert.equal(ej.traceback == nil, el.traceback == nil)
        assert.equal("local mode", el.jail)
      end
      local e = call_fails("error", loc, "fail", "x")
      assert.matches("^spec/fixtures/inmates/basic/inmate%.lua:%d+: x$", e.message)
      assert.matches("stack traceback:", e.traceback, 1, true)
      -- what cannot cross is refused the same way
      assert.equal(fails("argument", jail.echo, jail, { print }).message, fails("argument", loc.echo, loc, { print }).message)
    end)

    it("passes an error of the caller's own callback on as it is, in both modes, leaving no box", function()
      for _, j in ipairs { jail, loc } do
        local ok, err = pcall(j.count, j, 3, nil, function(v) error({ mine = v }) end)
        assert.is_false(ok)
        assert.same({ mine = 1 }, err)
      end
      assert.same({}, new_boxes())
    end)

    it("needs no Docker", function()
      local code = [[
        local lockup = require "lockup"
        assert(not lockup.connect(), "a daemon answered")
        local j = lockup.inmate { dir = "spec/fixtures/inmates/basic", local_mode = true }
        local ok, e = pcall(j.nope, j)
        io.write(j:reverse("foobar"), " ", select(2, j:count(2)), " ", e.kind, "\n")
      ]]
      local out, ok = helper.sh(helper.lua_cmd(code, { env = { DOCKER_HOST = "unix:///nonexistent/docker.sock" } })
        .. " 2>&1")
      assert.is_true(ok, out)
      assert.equal("raboof 2 unknown_function\n", out)
    end)
  end)

  -- What Hoosegow left out, one spec each.
  describe("Beyond Hoosegow", function()
    local jail
    setup(function() jail = lockup.inmate { dir = BASIC } end)

    it("stop timeout applied: jail:close() during a call ends it promptly", function()
      local j, running = napping_jail()
      local took, t0
      lockup.run(function()
        call_fails("closed", j, "nap", 60)
        took = now() - t0
      end, function()
        running()
        t0 = now()
        j:close()
      end)
      assert.is_true(took < 5, "took " .. took .. " s")
      no_leak()
    end)

    it("a dead container gives an error, not nil", function()
      local j, running = napping_jail()
      local r
      lockup.run(function()
        r = C.pack(pcall(j.nap, j, 30))
      end, function()
        running()
        helper.remove(new_boxes()[1])
      end)
      assert.is_false(r[1])
      assert.equal("died", r[2].kind)
    end)

    it("per-call timeout exists", function()
      local t0 = now()
      local e = call_fails("timeout", jail, { "sleep", timeout = 1 }, 30)
      assert.is_true(now() - t0 < 8)
      assert.equal("sleep", e.fn)
    end)

    it("no container leaks when a call raises", function()
      for _, case in ipairs { { "error", "fail", "x" }, { "crashed", "exit", 2 }, { "unknown_function", "nope" } } do
        call_fails(case[1], jail, C.unpack(case, 2))
        no_leak()
      end
    end)

    it("build errors are shown, not swallowed", function()
      local dir, tmp = copy_fixture(NOLUA)
      finally(function() helper.rm_rf(tmp) end)
      -- fails before any layer: the base image does not exist
      local e = fails("build", lockup.inmate, { dir = dir, base = "lockup-no-such-base:local" })
      assert.matches("lockup-no-such-base:local", e.message, 1, true)
      assert.matches(e.message, tostring(e), 1, true)
    end)

    it("state is per jail: two jails of one directory keep their own options and output", function()
      local out_a, out_b = {}, {}
      local a = lockup.inmate { dir = BASIC, timeout = 1, on_output = function(c) out_a[#out_a + 1] = c end }
      local b = lockup.inmate { dir = BASIC, on_output = function(c) out_b[#out_b + 1] = c end }
      assert.equal(a.image, b.image)
      local ea, rb
      lockup.run(function()
        assert.is_true(a:say("to a"))
        ea = call_fails("timeout", a, "sleep", 3)
      end, function()
        assert.is_true(b:say("to b"))
        rb = C.pack(b:sleep(2, "b"))
      end)
      assert.equal("sleep", ea.fn)
      assert.same({ n = 2, 2, "b" }, rb)
      -- (a's output also has the shell's "Killed" for the timed-out sleep)
      assert.matches("^to a\n", table.concat(out_a))
      assert.is_nil(table.concat(out_a):find("to b", 1, true))
      assert.equal("to b\n", table.concat(out_b))
    end)
  end)
end)
