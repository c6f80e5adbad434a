-- box:spawn (lockup.process) against the real Engine, on the lane the run
-- picks: a process beside the box's steps, driven from Lua while it runs.
-- Covered: writing its stdin and reading its answers line by line; the read
-- formats (any, line, L, a byte count, all) and their eof and timeout; the
-- output callbacks; wait (exit code, held output, timeout, the same result
-- again); spawn's timeout; kill (signals, children, a daemon that left the
-- session); a terminal (merged streams, size, resize, Ctrl-C, Ctrl-D);
-- backpressure and bounded output; bad input; independence from the box's
-- steps, kill_processes and reset; coroutines; the process's end with its
-- box or its Lua process; box:processes. Every box a test starts is stopped
-- by after_each, which also checks that no box was left behind.
local lockup = require "lockup"
local helper = require "helper"
local now = require("lockup.core").monotime
local C = require "support.compat"

local raised = helper.raised

local opened = {} -- the boxes the running test started, stopped by after_each
local before -- this process's boxes when the test began (helper.box_set)

local function start(opts)
  opts = opts or {}
  opts.image = opts.image or helper.IMAGE
  opts.runtime = opts.runtime or helper.RUNTIME
  local box, err = helper.docker():start(opts)
  assert(box, err)
  opened[#opened + 1] = box
  return box
end

-- A process that must start.
local function spawn(box, cmd, opts)
  local proc, err = box:spawn(cmd, opts)
  assert(proc, err)
  return proc
end

-- Reads stdout with read("any") until `pattern` (a Lua pattern) is found in
-- all that came, or `seconds` pass: what came, and whether it was found.
local function read_until(proc, pattern, seconds)
  local deadline, got = now() + (seconds or 5), {}
  while now() < deadline do
    local s = proc:read("any", math.max(0.05, deadline - now()))
    if s then got[#got + 1] = s end
    local all = table.concat(got)
    if all:find(pattern) then return all, true end
    if not s then break end
  end
  return table.concat(got), false
end

-- The box's processes whose argv is exactly `argv` (box:processes()).
local function listed(box, argv)
  local list = assert(box:processes())
  local found = {}
  for _, e in ipairs(list) do
    if table.concat(e.argv, "\0") == table.concat(argv, "\0") then found[#found + 1] = e end
  end
  return found
end

-- An echo server: answers each line l with "got:l".
local ECHO = 'while read l; do echo "got:$l"; done'

local function ask(proc, line)
  assert.is_true(proc:write(line .. "\n", 5))
  return proc:read("line", 5)
end

describe("box:spawn", function()
  before_each(function() before = helper.box_set() end)
  after_each(function()
    for _, box in ipairs(opened) do box:stop() end
    opened = {}
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  describe("drives an interactive program", function()
    it("answers each line written, read back with read('line'); close_stdin ends it with code 0", function()
      local box = start()
      local p = spawn(box, ECHO)
      assert.is_number(p.pid)
      for _, line in ipairs({ "one", "two words", "", "three" }) do
        assert.equal("got:" .. line, ask(p, line))
      end
      assert.is_true(p:close_stdin())
      local r = assert(p:wait(10))
      assert.equal(0, r.code)
      assert.equal("ok", r.status)
      assert.is_true(r.ok)
      assert.equal("", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("gets stdin as it is written: `wc -c` counts every byte sent in chunks", function()
      local box = start()
      local p = spawn(box, "wc -c")
      local total = 0
      for i = 1, 60 do
        local chunk = string.rep(string.char(65 + i % 26), 997 * i)
        assert.is_true(p:write(chunk, 5))
        total = total + #chunk
      end
      assert.is_true(p:close_stdin())
      local out = assert(p:read("all", 10))
      assert.equal(total, tonumber(out:match("^%s*(%d+)%s*$")))
      assert.equal(0, assert(p:wait(10)).code)
    end)

    it("runs an argv with no shell, with the env, workdir and user given", function()
      local box = start()
      local p = spawn(box, { "sh", "-c", 'echo "$A|$B|$(pwd)|$(id -u)"', "ignored" },
        { env = { A = "x y", B = "$HOME" }, workdir = "/tmp", user = "65534" })
      assert.equal("x y|$HOME|/tmp|65534\n", p:read("all", 10))
      assert.equal(0, assert(p:wait(10)).code)
      -- an argv is not word-split nor expanded
      p = spawn(box, { "echo", "a  b", "$HOME", "*" })
      assert.equal("a  b $HOME *\n", p:read("all", 10))
    end)

    it("runs an argv whose program does not exist: it exits 127", function()
      local box = start()
      local p = spawn(box, { "/no/such/program" })
      local r = assert(p:wait(10))
      assert.equal(127, r.code)
      assert.equal("exit", r.status)
    end)
  end)

  describe("proc:read", function()
    it("reads a line, a line with its newline, a count of bytes and the rest ('l', 'L', n, 'all')", function()
      local box = start()
      local p = spawn(box, "printf 'ab\\ncd\\nefghij\\nkl\\nmn'")
      assert.equal("ab", p:read("line", 5))
      assert.equal("cd\n", p:read("L", 5))
      assert.equal("efg", p:read(3, 5))
      assert.equal("hij", p:read("l", 5))
      assert.equal("kl\n", p:read("L", 5))
      assert.equal("mn", p:read("all", 5)) -- to the end, without a newline
      assert.equal("", p:read("all", 5)) -- at the end "all" is "", as for Lua's file:read("a")
      local s, err = p:read("line", 5)
      assert.is_nil(s)
      assert.equal("eof", err)
      s, err = p:read(1, 5)
      assert.is_nil(s)
      assert.equal("eof", err)
      assert.equal(0, assert(p:wait(10)).code)
    end)

    it("returns the last line without a newline as it is, then eof", function()
      local box = start()
      local p = spawn(box, "printf 'one\\ntwo'")
      assert.equal("one", p:read("line", 5))
      assert.equal("two", p:read("line", 5))
      local s, err = p:read("line", 5)
      assert.is_nil(s)
      assert.equal("eof", err)
    end)

    it("read('any') (the default) returns what there is once something is", function()
      local box = start()
      local p = spawn(box, "cat")
      assert.is_true(p:write("hello\n"))
      assert.equal("hello\n", p:read())
      assert.is_true(p:write("again"))
      assert.equal("again", p:read("any", 5))
      assert.is_true(p:close_stdin())
      local s, err = p:read()
      assert.is_nil(s)
      assert.equal("eof", err)
    end)

    it("a byte count waits for that many, keeps what came past a timeout, gives fewer only at the end", function()
      local box = start()
      local p = spawn(box, "cat")
      assert.is_true(p:write("abc"))
      local s, err = p:read(5, 0.5)
      assert.is_nil(s)
      assert.equal("timeout", err)
      assert.is_true(p:write("defgh"))
      assert.equal("abcde", p:read(5, 5))
      assert.is_true(p:close_stdin())
      assert.equal("fgh", p:read(10, 5))
      s, err = p:read(1, 5)
      assert.is_nil(s)
      assert.equal("eof", err)
    end)

    it("read_stderr reads stderr apart from stdout", function()
      local box = start()
      local p = spawn(box, "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
      assert.equal("err1\nerr2\n", p:read_stderr("all", 5))
      assert.equal("out1", p:read("line", 5))
      assert.equal("out2\n", p:read("all", 5))
      local s, err = p:read_stderr("line", 5)
      assert.is_nil(s)
      assert.equal("eof", err)
      local r = assert(p:wait(10))
      assert.equal(0, r.code)
      assert.equal("", r.stdout) -- all of it was read
      assert.equal("", r.stderr)
    end)

    it("returns nil, 'timeout' after its timeout when nothing comes, and the process goes on", function()
      local box = start()
      local p = spawn(box, "read x; echo \"late:$x\"")
      for _, what in ipairs({ "any", "line", "all", 4 }) do
        local t = now()
        local s, err = p:read(what, 0.5)
        local took = now() - t
        assert.is_nil(s)
        assert.equal("timeout", err)
        assert.is_true(took >= 0.45 and took < 2, "read took " .. took .. " s")
      end
      local t = now()
      local s, err = p:read_stderr("line", 0.3)
      assert.is_nil(s)
      assert.equal("timeout", err)
      assert.is_true(now() - t < 2)
      assert.equal("late:go", ask(p, "go"))
      assert.equal(0, assert(p:wait(10)).code)
    end)
  end)

  describe("output callbacks", function()
    it("on_stdout and on_stderr get all the output, each stream in order; the result holds none of it", function()
      local box = start()
      local out, err = {}, {}
      local p = spawn(box, "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done", {
        on_stdout = function(chunk) out[#out + 1] = chunk end,
        on_stderr = function(chunk) err[#err + 1] = chunk end,
      })
      local r = assert(p:wait(10))
      assert.equal(0, r.code)
      assert.equal("out1\nout2\nout3\nout4\nout5\n", table.concat(out))
      assert.equal("err1\nerr2\nerr3\nerr4\nerr5\n", table.concat(err))
      assert.equal("", r.stdout)
      assert.equal("", r.stderr)
    end)

    it("get output as it comes, before the process ends, and more of it than max_output", function()
      local box = start()
      local out, n = {}, 0
      local p = spawn(box, "echo first; read x; head -c 3000000 /dev/zero; echo last", {
        max_output = 65536,
        on_stdout = function(chunk)
          n = n + #chunk
          if #out < 1 then out[1] = chunk end
        end,
      })
      local r, err = p:wait(0.5)
      assert.is_nil(r)
      assert.equal("timeout", err)
      assert.equal("first\n", out[1]) -- while it waits for its input
      assert.is_true(p:write("go\n"))
      r = assert(p:wait(10))
      assert.equal(0, r.code)
      assert.is_falsy(r.truncated)
      assert.equal(6 + 3000000 + 5, n)
    end)

    it("returning false cuts the stream and kills the process: status 'truncated'", function()
      local box = start()
      local calls = 0
      local t = now()
      local p = spawn(box, "yes", { on_stdout = function()
        calls = calls + 1
        return false
      end })
      local r = assert(p:wait(10))
      assert.is_true(now() - t < 5)
      assert.equal(1, calls) -- none after the false
      assert.is_true(r.truncated)
      assert.equal("truncated", r.status)
      assert.equal(9, r.signal)
      assert.is_false(r.ok)
      assert.equal(0, #listed(box, { "yes" }))
    end)

    it("a stream that goes to a callback cannot be read", function()
      local box = start()
      local p = spawn(box, "echo hi; echo ho >&2", {
        on_stdout = function() end, on_stderr = function() end,
      })
      assert.matches("on_stdout callback", raised(function() p:read() end), 1, true)
      assert.matches("on_stderr callback", raised(function() p:read_stderr() end), 1, true)
      assert.equal(0, assert(p:wait(10)).code)
    end)
  end)

  describe("proc:wait", function()
    it("returns the exit code and the output nobody read: exit 3 is code 3, status 'exit'", function()
      local box = start()
      local p = spawn(box, "echo out; echo err >&2; exit 3")
      local r = assert(p:wait(10))
      assert.equal(3, r.code)
      assert.equal("exit", r.status)
      assert.is_false(r.ok)
      assert.is_nil(r.signal)
      assert.is_falsy(r.timed_out)
      assert.is_falsy(r.truncated)
      assert.equal("out\n", r.stdout)
      assert.equal("err\n", r.stderr)
      assert.is_number(r.duration)
      assert.is_true(rawequal(r, p:wait()))
      assert.matches("ended: exit", tostring(p), 1, true)
    end)

    it("past its timeout returns nil, 'timeout' and the process runs on; kill then wait says signal 9", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      assert.matches("(running)", tostring(p), 1, true)
      local t = now()
      local r, err = p:wait(0.5)
      assert.is_nil(r)
      assert.equal("timeout", err)
      assert.is_true(now() - t < 2)
      local found = listed(box, { "sleep", "100" })
      assert.equal(1, #found)
      assert.equal(p.pid, found[1].pid)
      assert.is_true(p:kill())
      r = assert(p:wait(10))
      assert.equal(9, r.signal)
      assert.equal(137, r.code)
      assert.equal("signal", r.status)
      assert.is_false(r.ok)
      assert.is_true(rawequal(r, p:wait()))
      assert.is_true(rawequal(r, p:wait(0)))
      assert.is_true(p:kill()) -- an ended process: nothing left to signal
      assert.equal(0, #listed(box, { "sleep", "100" }))
    end)
  end)

  describe("spawn's timeout", function()
    it("kills the process once past it: wait returns within timeout + 1 s, status 'timeout'", function()
      local box = start()
      local t = now()
      local p = spawn(box, "sleep 100", { timeout = 1 })
      local r = assert(p:wait())
      local took = now() - t
      assert.is_true(took >= 0.9 and took < 2.5, "wait took " .. took .. " s")
      assert.is_true(r.timed_out)
      assert.equal("timeout", r.status)
      assert.is_false(r.ok)
      assert.equal(0, #listed(box, { "sleep", "100" }))
    end)

    it("holds with nobody calling: the process and all it started are gone past it", function()
      local box = start()
      local p = spawn(box, "sleep 1007 & sleep 100", { timeout = 1 })
      assert.is_truthy(helper.eventually(function() return #listed(box, { "sleep", "1007" }) == 1 end, 5))
      -- no call on p meanwhile: the box's watchdog does it
      assert.is_truthy(helper.eventually(function()
        for _, e in ipairs(assert(box:processes())) do
          if rawequal(e.proc, p) or e.argv[1] == "sleep" then return false end
        end
        return true
      end, 4), "the process or its child outlived its timeout")
      local r = assert(p:wait(5))
      assert.is_true(r.timed_out)
      assert.equal("timeout", r.status)
    end)

    it("ends a read too: the output before it, then eof", function()
      local box = start()
      local t = now()
      local p = spawn(box, "echo hi; sleep 100", { timeout = 1 })
      assert.equal("hi\n", p:read("all", 10))
      assert.is_true(now() - t < 2.5)
      local r = assert(p:wait(5))
      assert.is_true(r.timed_out)
      assert.equal("timeout", r.status)
    end)
  end)

  describe("proc:kill", function()
    it("sends the signal asked for: a process that ignores TERM survives kill('TERM'), not kill()", function()
      local box = start()
      local p = spawn(box, "trap '' TERM; echo ready; sleep 100; echo woke")
      assert.equal("ready", p:read("line", 5))
      assert.is_true(p:kill("TERM"))
      local r, err = p:wait(0.5)
      assert.is_nil(r)
      assert.equal("timeout", err)
      assert.is_true(p:kill())
      r = assert(p:wait(10))
      assert.equal(9, r.signal)
      assert.equal("signal", r.status)
      assert.equal("", r.stdout)
    end)

    it("takes a signal's name, with or without SIG, or its number", function()
      local box = start()
      for _, case in ipairs({ { "SIGTERM", 15 }, { "hup", 1 }, { 10, 10 } }) do
        local p = spawn(box, { "sleep", "100" })
        assert.is_true(p:kill(case[1]))
        local r = assert(p:wait(10))
        assert.equal(case[2], r.signal, tostring(case[1]))
        assert.equal("signal", r.status)
      end
    end)

    it("ends everything the process started: children, orphans, and a daemon that did setsid", function()
      local box = start()
      local p = spawn(box, "sleep 1001 & (sleep 1002 &); "
        .. "setsid sh -c 'sleep 1003' </dev/null >/dev/null 2>&1 & echo ready; sleep 1004")
      assert.equal("ready", p:read("line", 5))
      local all = helper.eventually(function()
        local list = {}
        for i = 1001, 1004 do
          local found = listed(box, { "sleep", tostring(i) })
          if #found ~= 1 then return false end
          list[i] = found[1]
        end
        return list
      end, 5)
      assert.is_truthy(all, "the four sleeps never ran")
      for _, i in ipairs({ 1001, 1002, 1004 }) do
        assert.equal(p.pid, all[i].sid)
        assert.is_true(rawequal(p, all[i].proc))
      end
      assert.are_not.equal(p.pid, all[1003].sid) -- the daemon left the session
      assert.is_true(p:kill())
      assert.is_truthy(helper.eventually(function()
        for i = 1001, 1004 do
          if #listed(box, { "sleep", tostring(i) }) > 0 then return false end
        end
        return true
      end, 5), "some of the process's sleeps outlived proc:kill()")
      assert.equal(9, assert(p:wait(10)).signal)
    end)

    it("raises on a bad signal", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      for _, bad in ipairs({ "NOPE", "SIGNOPE", 0, 65, 2.5, -9, true }) do
        assert.matches("bad argument #1 to 'kill'", raised(function() p:kill(bad) end), 1, true)
      end
      assert.is_nil(p:wait(0.1)) -- none of them reached the process
      assert.is_true(p:kill())
      assert.equal(9, assert(p:wait(10)).signal)
    end)
  end)

  describe("with a terminal (tty = true)", function()
    it("merges stdout and stderr into one stream, lines ending in \\r\\n", function()
      local box = start()
      local p = spawn(box, "echo a; echo b >&2", { tty = true })
      assert.equal("a\r\nb\r\n", p:read("all", 5))
      assert.equal(0, assert(p:wait(10)).code)
      p = spawn(box, "echo a; echo b >&2", { tty = true })
      assert.equal("a", p:read("line", 5)) -- a line without its "\r\n"
      assert.equal("b\r\n", p:read("L", 5))
      assert.matches("one stream", raised(function() p:read_stderr() end), 1, true)
    end)

    it("has the size given, 80x24 by default", function()
      local box = start()
      local p = spawn(box, "stty size", { tty = true, cols = 100, rows = 40 })
      assert.equal("40 100", p:read("line", 5))
      p = spawn(box, "stty size", { tty = true })
      assert.equal("24 80", p:read("line", 5))
    end)

    it("is resized: the same session's `stty size` then says the new size", function()
      local box = start()
      local p = spawn(box, "sh", { tty = true, cols = 100, rows = 40 })
      assert.is_true(p:write("stty size\n"))
      local _, found = read_until(p, "40 100\r\n", 5)
      assert.is_true(found, "stty size did not say 40 100")
      assert.is_true(p:resize(120, 50))
      assert.is_true(p:write("stty size\n"))
      _, found = read_until(p, "50 120\r\n", 5)
      assert.is_true(found, "stty size did not say 50 120 after the resize")
      assert.is_true(p:kill())
    end)

    it("Ctrl-C interrupts the foreground command; the shell goes on", function()
      local box = start()
      local p = spawn(box, "sh", { tty = true })
      assert.is_true(p:write("sleep 100\n"))
      assert.is_truthy(helper.eventually(function() return #listed(box, { "sleep", "100" }) == 1 end, 5),
        "sleep 100 never ran")
      assert.is_true(p:write("\3"))
      assert.is_truthy(helper.eventually(function() return #listed(box, { "sleep", "100" }) == 0 end, 5),
        "Ctrl-C did not end sleep 100")
      assert.is_true(p:write("echo al''ive\n")) -- the terminal echoes what is typed: not "alive"
      local out, found = read_until(p, "alive\r\n", 5)
      assert.is_true(found, "no answer after Ctrl-C: " .. out)
      assert.is_nil(p:wait(0.1)) -- the shell still runs
      assert.is_true(p:kill())
    end)

    it("close_stdin is Ctrl-D: `cat` ends with code 0", function()
      local box = start()
      local p = spawn(box, "cat", { tty = true })
      assert.is_true(p:write("hi\n"))
      assert.equal("hi", p:read("line", 5)) -- the terminal's echo
      assert.equal("hi", p:read("line", 5)) -- cat's
      assert.is_true(p:close_stdin())
      assert.is_true(p:close_stdin()) -- again: nothing more is sent
      local r = assert(p:wait(10))
      assert.equal(0, r.code)
    end)

    it("resize without a terminal returns nil, err", function()
      local box = start()
      local p = spawn(box, "cat")
      local ok, err = p:resize(120, 50)
      assert.is_nil(ok)
      assert.matches("the process has no terminal", err, 1, true)
      assert.matches("bad argument #1 to 'resize'", raised(function() p:resize(0, 50) end), 1, true)
      assert.matches("bad argument #2 to 'resize'", raised(function() p:resize(80, 1.5) end), 1, true)
      assert.is_true(p:close_stdin())
      assert.equal(0, assert(p:wait(10)).code)
    end)
  end)

  describe("backpressure and bounded output", function()
    it("a write to a process that does not read waits, then times out with the count of bytes sent", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      local data = string.rep("x", 32 * 1024 * 1024) -- more than pipes and sockets hold (TCP's grow to MiBs)
      local t = now()
      local ok, err, sent = p:write(data, 1)
      local took = now() - t
      assert.is_nil(ok)
      assert.matches("^timeout: ", err)
      assert.is_number(sent)
      assert.is_true(sent < #data, sent .. " bytes sent")
      assert.is_true(took >= 0.9 and took < 2.5, "write took " .. took .. " s")
      assert.is_true(p:kill())
    end)

    it("output nobody reads stops the process: a write then times out, and reading lets it go on", function()
      local box = start()
      local p = spawn(box, "cat", { max_output = 128 * 1024 })
      local data = string.rep("0123456789abcdef", 16 * 65536) -- 16 MiB: more than the pipes and sockets hold
      local ok, err, sent = p:write(data, 2)
      assert.is_nil(ok)
      assert.matches("its output waits to be read (proc:read)", err, 1, true)
      assert.is_true(sent < #data, sent .. " bytes sent")
      local s = p:read("any", 5)
      assert.is_string(s)
      assert.equal(data:sub(1, #s), s)
      while s do s = p:read("any", 0.5) end -- all there is now
      -- cat reads again once its output is read
      assert.is_true(p:write(data:sub(1, 100000), 5))
      assert.is_true(p:close_stdin())
      while p:read("any", 5) do end
      assert.equal(0, assert(p:wait(10)).code)
    end)

    -- A pump may hand over up to two 64 KiB slices at once: what comes past
    -- max_output while a write waits must stay held (or unread in the
    -- connection), not be dropped.
    it("output that came in a burst while a write waited is not lost", function()
      local box = start()
      local p = spawn(box, "head -c 200000 /dev/zero; echo; exec sleep 100", { max_output = 65536 })
      assert.is_truthy(helper.eventually(function()
        for _, e in ipairs(assert(box:processes())) do
          if e.pid == p.pid and e.name == "sleep" then return true end
        end
      end, 5), "the burst was never written")
      lockup.sleep(0.2) -- the Engine has passed it all on: it waits in the connection
      local ok, err = p:write(string.rep("x", 16 * 1024 * 1024), 0.5) -- sleep does not read it
      assert.is_nil(ok)
      assert.matches("^timeout: ", err)
      local n = 0
      while true do
        local s = p:read("any", 1)
        if not s then break end
        n = n + #s
      end
      assert.equal(200001, n, "bytes of the burst lost")
      assert.is_true(p:kill())
      assert.is_falsy(assert(p:wait(10)).truncated)
    end)

    it("a flood nobody reads is held up to max_output; wait kills it: status 'truncated'", function()
      local box = start()
      local cap = 1024 * 1024
      local t = now()
      local p = spawn(box, "yes", { max_output = cap })
      assert.equal("y\ny\ny\ny\ny\n", p:read(10, 5))
      local r = assert(p:wait(10))
      assert.is_true(now() - t < 6)
      assert.is_true(r.truncated)
      assert.equal("truncated", r.status)
      assert.is_true(#r.stdout <= cap, #r.stdout .. " bytes held")
      assert.is_true(#r.stdout > 0)
      assert.equal(0, #listed(box, { "yes" }))
    end)

    -- While one stream is read, the other must not be read on past
    -- max_output and dropped: lockup stops reading, the process waits, and
    -- the read says which stream to read.
    it("output of one stream is not lost while the other is read", function()
      local box = start()
      local size = 2000000
      local p = spawn(box, "head -c " .. size .. " /dev/zero; echo done >&2", { max_output = 1024 * 1024 })
      -- stdout fills up first: the read of stderr says so at once, and the process waits
      local t0 = now()
      local line, err = p:read_stderr("line", 5)
      assert.is_nil(line)
      assert.matches("the process's stdout holds max_output (1048576 bytes) nobody has read, and waits: read it "
        .. "(proc:read)", err, 1, true)
      assert.is_true(now() - t0 < 4, "the read waited for its timeout")
      local n = 0
      while true do
        local s, rerr = p:read("any", 5)
        if not s then
          assert.equal("eof", rerr)
          break
        end
        n = n + #s
      end
      assert.equal(size, n, "stdout bytes lost while stderr was read")
      local r = assert(p:wait(10))
      assert.equal(0, r.code)
      assert.is_falsy(r.truncated)
    end)
  end)

  describe("bad input", function()
    it("a write after close_stdin, or after the process ended, returns nil, err", function()
      local box = start()
      local p = spawn(box, "cat")
      assert.is_true(p:close_stdin())
      assert.is_true(p:close_stdin()) -- idempotent
      local ok, err = p:write("x")
      assert.is_nil(ok)
      assert.equal("its stdin is closed (proc:close_stdin())", err)
      assert.equal(0, assert(p:wait(10)).code)

      p = spawn(box, "echo hi")
      assert.equal("hi\n", p:read("all", 5)) -- to its end
      ok, err = p:write("x")
      assert.is_nil(ok)
      assert.matches("^the process has ended", err)
      assert.equal(0, assert(p:wait(10)).code)
      ok, err = p:write("x")
      assert.is_nil(ok)
      assert.matches("^the process has ended", err)
      ok, err = p:resize(80, 24)
      assert.is_nil(ok)
      assert.is_string(err)
    end)

    it("spawn on a stopped box returns nil, 'cannot spawn in the box: ...'", function()
      local box = start()
      box:stop()
      local p, err = box:spawn("echo hi")
      assert.is_nil(p)
      assert.matches("^cannot spawn in the box: ", err)
      local list, perr = box:processes()
      assert.is_nil(list)
      assert.is_string(perr)
    end)

    it("raises on bad arguments to spawn, naming them", function()
      local box = start()
      assert.matches("bad argument #1 to 'spawn'", raised(function() box:spawn(42) end), 1, true)
      assert.matches("bad argument #1 to 'spawn'", raised(function() box:spawn() end), 1, true)
      assert.matches("bad argument #1 to 'spawn'", raised(function() box:spawn({}) end), 1, true)
      assert.matches("argv[2] is a number", raised(function() box:spawn({ "a", 1 }) end), 1, true)
      assert.matches("NUL", raised(function() box:spawn("echo a\0b") end), 1, true)
      assert.matches("unknown option 'bogus' to 'spawn'", raised(function() box:spawn("true", { bogus = 1 }) end),
        1, true)
      assert.matches("bad argument to 'spawn'", raised(function() box:spawn("true", "tty") end), 1, true)
      assert.matches("bad option 'tty'", raised(function() box:spawn("true", { tty = 1 }) end), 1, true)
      assert.matches("bad option 'on_stderr' to 'spawn'", raised(function()
        box:spawn("true", { tty = true, on_stderr = function() end })
      end), 1, true)
      assert.matches("bad option 'cols' to 'spawn'", raised(function() box:spawn("true", { tty = true, cols = 0 }) end),
        1, true)
      assert.matches("bad option 'rows' to 'spawn'", raised(function()
        box:spawn("true", { tty = true, rows = 70000 })
      end), 1, true)
      assert.matches("bad option 'timeout' to 'spawn'", raised(function() box:spawn("true", { timeout = -1 }) end),
        1, true)
      assert.matches("bad option 'timeout' to 'spawn'", raised(function() box:spawn("true", { timeout = "1" }) end),
        1, true)
      assert.matches("bad option 'max_output' to 'spawn'", raised(function()
        box:spawn("true", { max_output = 0 })
      end), 1, true)
      assert.matches("bad option 'env' to 'spawn'", raised(function() box:spawn("true", { env = { A = {} } }) end),
        1, true)
      assert.matches("bad option 'env' to 'spawn'", raised(function()
        box:spawn("true", { env = { ["A=B"] = "1" } })
      end), 1, true)
      assert.equal(0, #assert(box:processes())) -- none of them started anything
    end)

    it("raises on bad arguments to the process's methods, naming them", function()
      local box = start()
      local p = spawn(box, "cat")
      assert.matches("bad argument #1 to 'write'", raised(function() p:write(42) end), 1, true)
      assert.matches("bad argument #1 to 'write'", raised(function() p:write() end), 1, true)
      assert.matches("bad argument #2 to 'write'", raised(function() p:write("x", -1) end), 1, true)
      assert.matches("bad argument #1 to 'read'", raised(function() p:read("word") end), 1, true)
      assert.matches("bad argument #1 to 'read'", raised(function() p:read(0) end), 1, true)
      assert.matches("bad argument #1 to 'read'", raised(function() p:read(1.5) end), 1, true)
      assert.matches("bad argument #2 to 'read'", raised(function() p:read("line", "soon") end), 1, true)
      assert.matches("bad argument #1 to 'read_stderr'", raised(function() p:read_stderr("*l") end), 1, true)
      -- the process is fine after all that
      assert.equal("ok\n", (function()
        assert.is_true(p:write("ok\n"))
        return p:read("L", 5)
      end)())
      assert.is_true(p:close_stdin())
      assert.equal(0, assert(p:wait(10)).code)
    end)

    -- wait's timeout is its first argument (read's and write's, the second).
    it("raises on a bad timeout to wait, naming it argument #1", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      assert.matches("bad argument #1 to 'wait'", raised(function() p:wait(-1) end), 1, true)
      assert.is_true(p:kill())
    end)
  end)

  describe("is independent of the box's steps", function()
    it("survives a step's timeout (box:run, box:exec) and box:kill_processes(), which end the steps' own", function()
      local box = start()
      local p = spawn(box, ECHO)
      assert.equal("got:a", ask(p, "a"))
      local r = assert(box:run("sleep 1005 & sleep 100", { timeout = 1 }))
      assert.is_true(r.timed_out)
      assert.equal("got:b", ask(p, "b"))
      assert.equal(0, #listed(box, { "sleep", "1005" }))
      r = assert(box:exec({ "sleep", "100" }, { timeout = 1 }))
      assert.is_true(r.timed_out)
      assert.equal("got:c", ask(p, "c"))
      assert.equal(0, assert(box:run("sleep 1006 >/dev/null 2>&1 &")).code)
      assert.is_truthy(helper.eventually(function() return #listed(box, { "sleep", "1006" }) == 1 end, 5))
      assert.is_true(box:kill_processes())
      assert.equal(0, #listed(box, { "sleep", "1006" }))
      assert.equal("got:d", ask(p, "d"))
      assert.equal("still\n", assert(box:run("echo still")).stdout)
      assert.is_true(p:close_stdin())
      assert.equal(0, assert(p:wait(10)).code)
    end)

    it("answers while a step runs in the same box, and two processes run side by side", function()
      local box = start()
      local p = spawn(box, ECHO)
      local q = spawn(box, { "cat" })
      local step_done, answered_during = false, nil
      lockup.run(function()
        local r = assert(box:run("sleep 100", { timeout = 2 }))
        assert.is_true(r.timed_out)
        step_done = true
      end, function()
        lockup.sleep(0.1) -- the step is under way
        for i = 1, 5 do
          assert.equal("got:" .. i, ask(p, tostring(i)))
          assert.is_true(q:write("q" .. i .. "\n"))
          assert.equal("q" .. i, q:read("line", 5))
        end
        answered_during = not step_done
      end)
      assert.is_true(step_done)
      assert.is_true(answered_during, "the answers waited for the step")
      assert.equal("got:after", ask(p, "after"))
      assert.is_true(q:close_stdin())
      assert.equal(0, assert(q:wait(10)).code)
    end)

    it("is listed and killed at once while a step runs in the box", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      local step_done, during = false, {}
      lockup.run(function()
        local r = assert(box:run("sleep 2", { timeout = 5 }))
        assert.equal(0, r.code)
        step_done = true
      end, function()
        assert.is_truthy(helper.eventually(function() return #listed(box, { "sleep", "2" }) == 1 end, 2))
        local step = listed(box, { "sleep", "2" })[1]
        assert.is_nil(step.proc) -- a step's process is no spawned process's
        assert.is_true(p:kill())
        local r = assert(p:wait(5))
        assert.equal(9, r.signal)
        during.killed = not step_done
        during.left = #listed(box, { "sleep", "100" })
      end)
      assert.is_true(during.killed, "the kill waited for the step")
      assert.equal(0, during.left)
    end)

    it("is ended by box:reset(): its read says eof and wait returns a result", function()
      local box = start()
      local p = spawn(box, ECHO)
      assert.equal("got:a", ask(p, "a"))
      assert.is_true(box:reset())
      local s, err = p:read("line", 5)
      assert.is_nil(s)
      assert.equal("eof", err)
      local r = assert(p:wait(10))
      assert.is_false(r.ok)
      assert.equal(0, #assert(box:processes()))
      assert.equal("ok\n", assert(box:run("echo ok")).stdout)
    end)
  end)

  describe("inside lockup.run", function()
    it("one coroutine writes 100 lines while another reads them from the same `cat`", function()
      local box = start()
      local p = spawn(box, "cat")
      local wrote, read = 0, 0
      lockup.run(function()
        for i = 1, 100 do
          assert.is_true(p:write("line " .. i .. "\n", 5))
          wrote = wrote + 1
        end
        assert.is_true(p:close_stdin())
      end, function()
        for i = 1, 100 do
          assert.equal("line " .. i, p:read("line", 5))
          read = read + 1
        end
        local s, err = p:read("line", 5)
        assert.is_nil(s)
        assert.equal("eof", err)
      end)
      assert.equal(100, wrote)
      assert.equal(100, read)
      assert.equal(0, assert(p:wait(10)).code)
    end)

    it("drives two processes at once, one per coroutine", function()
      local box = start()
      local done = {}
      local function drive(name)
        return function()
          local p = spawn(box, ECHO)
          for i = 1, 30 do
            assert.equal("got:" .. name .. i, ask(p, name .. i))
          end
          assert.is_true(p:close_stdin())
          done[name] = assert(p:wait(10)).code
        end
      end
      lockup.run(drive("a"), drive("b"))
      assert.equal(0, done.a)
      assert.equal(0, done.b)
    end)

    it("a second coroutine reading the same process raises; it may write", function()
      local box = start()
      local p = spawn(box, "cat")
      local first, second
      lockup.run(function()
        first = p:read("line", 5)
      end, function()
        second = raised(function() p:read("line", 1) end)
        assert.matches("another coroutine is reading", raised(function() p:wait(1) end), 1, true)
        assert.is_true(p:write("hello\n"))
      end)
      assert.equal("hello", first)
      assert.matches("'read': another coroutine is reading this process's output", second, 1, true)
      assert.is_true(p:close_stdin())
      assert.equal(0, assert(p:wait(10)).code)
    end)
  end)

  describe("ends with its box", function()
    it("box:stop() ends the process: wait returns a result", function()
      local box = start()
      local p = spawn(box, { "sleep", "100" })
      local t = now()
      box:stop()
      local r = assert(p:wait(10))
      assert.is_true(now() - t < 10)
      assert.is_true(r.box_stopped or r.code ~= nil)
      assert.is_false(r.ok)
      assert.is_true(p:kill()) -- ended
    end)

    it("a box dropped with its processes running is collected, and its container goes away", function()
      -- nothing refers to the box or its processes once this returns (they
      -- hold each other: all of them go together)
      local function dropped()
        local box = assert(helper.docker():start { image = helper.IMAGE, runtime = helper.RUNTIME })
        assert(box:spawn({ "sleep", "1000" }))
        assert(box:spawn("cat"))
        return box.id
      end
      local id = dropped()
      collectgarbage()
      collectgarbage()
      local gone = helper.eventually(function() return not helper.exists(id) end, 15)
      if not gone then helper.remove(id) end
      assert.is_truthy(gone, "container " .. id .. " still there 15 s after its box was collected")
    end)

    it("its box goes away when its Lua process is killed (SIGKILL) while it runs", function()
      local code = ([[
        io.stdout:setvbuf("no")
        local d = assert(require("lockup").connect())
        local box = assert(d:start({ image = %q }))
        local p = assert(box:spawn("sleep 1000"))
        local f = io.open("/proc/self/stat"); local pid = f:read("*l"):match("^%%d+"); f:close()
        print(pid .. " " .. box.id)
        print("RETURNED", p:wait())
      ]]):format(helper.IMAGE)
      local pipe = assert(io.popen(helper.lua_cmd(code) .. " 2>&1", "r"))
      local line = pipe:read("*l") or ""
      local pid, id = line:match("^(%d+) (%x+)$")
      if not pid then
        local rest = pipe:read("*a")
        pipe:close()
        error("the subprocess said: " .. line .. "\n" .. (rest or ""))
      end
      local running = helper.eventually(function()
        local status, top = helper.docker():request("GET", "/containers/" .. id .. "/top")
        for _, proc in ipairs(status and top.Processes or {}) do
          if table.concat(proc, " "):find("sleep 1000", 1, true) then return true end
        end
      end, 10)
      os.execute("kill -9 " .. pid)
      local rest = pipe:read("*a")
      pipe:close()
      if not running then helper.remove(id) end
      assert.is_truthy(running, "sleep 1000 never ran in the box")
      assert.is_nil(rest:find("RETURNED", 1, true), rest)
      local gone = helper.eventually(function() return not helper.exists(id) end, 15)
      if not gone then helper.remove(id) end
      assert.is_truthy(gone, "container " .. id .. " still there 15 s after its owner was killed")
    end)
  end)

  -- Lua 5.4 only: `<close>` is 5.4 syntax; LuaJIT has no to-be-closed variables.
  if C.CLOSE then
    describe("in a <close> variable", function()
      it("is killed at the end of its scope", function()
        local box = start()
        local p = helper.load54([[
          local box, assert = ...
          local kept
          do
            local p <close> = assert(box:spawn({ "sleep", "100" }))
            kept = p
          end
          return kept
        ]], "process_spec <close> process")(box, assert)
        local r = assert(p:wait(10))
        assert.equal(9, r.signal)
        assert.equal(0, #listed(box, { "sleep", "100" }))
      end)
    end)
  end

  describe("box:processes", function()
    it("lists the process with its pid, session and proc; lockup's own processes are not listed", function()
      local box = start()
      assert.equal(0, #assert(box:processes()))
      local p = spawn(box, { "sleep", "100" })
      local q = spawn(box, "sleep 200 & sleep 300")
      assert.is_truthy(helper.eventually(function()
        return #listed(box, { "sleep", "200" }) == 1 and #listed(box, { "sleep", "300" }) == 1
      end, 5), "sleep 200 and sleep 300 never ran")
      local list = assert(box:processes())
      local mine, by_argv = nil, {}
      for _, e in ipairs(list) do
        assert.are_not.equal(1, e.pid)
        assert.is_number(e.ppid)
        assert.is_number(e.pgid)
        assert.is_string(e.state)
        by_argv[table.concat(e.argv, " ")] = e
        if rawequal(e.proc, p) then
          assert.is_nil(mine) -- one process in p's session
          mine = e
        end
      end
      assert.is_table(mine)
      assert.equal(p.pid, mine.pid)
      assert.equal(p.pid, mine.sid)
      assert.equal("sleep", mine.name)
      assert.same({ "sleep", "100" }, mine.argv)
      for _, a in ipairs({ "sleep 200", "sleep 300" }) do
        assert.is_table(by_argv[a], a .. " not listed")
        assert.equal(q.pid, by_argv[a].sid)
        assert.is_true(rawequal(q, by_argv[a].proc))
      end
      assert.is_true(p:kill())
      assert.is_true(q:kill())
      p:wait(10)
      q:wait(10)
      assert.equal(0, #assert(box:processes()))
    end)
  end)
end)
