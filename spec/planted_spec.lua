-- Host files a box can swap (issue 11, item 4). put, put_file, build and
-- content_tag list a host directory, then read its files; when that directory
-- is mounted :rw into a box, the box can swap a file in between: for a symlink
-- to a host secret (which then went into the tar stream) or for a FIFO (on
-- which the Lua process then blocked in open(), with no timeout).
--
-- Each reader runs in a fresh Lua (the one running the specs) under `timeout`, so that a reader that
-- blocks fails its test instead of hanging the run.
local helper = require "helper"

local q = helper.shell_quote

local BOUND = 60 -- seconds a child process may take before it counts as hung

-- Runs Lua `code` in a child process bounded by BOUND seconds. Returns its
-- output (stdout and stderr) and whether it exited 0 in time.
local function bounded(code)
  return helper.sh("timeout -k 5 " .. BOUND .. " " .. helper.lua_cmd(code) .. " 2>&1")
end

-- Lua source that sets the globals of a table of strings.
local function globals(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format("%s = %q\n", k, v) end
  return table.concat(parts)
end

-- Child code: `read(entries)` reads the host files of a listing the way
-- lockup does (`reader` is "tar", "hash" or "read"), -> data | nil, err.
local READ = [[
local context = require "lockup.context"
local function read(entries)
  if reader == "hash" then return context.hash(entries) end
  if reader == "read" then
    for _, e in ipairs(entries) do
      if e.type == "file" and e.path and e.name:match("f$") then return context.read(e) end
    end
    error("no file entry named f")
  end
  local src, parts = context.tar_source(entries), {}
  while true do
    local chunk, err = src()
    if err then return nil, err end
    if not chunk then return table.concat(parts) end
    parts[#parts + 1] = chunk
  end
end
]]

describe("host files swapped between listing and reading", function()
  local dir, away, secret
  local SECRET = "SECRET-" .. require("lockup.core").random_hex(8)
  local INNOCENT = ("i"):rep(#SECRET) -- the same size: a size check alone does not see the swap

  before_each(function()
    dir, away = helper.tmpdir(), helper.tmpdir()
    secret = away .. "/secret"
    helper.write(secret, SECRET)
    helper.sh("chmod 600 " .. q(secret))
    helper.sh("mkdir " .. q(away .. "/d") .. " && cp " .. q(secret) .. " " .. q(away .. "/d/f"))
  end)

  after_each(function()
    helper.rm_rf(dir)
    helper.rm_rf(away)
  end)

  -- What a box can put in the place of `path`, planted with a rename (atomic,
  -- as a box would): the new thing is made at a temporary name first.
  local PLANTS = {
    { "a symlink to a host secret", function(tmp) return "ln -s " .. q(secret) .. " " .. q(tmp) end },
    { "a FIFO", function(tmp) return "mkfifo " .. q(tmp) end },
    { "a hard link to a host secret (the same name, another file)", function(tmp)
      return "ln " .. q(secret) .. " " .. q(tmp) end },
  }

  -- Lists `set` in a child process, plants `plant` at `path`, reads with
  -- `reader`: returns the child's output and whether it finished in time.
  local function race(set, path, plant, reader)
    local code = globals { reader = reader, swap = plant(path .. ".new") .. " && mv -f " .. q(path .. ".new")
      .. " " .. q(path) } .. READ .. [[
      local set = set_dir or { f = { file = set_file } }
      local entries = assert(context.entries(set))
      local done = os.execute("unset LD_PRELOAD; " .. swap)
      assert(done == true or done == 0, "the swap failed") -- 0: LuaJIT's status
      local data, err = read(entries)
      io.write(data and ("DATA " .. data) or ("ERR " .. tostring(err)))
    ]]
    code = (set.dir and globals { set_dir = set.dir } or globals { set_file = set.file }) .. code
    return bounded(code)
  end

  for _, reader in ipairs { "tar", "hash", "read" } do
    for _, plant in ipairs(PLANTS) do
      it(string.format("%s of a walked directory: a file swapped for %s is refused", reader, plant[1]), function()
        helper.write(dir .. "/f", INNOCENT)
        local out, ok = race({ dir = dir }, dir .. "/f", plant[2], reader)
        assert.is_true(ok, "the reader did not finish (blocked?): " .. out)
        assert.matches("^ERR ", out)
        assert.matches(dir .. "/f: now ", out, 1, true)
        assert.matches("changed between listing and reading", out, 1, true)
        assert.is_nil(out:find(SECRET, 1, true))
      end)

      it(string.format("%s of a file the caller names: a swap for %s is refused", reader, plant[1]), function()
        helper.write(dir .. "/f", INNOCENT)
        local out, ok = race({ file = dir .. "/f" }, dir .. "/f", plant[2], reader)
        assert.is_true(ok, "the reader did not finish (blocked?): " .. out)
        assert.matches("^ERR ", out)
        assert.matches("changed between listing and reading", out, 1, true)
        assert.is_nil(out:find(SECRET, 1, true))
      end)
    end

    it(reader .. ": a parent directory swapped for a symlink to a host directory is refused", function()
      helper.sh("mkdir " .. q(dir .. "/sub") .. " && printf %s " .. INNOCENT .. " > " .. q(dir .. "/sub/f"))
      local out, ok = race({ dir = dir }, dir .. "/sub", function(tmp)
        return "rm -r " .. q(dir .. "/sub") .. " && ln -s " .. q(away .. "/d") .. " " .. q(tmp)
      end, reader)
      assert.is_true(ok, out)
      assert.matches("^ERR ", out)
      assert.matches(dir .. "/sub/f: now another file", out, 1, true)
      assert.is_nil(out:find(SECRET, 1, true))
    end)
  end

  -- docker:build lists its context, then reads the Dockerfile (in image.lua's
  -- dockerfile_text) and sends the context: the swap is made by a call hook
  -- as that function is entered, between the listing and the reads.
  for _, plant in ipairs(PLANTS) do
    it("build: a Dockerfile swapped for " .. plant[1] .. " after the listing is refused", function()
      helper.write(dir .. "/Dockerfile", "FROM busybox:local\n" .. ("#"):rep(#SECRET - 19))
      local swap = plant[2](dir .. "/Dockerfile.new") .. " && mv -f " .. q(dir .. "/Dockerfile.new") .. " "
        .. q(dir .. "/Dockerfile")
      local out, ok = bounded(globals { dir = dir, swap = swap } .. [[
        local d = assert(require("lockup").connect())
        debug.sethook(function()
          local info = debug.getinfo(2, "nS")
          if info.name == "dockerfile_text" and info.short_src:find("image.lua", 1, true) then
            debug.sethook()
            local done = os.execute("unset LD_PRELOAD; " .. swap)
            assert(done == true or done == 0, "the swap failed") -- 0: LuaJIT's status
          end
        end, "c")
        local id, err = d:build { context = dir }
        io.write(id and ("BUILT " .. id) or ("ERR " .. tostring(err)))
      ]])
      assert.is_true(ok, "the build did not finish (blocked?): " .. out)
      assert.matches("^ERR build context: ", out)
      assert.matches(dir .. "/Dockerfile: now ", out, 1, true)
      assert.matches("changed between listing and reading", out, 1, true)
      assert.is_nil(out:find(SECRET, 1, true))
    end)
  end

  it("a subdirectory swapped for a symlink between its parent's listing and its own is refused", function()
    helper.sh("mkdir " .. q(dir .. "/sub") .. " && printf x > " .. q(dir .. "/sub/f"))
    local core = require "lockup.core"
    local list = assert(core.scandir(dir))
    assert.equal(1, #list)
    assert.equal("dir", list[1].type)
    helper.sh("mv " .. q(dir .. "/sub") .. " " .. q(dir .. "/old") .. " && ln -s " .. q(away .. "/d") .. " "
      .. q(dir .. "/sub"))
    local entries, err = core.scandir(dir .. "/sub", list[1].id)
    assert.is_nil(entries)
    assert.matches(dir .. "/sub: now a symlink: changed between listing and reading", err, 1, true)
    helper.sh("rm " .. q(dir .. "/sub") .. " && mkdir " .. q(dir .. "/sub"))
    entries, err = core.scandir(dir .. "/sub", list[1].id) -- a new directory of the same name
    assert.is_nil(entries)
    assert.matches(dir .. "/sub: now another directory", err, 1, true)
  end)

  it("a caller's own symlink to a file is followed, and what it leads to is read", function()
    helper.write(dir .. "/real", INNOCENT)
    helper.sh("ln -s real " .. q(dir .. "/link"))
    local out, ok = bounded(globals { reader = "tar", link = dir .. "/link" } .. READ .. [[
      local data, err = read(assert(context.entries { f = { file = link } }))
      io.write(data and ("DATA " .. data) or ("ERR " .. tostring(err)))
    ]])
    assert.is_true(ok, out)
    assert.matches("^DATA ", out)
    assert.truthy(out:find(INNOCENT, 1, true))
  end)

  it("a FIFO the caller names is refused at once, never opened", function()
    helper.sh("mkfifo " .. q(dir .. "/fifo"))
    local out, ok = bounded([[
      local context = require "lockup.context"
      local _, err = context.entries { f = { file = ]] .. string.format("%q", dir .. "/fifo") .. [[ } }
      local _, derr = context.entries ]] .. string.format("%q", dir .. "/fifo") .. [[
      io.write(tostring(err), "\n", tostring(derr))
    ]])
    assert.is_true(ok, out)
    assert.matches("/fifo: not a regular file\n", out, 1, true)
    assert.matches("/fifo: not a directory", out, 1, true)
  end)
end)

describe("a box with the directory mounted :rw, swapping files in a loop", function()
  local root, dir, away, box
  local SECRET = "SECRET-" .. require("lockup.core").random_hex(8)
  local SECONDS = 6 -- of host work while the box swaps, for each test

  before_each(function()
    -- root is mounted into the box; the host lists and reads root/ctx; the
    -- box makes what it plants in root/tmp, then renames it into ctx
    root, away = helper.tmpdir(), helper.tmpdir()
    dir = root .. "/ctx"
    helper.write(away .. "/secret", SECRET .. "\n")
    helper.sh("chmod 600 " .. q(away .. "/secret") .. " && mkdir " .. q(dir) .. " " .. q(root .. "/tmp"))
    helper.write(dir .. "/Dockerfile", "FROM busybox:local\n")
    helper.write(dir .. "/f", "innocent\n")
    -- Names after Dockerfile and f: listing them widens the window between
    -- the listing of those two and their reads. The attack does not need it;
    -- it makes the swaps land within seconds on the code before the fix.
    helper.sh("cd " .. q(dir) .. " && for i in $(seq 1000 2999); do echo $i > p$i; done && chmod -R a+rwX "
      .. q(root))
    box = assert(helper.docker():start { image = helper.IMAGE, volumes = { [root] = "/x:rw" } })
    -- In the box: f and Dockerfile become, in turn, a symlink to the host's
    -- secret (a path the box cannot read itself), a FIFO and a file again.
    local loop = "cd /x && while :; do for n in f Dockerfile; do "
      .. "ln -s " .. q(away .. "/secret") .. " tmp/$n && mv -f tmp/$n ctx/$n; "
      .. "mkfifo tmp/$n && mv -f tmp/$n ctx/$n; "
      .. "echo FROM busybox:local > tmp/$n && mv -f tmp/$n ctx/$n; done; done"
    local r = assert(box:run("(" .. loop .. ") >/dev/null 2>&1 &"))
    assert.equal(0, r.code)
  end)

  after_each(function()
    if box then box:stop() end
    helper.rm_rf(root)
    helper.rm_rf(away)
  end)

  -- Child code around a `work()` that the host repeats for SECONDS while the
  -- box swaps: `count(kind, err)` tallies outcomes, `leak(where)` notes the
  -- secret seen. Prints the tallies and "leaks=N".
  local PRELUDE = [[
    local lockup = require "lockup"
    local context = require "lockup.context"
    local now = require("lockup.core").monotime
    local counts, leaks = {}, {}
    local function leak(where) leaks[#leaks + 1] = where end
    local function count(kind, err)
      local refused = err and err:find("changed between listing and reading", 1, true)
      local key = kind .. (refused and " refused" or err and " failed" or " ok")
      counts[key] = (counts[key] or 0) + 1
      if err and err:find(secret, 1, true) then leak(kind .. ": " .. err) end
    end
    local function for_a_while(fn)
      local stop = now() + tonumber(seconds)
      while now() < stop do fn() end
    end
    local function report()
      local keys = {}
      for k, v in pairs(counts) do keys[#keys + 1] = k .. "=" .. v end
      table.sort(keys)
      print(table.concat(keys, ", "))
      print("leaks=" .. #leaks)
      for _, l in ipairs(leaks) do print("LEAK " .. l) end
    end
  ]]

  -- Runs `body` (child code using PRELUDE) while the box swaps, bounded; then
  -- checks that it finished, saw no secret and met the swaps at least once.
  local function attack(kind, body)
    -- The host side runs in a child process: on a reader that blocks, the
    -- timeout ends it (and its boxes go with it) and the test fails.
    local out, ok = bounded(globals { dir = dir, secret = SECRET, seconds = tostring(SECONDS),
      image = helper.IMAGE } .. PRELUDE .. body .. "\nreport()\n")
    assert.is_true(ok, "the host side did not finish in " .. BOUND .. " s (blocked?):\n" .. out)
    assert.matches("leaks=0\n", out, 1, true)
    assert.is_nil(out:find(SECRET, 1, true), out)
    -- the swaps did land (the test tried something): some reads were refused
    assert.matches(kind .. " refused=%d+", out)
  end

  it("the tar stream (put and build send it) and content_tag never hold the secret, never hang", function()
    attack("tar", [[
      for_a_while(function()
        local entries, err = context.entries(dir)
        if not entries then return count("list", err) end
        local src, parts = context.tar_source(entries), {}
        repeat
          local chunk, terr = src()
          parts[#parts + 1] = chunk
          if terr then err = terr end
        until not chunk
        if table.concat(parts):find(secret, 1, true) then leak("the tar stream") end
        count("tar", err)
        local _, herr = lockup.content_tag(dir)
        count("hash", herr)
      end)
    ]])
  end)

  it("box:put never writes the secret into another box, never hangs", function()
    attack("put", [[
      local target = assert(assert(lockup.connect()):start { image = image })
      for_a_while(function()
        local _, err = target:put("/tmp/in", { x = { dir = dir } })
        count("put", err)
        local r = assert(target:run("grep -rl " .. secret .. " /tmp/in; rm -rf /tmp/in"))
        if r.stdout ~= "" then leak("put: " .. r.stdout) end
      end)
      target:stop()
    ]])
  end)

  it("docker:build never reads the secret as its Dockerfile or context, never hangs", function()
    attack("build", [[
      local d = assert(lockup.connect())
      for_a_while(function()
        local _, err = d:build { context = dir }
        count("build", err)
      end)
    ]])
  end)
end)
