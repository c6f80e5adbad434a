-- box:run and box:exec against the real Engine: exact output, the sentinel,
-- stdin, shell semantics, serialization and concurrency.
local helper = require "helper"
local C = require "support.compat"
local lockup = require "lockup"
local core = require "lockup.core"

local function bytes(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 7 + (seed or 0)) % 256) end
  return table.concat(t)
end

describe("box:run", function()
  local docker, box

  setup(function()
    docker = helper.docker()
    box = assert(docker:start { image = helper.IMAGE })
  end)

  teardown(function()
    if box then box:stop() end
  end)

  it("runs the issue's example: state persists, stdout and stderr apart, exit code", function()
    local b = assert(docker:start { image = helper.IMAGE })
    local r = assert(b:run("mkdir -p /tmp/w && cd /tmp/w && echo hello > a.txt"))
    assert.is_true(r.ok)
    assert.equal(0, r.code)
    r = assert(b:run("cat a.txt; echo oops >&2; exit 3"))
    assert.equal(3, r.code)
    assert.is_false(r.ok)
    assert.is_true(r.exited)
    assert.equal("hello\n", r.stdout)
    assert.equal("oops\n", r.stderr)
    local again, err = b:run("true")
    assert.is_nil(again)
    assert.matches("shell exited %(code 3%)", err)
    assert.is_true(b:stop())
  end)

  -- The shell's end shows on one stream first: what it wrote to the other
  -- just before must still come back (on the fifo lane they are two FIFOs).
  -- Another task keeps the loop busy meanwhile, so that the output and the
  -- end are all there by the time the step's task reads.
  it("keeps the output a step wrote just before it ended the shell, on both streams", function()
    local b = assert(docker:start { image = helper.IMAGE })
    local r, err
    lockup.run(function()
      r, err = b:run("sleep 0.2; echo out; echo err >&2; exit 3")
    end, function()
      lockup.sleep(0.1)
      local busy_until = core.monotime() + 0.5
      while core.monotime() < busy_until do end
    end)
    assert(r, err)
    assert.is_true(r.exited)
    assert.equal(3, r.code)
    assert.equal("out\n", r.stdout)
    assert.equal("err\n", r.stderr)
    assert.is_true(b:stop())
  end)

  describe("splits output exactly", function()
    local cases = {
      { "nothing", "true", "", "" },
      { "no trailing newline", "printf abc; printf def >&2", "abc", "def" },
      { "NUL bytes", [[printf 'a\000b\000'; printf '\000' >&2]], "a\0b\0", "\0" },
      { "invalid UTF-8", [[printf '\377\376\300\200x'; printf '\355\240\200' >&2]],
        "\255\254\192\128x", "\237\160\128" },
      { "a lone \\1 (the sentinel's first byte)", [[printf 'x\001y\001'; printf '\001' >&2]], "x\1y\1", "\1" },
      { "only stderr", "echo e >&2", "", "e\n" },
      { "interleaved", "echo 1; echo 2 >&2; echo 3; echo 4 >&2", "1\n3\n", "2\n4\n" },
      { "CR LF", [[printf 'a\r\nb\r']], "a\r\nb\r", "" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local r = assert(box:run(c[2]))
        assert.equal(0, r.code)
        assert.equal(c[3], r.stdout)
        assert.equal(c[4], r.stderr)
      end)
    end

    it("every byte value, both streams, through cat", function()
      local data = bytes(300000)
      local r = assert(box:run("cat; cat /tmp/in >&2", { stdin = data }))
      -- /tmp/in does not exist: stderr is the error message, stdout the data
      assert.equal(data, r.stdout)
      assert.matches("/tmp/in", r.stderr)
      r = assert(box:run("cat >&2", { stdin = data }))
      assert.equal("", r.stdout)
      assert.equal(data, r.stderr)
    end)

    it("100 MB on stdout and 1 MB on stderr, byte for byte", function()
      local line = "abcdefghijklmnopqrstuvwxyz012345678\n"
      local n = 100 * 1024 * 1024
      local r = assert(box:run(("yes abcdefghijklmnopqrstuvwxyz012345678 | head -c %d; "
        .. "yes e | head -c 1048576 >&2"):format(n), { max_output = 128 * 1024 * 1024 }))
      assert.equal(0, r.code)
      assert.equal(n, #r.stdout)
      local expected = line:rep(math.floor(n / #line) + 1):sub(1, n)
      assert.is_true(r.stdout == expected, "stdout differs from the expected 100 MB")
      assert.equal(("e\n"):rep(524288), r.stderr)
    end)
  end)

  describe("the sentinel", function()
    -- Runs fn(tokens) while every random_hex the box draws lands in tokens.
    local function with_tokens(fn)
      local tokens, orig = {}, core.random_hex
      core.random_hex = function(n)
        local v = orig(n)
        tokens[#tokens + 1] = v
        return v
      end
      local ok, err = pcall(fn, tokens)
      core.random_hex = orig
      assert(ok, err)
    end

    it("uses a fresh token from the CSPRNG for every command", function()
      local seen
      with_tokens(function(tokens)
        for _ = 1, 5 do assert(box:run("true")) end
        seen = tokens
      end)
      assert.equal(5, #seen)
      for i = 1, 5 do
        assert.matches("^%x+$", seen[i])
        assert.equal(32, #seen[i])
        for j = i + 1, 5 do assert.not_equal(seen[i], seen[j]) end
      end
    end)

    it("is not confused by an earlier command's token, a partial token or a look-alike", function()
      with_tokens(function(tokens)
        assert(box:run("true"))
        local old = tokens[#tokens]
        local cases = {
          -- the whole sentinel of the previous command, on both streams
          ([[printf '\001%s 0\n'; printf '\001%s 0\n' >&2; echo after]]):format(old, old),
          -- a prefix of the previous token, then a newline
          ([[printf '\001%s'; echo]]):format(old:sub(1, 20)),
          -- look-alikes: the same shape with other digits
          [[printf '\001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0\n\001 9\n'; echo after]],
        }
        for _, cmd in ipairs(cases) do
          local r = assert(box:run(cmd .. "; exit_code=7; (exit 7)"))
          assert.equal(7, r.code)
          assert.is_nil(r.exited)
        end
        local r = assert(box:run(cases[1]))
        assert.equal(("\1%s 0\nafter\n"):format(old), r.stdout)
        assert.equal(("\1%s 0\n"):format(old), r.stderr)
      end)
    end)

    it("loses no stderr written just before the command ends", function()
      for i = 1, 50 do
        local r = assert(box:run(("echo out%d; echo err%d >&2"):format(i, i)))
        assert.equal(("out%d\n"):format(i), r.stdout)
        assert.equal(("err%d\n"):format(i), r.stderr)
      end
      local r = assert(box:run("i=0; while [ $i -lt 2000 ]; do echo e$i >&2; i=$((i+1)); done"))
      local lines = select(2, r.stderr:gsub("\n", ""))
      assert.equal(2000, lines)
    end)
  end)

  describe("stdin", function()
    it("is at EOF unless given", function()
      local r = assert(box:run("cat; echo done"))
      assert.equal("done\n", r.stdout)
      r = assert(box:run("read x; echo \"[$x] $?\""))
      assert.equal("[] 1\n", r.stdout)
    end)

    it("is exactly opts.stdin, then EOF, and never eats the next command", function()
      for _, data in ipairs { "", "x", "no newline", "line\n", "a\0b\n\255", bytes(70000, 3) } do
        local r = assert(box:run("cat", { stdin = data }))
        assert.equal(data, r.stdout)
        r = assert(box:run("echo next"))
        assert.equal("next\n", r.stdout)
      end
    end)

    it("a command that reads all of stdin does not eat the next command", function()
      local r = assert(box:run("cat >/dev/null; echo first"))
      assert.equal("first\n", r.stdout)
      r = assert(box:run("echo second"))
      assert.equal("second\n", r.stdout)
    end)

    it("keeps shell state for a command given stdin", function()
      assert(box:run("read v; cd /tmp", { stdin = "value\n" }))
      local r = assert(box:run("echo $v; pwd"))
      assert.equal("value\n/tmp\n", r.stdout)
      assert(box:run("cd /"))
    end)
  end)

  describe("shell semantics", function()
    it("runs multi-line scripts and here-docs", function()
      local r = assert(box:run("x=1\nif [ $x = 1 ]; then\n  echo yes\nfi\ncat <<EOF\nhere $x\nEOF"))
      assert.equal("yes\nhere 1\n", r.stdout)
    end)

    it("passes quotes, backslashes and dollars through untouched", function()
      local r = assert(box:run([[echo 'it'"'"'s' "\$HOME" '\n' "a\\b"]]))
      assert.equal("it's $HOME \\n a\\b\n", r.stdout)
    end)

    it("reports a syntax error as a result, and the box stays usable", function()
      for _, bad in ipairs { "echo 'unbalanced", "echo \"x", "if true; then", "( echo", "}" } do
        local r = assert(box:run(bad))
        assert.not_equal(0, r.code)
        assert.is_false(r.ok)
        assert.not_equal("", r.stderr)
        r = assert(box:run("echo still here"))
        assert.equal("still here\n", r.stdout)
      end
    end)

    it("survives a command that closes its own stdout and stderr", function()
      local r = assert(box:run("exec >&- 2>&-; true"))
      assert.equal(0, r.code)
      r = assert(box:run("echo back; echo err >&2"))
      assert.equal("back\n", r.stdout)
      assert.equal("err\n", r.stderr)
    end)

    it("returns while a process started in the background goes on", function()
      local r = assert(box:run("sleep 30 >/dev/null 2>&1 & echo started"))
      assert.equal("started\n", r.stdout)
      -- the next step may come before the background job has exec'd sleep
      r = assert(box:run("for i in 1 2 3 4 5 6 7 8 9 10; do ps | grep -q '[s]leep 30' && break; sleep 0.1; done; "
        .. "ps | grep -c '[s]leep 30'"))
      assert.equal("1\n", r.stdout)
      assert(box:run("kill %1 2>/dev/null; pkill sleep; true"))
    end)

    it("runs exit N in a subshell as a plain result", function()
      local r = assert(box:run("(exit 42)"))
      assert.equal(42, r.code)
      assert.is_nil(r.exited)
    end)

    it("rejects a command with NUL bytes, and a non-string", function()
      assert.has_error(function() box:run("echo a\0b") end)
      assert.has_error(function() box:run(42) end)
      assert.has_error(function() box:run("true", { stdn = "x" }) end, nil)
    end)

    it("streams output to callbacks as it arrives", function()
      local outs, errs = {}, {}
      local r = assert(box:run("echo a; sleep 0.2; echo b; echo c >&2", {
        on_stdout = function(s) outs[#outs + 1] = s end,
        on_stderr = function(s) errs[#errs + 1] = s end,
      }))
      assert.equal("a\nb\n", table.concat(outs))
      assert.is_true(#outs >= 2, "stdout came in one piece: not streamed")
      assert.equal("c\n", table.concat(errs))
      assert.equal("", r.stdout)
    end)

    it("returns a readable result", function()
      local r = assert(box:run("echo hi; false"))
      local s = tostring(r)
      assert.matches("^lockup%.result", s)
      assert.matches("code 1", s)
      assert.matches('stdout="hi\\n"', s, 1, true)
      assert.is_number(r.duration)
    end)
  end)

  -- One word for how a step ended, and the signal that ended it.
  it("says how a step ended in status, with the signal, and tostring shows it", function()
    local b = assert(docker:start { image = helper.IMAGE })
    finally(function() b:stop() end)
    local cases = {
      { "true", "ok", 0 },
      { "exit_3() { return 3; }; exit_3", "exit", 3 },
      { "sh -c 'kill -9 $$'", "signal", 137, 9 },
      { "sh -c 'kill -TERM $$'", "signal", 143, 15 },
      { "yes", "truncated", nil, nil, { max_output = 1000 } },
      { "sleep 30", "timeout", nil, nil, { timeout = 0.3 } },
    }
    for _, c in ipairs(cases) do
      local r = assert(b:run(c[1], c[5]))
      assert.equal(c[2], r.status, c[1] .. ": " .. tostring(r))
      if c[3] then assert.equal(c[3], r.code) end
      assert.equal(c[4], r.status == "signal" and r.signal or nil)
      if c[4] then assert.matches("signal " .. c[4], tostring(r), 1, true) end
    end
    local e = assert(b:exec({ "sh", "-c", "kill -9 $$" }))
    assert.equal("signal", e.status)
    assert.equal(9, e.signal)
    local x = assert(b:run("exit 4"))
    assert.equal("exited", x.status)
    assert.matches("shell exited", tostring(x), 1, true)
  end)

  describe("timeouts and output caps", function()
    it("kill a command past its timeout, keep its output, and the box goes on with its state", function()
      local b = assert(docker:start { image = helper.IMAGE })
      finally(function() b:stop() end)
      assert(b:run("cd /tmp; x=kept"))
      local r = assert(b:run("echo partial; sleep 30 & sleep 30", { timeout = 0.5 }))
      assert.is_true(r.timed_out)
      assert.is_false(r.ok)
      assert.is_nil(r.box_stopped)
      assert.equal("partial\n", r.stdout)
      assert.is_true(r.duration < 5, "the timeout took " .. r.duration .. " s to act")
      r = assert(b:run("echo $x $(pwd); ps -o args | grep -c '[s]leep 30'"))
      assert.equal("kept /tmp\n0\n", r.stdout)
    end)

    it("stop the box when the shell itself loops past the timeout, and say so", function()
      local b = assert(docker:start { image = helper.IMAGE })
      finally(function() b:stop() end)
      local r = assert(b:run("echo looping; while :; do :; done", { timeout = 0.5 }))
      assert.is_true(r.timed_out)
      assert.is_true(r.box_stopped)
      assert.equal("looping\n", r.stdout)
      local again, err = b:run("true")
      assert.is_nil(again)
      assert.matches("timeout", err)
    end)

    it("cap each stream at max_output, mark the result truncated and stop the command", function()
      local b = assert(docker:start { image = helper.IMAGE, max_output = 1000 })
      finally(function() b:stop() end)
      local r = assert(b:run("yes; echo never"))
      assert.is_true(r.truncated)
      assert.equal(("y\n"):rep(500), r.stdout)
      r = assert(b:run("yes >&2", { max_output = 10 }))
      assert.equal("y\ny\ny\ny\ny\n", r.stderr)
      assert.is_true(r.truncated)
      r = assert(b:run("head -c 1000 /dev/zero"))
      assert.is_nil(r.truncated)
      assert.equal(1000, #r.stdout)
      local n = 0
      r = assert(b:run("head -c 100000 /dev/zero", { on_stdout = function(c) n = n + #c end }))
      assert.equal(100000, n) -- a callback has no cap of its own
      assert.is_nil(r.truncated)
    end)

    it("stop a command whose callback returns false, as at a cap, on run and exec", function()
      local b = assert(docker:start { image = helper.IMAGE })
      finally(function() b:stop() end)
      assert(b:run("x=kept"))
      local calls = 0
      local function enough() calls = calls + 1 return false end
      local r = assert(b:run("echo first; yes", { on_stdout = enough, timeout = 60 }))
      assert.is_true(r.truncated)
      assert.is_nil(r.timed_out)
      assert.equal(1, calls) -- nothing more after it said no
      r = assert(b:run("yes >&2", { on_stderr = enough, timeout = 60 }))
      assert.is_true(r.truncated)
      assert.equal(2, calls)
      r = assert(b:exec({ "yes" }, { on_stdout = enough, timeout = 60 }))
      assert.is_true(r.truncated)
      assert.is_nil(r.timed_out)
      r = assert(b:run("echo $x"))
      assert.equal("kept\n", r.stdout)
    end)
  end)

  describe("box:exec", function()
    it("runs argv with no shell, with stdin, env, workdir, user", function()
      local r = assert(box:exec({ "echo", "$HOME", "a b" }))
      assert.equal("$HOME a b\n", r.stdout)
      r = assert(box:exec({ "sh", "-c", "cat; echo $V; pwd; id -u; exit 4" },
        { stdin = "in\0put", env = { V = "vee" }, workdir = "/tmp", user = "1000" }))
      assert.equal(4, r.code)
      assert.equal("in\0putvee\n/tmp\n1000\n", r.stdout)
    end)

    it("splits stdout and stderr", function()
      local r = assert(box:exec({ "sh", "-c", "printf o; printf e >&2" }))
      assert.equal("o", r.stdout)
      assert.equal("e", r.stderr)
      assert.equal(0, r.code)
    end)

    it("reports a missing program as a result with its code", function()
      local r = assert(box:exec({ "/no/such/program" }))
      assert.not_equal(0, r.code)
    end)
  end)
end)

describe("many boxes from one lockup.run", function()
  it("runs calls on one box from several coroutines one at a time, in call order", function()
    local docker = helper.docker()
    local order, outputs = {}, {}
    lockup.run(function()
      helper.closing(assert(docker:start { image = helper.IMAGE }), function(b)
        local done = 0
        for i = 1, 5 do
          lockup.spawn(function()
            local r = assert(b:run(("echo start%d; sleep 0.05; echo end%d"):format(i, i)))
            order[#order + 1] = i
            outputs[i] = r.stdout
            done = done + 1
          end)
        end
        while done < 5 do lockup.sleep(0.01) end
      end)
    end)
    assert.same({ 1, 2, 3, 4, 5 }, order)
    for i = 1, 5 do assert.equal(("start%d\nend%d\n"):format(i, i), outputs[i]) end
  end)

  it("runs 20 boxes at once: every `sleep 1` overlaps every other", function()
    local docker = helper.docker()
    local starts, ends = {}, {}
    local fns, ready = {}, 0
    for i = 1, 20 do
      fns[i] = function()
        return helper.closing(assert(docker:start { image = helper.IMAGE }), function(b)
          -- The boxes start concurrently too, but how fast dockerd starts 20 is
          -- not lockup's business: wait for all of them, then run.
          ready = ready + 1
          while ready < 20 do lockup.sleep(0.01) end
          starts[i] = core.monotime()
          local r = assert(b:run("sleep 1"))
          ends[i] = core.monotime()
          assert.equal(0, r.code)
          return i
        end)
      end
    end
    local results = { lockup.run(C.unpack(fns)) }
    assert.equal(20, #results)
    local latest_start, earliest_end = -math.huge, math.huge
    for i = 1, 20 do
      latest_start = math.max(latest_start, starts[i])
      earliest_end = math.min(earliest_end, ends[i])
    end
    -- Run one after another, the last would start after the first ended.
    assert.is_true(latest_start < earliest_end, "the commands did not all run at the same time")
  end)

  it("returns each function's result and raises the first error with its traceback", function()
    local a, b = lockup.run(function() return 1 end, function() lockup.sleep(0.01) return 2 end)
    assert.equal(1, a)
    assert.equal(2, b)
    local finished = false
    local ok, err = pcall(lockup.run, function() error("boom") end, function()
      lockup.sleep(0.05)
      finished = true
    end)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.matches("stack traceback", err)
    assert.is_true(finished, "an error in one task stopped the others")
  end)

  it("blocks outside lockup.run: the same calls work from plain code", function()
    local b = assert(helper.docker():start { image = helper.IMAGE })
    local r = assert(b:run("echo plain"))
    assert.equal("plain\n", r.stdout)
    assert.is_true(b:stop())
    assert.has_error(function() lockup.spawn(function() end) end)
  end)
end)
