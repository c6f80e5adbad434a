-- The session protocol on each shell lockup meets: busybox sh (busybox:local),
-- dash (Debian's /bin/sh, debian-lua:local) and bash (bash:local, Debian's
-- static bash as /bin/sh). A step's stdin arrives exactly, whatever its bytes
-- and wherever a 16 KiB printf chunk starts, or the step fails saying why;
-- and what a step leaves behind (a function named `command`, aliases, IFS)
-- does not break the steps after it.
local helper = require "helper"

local SHELLS = {
  { name = "busybox sh", image = "busybox:local" },
  { name = "dash", image = "debian-lua:local" },
  { name = "bash", image = "bash:local" },
}
local CHUNK = 16384 -- lockup's printf chunk (lua/lockup/session.lua)

-- Every byte value, in an order where each follows every other somewhere.
local ALL_BYTES = {}
for i = 0, 255 do ALL_BYTES[#ALL_BYTES + 1] = string.char(i) end
for i = 0, 255 do ALL_BYTES[#ALL_BYTES + 1] = string.char(255 - i) end
ALL_BYTES = table.concat(ALL_BYTES)

-- n bytes starting with `head`, cycling through every byte value.
local function chunk(head, n)
  local body = ALL_BYTES:rep(math.floor(n / #ALL_BYTES) + 1)
  return (head .. body):sub(1, n)
end

for _, shell in ipairs(SHELLS) do
  describe("on " .. shell.name, function()
    local box
    setup(function() box = assert(helper.docker():start { image = shell.image }) end)
    teardown(function() if box then box:stop() end end)

    -- What `cat` gave back for data, compared without printing megabytes.
    local function round_trip(data)
      local r = assert(box:run("cat", { stdin = data }))
      assert.equal(0, r.code, r.stderr)
      if r.stdout ~= data then
        local i = 1
        while r.stdout:byte(i) == data:byte(i) do i = i + 1 end
        error(string.format("stdin of %d bytes came back as %d, first difference at byte %d", #data, #r.stdout, i))
      end
    end

    it("delivers stdin exactly when a chunk starts with any byte value", function()
      local parts = {}
      for b = 0, 255 do parts[#parts + 1] = chunk(string.char(b), CHUNK) end
      round_trip(table.concat(parts))
    end)

    it("delivers stdin that looks like printf options at a chunk's start", function()
      for _, head in ipairs { "-b", "-n hello", "--", "-", "-v x", "%s", "\\0", "--help" } do
        round_trip(head) -- the whole stdin
        round_trip(head .. "\n" .. chunk("x", CHUNK - #head - 1) .. head .. chunk("-", 100)) -- first and second chunk
      end
    end)

    it("fails a step whose stdin cannot be written, saying why, and runs nothing", function()
      local small = assert(helper.docker():start { image = shell.image, disk = "1m" })
      local r, err = small:run("cat >/work/ran; echo ran", { stdin = chunk("x", 2 * 1024 * 1024) })
      assert.is_nil(r)
      assert.matches("could not write the step's stdin (2097152 bytes) into the box", err, 1, true)
      r = assert(small:run("ls /work; ls -a /tmp | grep -c lockup-stdin"))
      assert.equal("0\n", r.stdout)
      small:stop()
    end)

    it("keeps the protocol's words when a step redefines them", function()
      assert(box:run("command() { echo forged; }; printf() { echo forged; }"))
      local r = assert(box:run("echo real; (exit 3)", { timeout = 20 }))
      assert.equal(3, r.code)
      assert.equal("real\n", r.stdout)
      assert(box:run("alias command='echo forged'; alias printf='echo forged'"))
      r = assert(box:run("echo real; (exit 4)", { timeout = 20 }))
      assert.equal(4, r.code)
      assert.equal("real\n", r.stdout)
      assert(box:run("unset -f printf; unalias -a")) -- a step's own functions stay, for its own steps
    end)

    it("keeps a step's \"$@\", and starts each step with $? at 0", function()
      assert(box:run("set -- a 'b c' d; shift"))
      local r = assert(box:run('echo "$?"; printf "[%s]" "$@"; false'))
      assert.equal("0\n[b c][d]", r.stdout)
      assert.equal(1, r.code)
      r = assert(box:run('echo "$?" "$#"; set --'))
      assert.equal("0 2\n", r.stdout)
    end)

    it("goes on after a step closes or moves fds 7 and 8, or sets -u", function()
      assert(box:run("exec 7>&- 8>/dev/null"))
      local r = assert(box:run("echo out; echo err >&2; (exit 5)"))
      assert.equal(5, r.code)
      assert.equal("out\n", r.stdout)
      assert.equal("err\n", r.stderr)
      assert(box:run("set -u"))
      r = assert(box:run("set --; echo still"))
      assert.equal("still\n", r.stdout)
      assert(box:run("set +u"))
    end)

    -- On bash the tail is a read-only function (lua/lockup/session.lua,
    -- STEP_FN): a step cannot unset or redefine it, and it says so; on the
    -- other shells the tail is in each line, and there is nothing to remove.
    it("keeps the protocol when a step removes every function it can, or aliases the tail", function()
      assert(box:run("f() { :; }; command() { echo forged; }"))
      local r = assert(box:run("unset -f _lockup f command; _lockup() { echo forged; }; "
        .. "alias _lockup='echo forged'; echo done"))
      assert.equal("done\n", r.stdout)
      if shell.name == "bash" then
        assert.matches("_lockup: readonly function", r.stderr, 1, true)
        assert(box:run("for f in $(compgen -A function); do unset -f \"$f\"; done"))
      end
      r = assert(box:run("echo real; (exit 6)", { timeout = 20 }))
      assert.equal(6, r.code)
      assert.equal("real\n", r.stdout)
      assert.equal("", r.stderr)
      assert(box:run("unset -f _lockup; unalias -a"))
    end)

    it("reports exit codes with any IFS", function()
      assert(box:run("IFS=0123456789"))
      for _, code in ipairs { 0, 1, 10, 100, 255 } do
        local r = assert(box:run("(exit " .. code .. ")", { timeout = 20 }))
        assert.equal(code, r.code)
      end
      local r = assert(box:run("printf 'a b\\n'", { stdin = "-x" }))
      assert.equal("a b\n", r.stdout)
      assert(box:run("unset IFS"))
    end)
  end)
end
