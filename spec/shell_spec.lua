-- The session protocol's shell text (lua/lockup/shell.lua), without Docker:
-- each text run by the shells lockup meets, here on the host (dash, bash,
-- busybox sh). What would act on the host's processes (the sweep, the
-- lifelines) is only parsed (`sh -n`).
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
