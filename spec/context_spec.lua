-- File sets (lockup.context), without Docker: the entries a host directory or
-- a table becomes, the tar stream they are written as (read back with the
-- host's GNU tar), and the hash content tags are made of.
local helper = require "helper"
local C = require "support.compat"
local context = require "lockup.context"

local q = helper.shell_quote

local function oct(s) return C.tointeger(tonumber(s, 8)) end

-- name -> entry, and the names in order.
local function index(entries)
  local by, names = {}, {}
  for i, e in ipairs(entries) do
    by[e.name] = e
    names[i] = e.name
  end
  return by, names
end

-- Writes the whole tar stream of `entries` to a host file; returns its path.
local function tar_file(entries, path)
  local src = context.tar_source(entries)
  local f = assert(io.open(path, "wb"))
  while true do
    local chunk, err = src()
    assert(err == nil, err)
    if not chunk then break end
    assert.is_string(chunk)
    assert.is_true(#chunk > 0, "an empty chunk before the end")
    f:write(chunk)
  end
  f:close()
  return path
end

-- `tar -tvf` of a file, as { name = { perms = "-rw-r--r--", owner = "0/0", size = n, target = t } }.
local function listing(path)
  local out, ok = helper.sh("tar --numeric-owner -tvf " .. q(path))
  assert(ok, "tar -tvf failed on " .. path)
  local t, order = {}, {}
  for line in out:gmatch("[^\n]+") do
    local perms, owner, size, rest = line:match("^(%S+)%s+(%S+)%s+(%d+)%s+%S+%s+%S+%s+(.*)$")
    assert(perms, "unexpected tar -tv line: " .. line)
    local name, target = rest:match("^(.-) %-> (.*)$")
    name = (name or rest):gsub("/$", "")
    t[name] = { perms = perms, owner = owner, size = tonumber(size), target = target }
    order[#order + 1] = name
  end
  return t, order
end

local function extract_one(path, name)
  local out, ok = helper.sh("tar -xOf " .. q(path) .. " " .. q(name))
  assert(ok, "tar -xOf failed for " .. name)
  return out
end

describe("lockup.context.entries", function()
  local dir

  before_each(function()
    dir = helper.tmpdir()
  end)

  after_each(function()
    helper.rm_rf(dir)
  end)

  it("turns a table into sorted entries, parents before children, with modes", function()
    local entries = assert(context.entries {
      ["z.txt"] = "zz",
      ["a/b/c.sh"] = { data = "#!/bin/sh\n", mode = oct "755" },
      ["a/secret"] = { data = "s", mode = oct "600" },
      ["m"] = "",
      ["a-b"] = "dash sorts before slash",
    })
    local by, names = index(entries)
    assert.same({ "a", "a-b", "a/b", "a/b/c.sh", "a/secret", "m", "z.txt" }, names)
    assert.same({ name = "a", type = "dir", mode = oct "755" }, by["a"])
    assert.same({ name = "a/b", type = "dir", mode = oct "755" }, by["a/b"])
    assert.equal("file", by["a/b/c.sh"].type)
    assert.equal(oct "755", by["a/b/c.sh"].mode)
    assert.equal(oct "600", by["a/secret"].mode)
    assert.equal(oct "644", by["z.txt"].mode)
    assert.equal("zz", by["z.txt"].data)
    assert.equal(2, by["z.txt"].size)
    assert.equal(0, by["m"].size)
  end)

  it("keeps a parent given explicitly (its mode) and adds only the missing ones", function()
    local entries = assert(context.entries {
      ["d"] = { dir = dir }, -- an empty host directory
      ["d/x/y"] = "y",
    })
    local by, names = index(entries)
    assert.same({ "d", "d/x", "d/x/y" }, names)
    assert.equal("dir", by["d/x"].type)
    assert.equal(oct "755", by["d/x"].mode) -- made up
    helper.sh("chmod 700 " .. q(dir))
    by = index(assert(context.entries { ["d"] = { dir = dir }, ["d/x/y"] = "y" }))
    assert.equal(oct "700", by["d"].mode)
    by = index(assert(context.entries { ["d"] = { dir = dir, mode = oct "711" } }))
    assert.equal(oct "711", by["d"].mode)
  end)

  it("walks a host directory: files, subdirectories, symlinks, modes, sizes", function()
    helper.sh(table.concat({
      "cd " .. q(dir),
      "mkdir -p sub/deep",
      "printf hello > sub/deep/f",
      "printf 'x' > top",
      "chmod 640 top",
      "chmod 750 sub",
      "ln -s sub/deep/f link",
      "ln -s /nonexistent dangling",
    }, " && "))
    local entries = assert(context.entries(dir))
    local by, names = index(entries)
    assert.same({ "dangling", "link", "sub", "sub/deep", "sub/deep/f", "top" }, names)
    assert.equal("symlink", by["link"].type)
    assert.equal("sub/deep/f", by["link"].target)
    assert.equal("/nonexistent", by["dangling"].target)
    assert.equal("dir", by["sub"].type)
    assert.equal(oct "750", by["sub"].mode)
    assert.equal("file", by["sub/deep/f"].type)
    assert.equal(5, by["sub/deep/f"].size)
    assert.equal(dir .. "/sub/deep/f", by["sub/deep/f"].path)
    assert.equal(oct "640", by["top"].mode)
    assert.is_number(by["top"].mtime)
  end)

  it("puts a host directory and a host file under names of a table", function()
    helper.sh("mkdir " .. q(dir .. "/d") .. " && printf abc > " .. q(dir .. "/d/f") .. " && printf 12345 > " .. q(dir .. "/file"))
    helper.sh("chmod 600 " .. q(dir .. "/file"))
    local by, names = index(assert(context.entries {
      ["lib/tree"] = { dir = dir .. "/d" },
      ["big.bin"] = { file = dir .. "/file" },
      ["big2.bin"] = { file = dir .. "/file", mode = oct "755" },
    }))
    assert.same({ "big.bin", "big2.bin", "lib", "lib/tree", "lib/tree/f" }, names)
    assert.equal(5, by["big.bin"].size)
    assert.equal(oct "600", by["big.bin"].mode) -- the host file's own
    assert.equal(oct "755", by["big2.bin"].mode)
    assert.equal(dir .. "/file", by["big.bin"].path)
    assert.equal(dir .. "/d/f", by["lib/tree/f"].path)
  end)

  it("takes an empty table and an empty directory", function()
    assert.same({}, context.entries {})
    assert.same({}, context.entries(dir))
  end)

  describe("rejects with nil, err", function()
    local cases = {
      { "an empty name", { [""] = "x" }, "empty name" },
      { "an absolute name", { ["/abs"] = "x" }, "absolute" },
      { "'..' inside", { ["a/../b"] = "x" }, "escapes with '..'" },
      { "'..' alone", { [".."] = "x" }, "escapes with '..'" },
      { "'..' first", { ["../x"] = "x" }, "escapes with '..'" },
      { "an empty part", { ["a//b"] = "x" }, "empty or '.' part" },
      { "a trailing slash", { ["a/"] = "x" }, "empty or '.' part" },
      { "'.'", { ["."] = "x" }, "empty or '.' part" },
      { "a '.' part", { ["a/./b"] = "x" }, "empty or '.' part" },
      { "a NUL byte", { ["a\0b"] = "x" }, "NUL" },
      { "a number key", { [1] = "x" }, "names must be strings" },
      { "a bad value", { a = 42 }, "a string or a table expected" },
      { "a table with no data, file or dir", { a = { mode = 420 } }, "give one of data, file or dir" },
      { "a mode too large", { a = { data = "x", mode = 4096 } }, "bad mode" },
      { "a negative mode", { a = { data = "x", mode = -1 } }, "bad mode" },
      { "a fractional mode", { a = { data = "x", mode = 420.5 } }, "bad mode" },
      { "a string mode", { a = { data = "x", mode = "644" } }, "bad mode" },
      { "a file under a file", { ["a"] = "file", ["a/b"] = "x" }, "not a directory" },
      { "a file under a file, two down", { ["a"] = "file", ["a/b/c"] = "x" }, "not a directory" },
      { "a set that is a number", 42, "directory path or a table" },
      { "a set that is a boolean", true, "directory path or a table" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local entries, err = context.entries(c[2])
        assert.is_nil(entries)
        assert.is_string(err)
        assert.matches(c[3], err, 1, true)
      end)
    end

    it("a name given twice (a table name and a name inside a host directory)", function()
      helper.write(dir .. "/x", "from the dir")
      local entries, err = context.entries { ["d"] = { dir = dir }, ["d/x"] = "from the table" }
      assert.is_nil(entries)
      assert.matches("'d/x' is given twice", err, 1, true)
    end)

    it("a missing host directory", function()
      local entries, err = context.entries(dir .. "/nope")
      assert.is_nil(entries)
      assert.matches(dir .. "/nope", err, 1, true)
      assert.matches("No such file", err, 1, true)
      entries, err = context.entries { d = { dir = dir .. "/nope" } }
      assert.is_nil(entries)
      assert.matches("No such file", err, 1, true)
    end)

    it("a host directory that is a file", function()
      helper.write(dir .. "/f", "x")
      local entries, err = context.entries(dir .. "/f")
      assert.is_nil(entries)
      assert.matches("not a directory", err, 1, true)
    end)

    it("a host file that is a directory, or missing", function()
      local entries, err = context.entries { a = { file = dir } }
      assert.is_nil(entries)
      assert.matches(dir .. ": is a directory", err, 1, true)
      entries, err = context.entries { a = { file = dir .. "/missing" } }
      assert.is_nil(entries)
      assert.matches(dir .. "/missing", err, 1, true)
      assert.matches("No such file", err, 1, true)
    end)

    it("a FIFO inside a host directory", function()
      helper.sh("mkfifo " .. q(dir .. "/fifo"))
      local entries, err = context.entries(dir)
      assert.is_nil(entries)
      assert.matches("fifo", err, 1, true)
      assert.matches("not a file, directory or symlink", err, 1, true)
    end)
  end)

  it("bad_name says nothing for good names", function()
    for _, name in ipairs { "a", "a/b", "a.b/c..d", "...", ".hidden", "a b", "é", ("x"):rep(300) } do
      assert.is_nil(context.bad_name(name), name)
    end
  end)
end)

describe("lockup.context.tar_source", function()
  local dir

  before_each(function()
    dir = helper.tmpdir()
  end)

  after_each(function()
    helper.rm_rf(dir)
  end)

  it("writes names, types, modes, contents and symlinks GNU tar reads back", function()
    helper.sh(table.concat({
      "cd " .. q(dir),
      "mkdir -p tree/sub",
      "printf 'from the host' > tree/sub/f",
      "chmod 644 tree/sub/f",
      "chmod 750 tree/sub",
      "chmod 705 tree",
      "ln -s sub/f tree/link",
    }, " && "))
    local binary = helper.all_bytes() .. "\0\0end"
    local long = ("n"):rep(150) -- past ustar's 100-byte name field: a pax header
    local entries = assert(context.entries {
      ["a.txt"] = "A",
      ["bin/run.sh"] = { data = "#!/bin/sh\necho run\n", mode = oct "755" },
      ["bin.dat"] = binary,
      ["empty"] = "",
      ["private"] = { data = "p", mode = oct "600" },
      ["suid-looking"] = { data = "s", mode = oct "4755" },
      ["t"] = { dir = dir .. "/tree" },
      [long] = "long name",
      ["deep/" .. long .. "/" .. long] = "deeper",
    })
    local path = tar_file(entries, dir .. "/out.tar")
    local list, order = listing(path)
    local want = {
      ["a.txt"] = { "-rw-r--r--", 1 },
      ["bin"] = { "drwxr-xr-x", 0 },
      ["bin/run.sh"] = { "-rwxr-xr-x", 19 },
      ["bin.dat"] = { "-rw-r--r--", 261 },
      ["empty"] = { "-rw-r--r--", 0 },
      ["private"] = { "-rw-------", 1 },
      ["suid-looking"] = { "-rwsr-xr-x", 1 },
      ["t"] = { "drwx---r-x", 0 },
      ["t/link"] = { "lrwxrwxrwx", 0 },
      ["t/sub"] = { "drwxr-x---", 0 },
      ["t/sub/f"] = { "-rw-r--r--", 13 },
      [long] = { "-rw-r--r--", 9 },
      ["deep"] = { "drwxr-xr-x", 0 },
      ["deep/" .. long] = { "drwxr-xr-x", 0 },
      ["deep/" .. long .. "/" .. long] = { "-rw-r--r--", 6 },
    }
    local n = 0
    for name, w in pairs(want) do
      n = n + 1
      assert.is_table(list[name], "missing from the archive: " .. name)
      assert.equal(w[1], list[name].perms, name)
      assert.equal(w[2], list[name].size, name)
      assert.equal("0/0", list[name].owner, name)
    end
    assert.equal(n, #order, "unexpected entries: " .. table.concat(order, " "))
    assert.equal("sub/f", list["t/link"].target)
    -- parents come before their children in the stream
    local pos = {}
    for i, name in ipairs(order) do pos[name] = i end
    for name in pairs(want) do
      local parent = name:match("^(.*)/[^/]+$")
      if parent then assert.is_true(pos[parent] < pos[name], parent .. " after " .. name) end
    end
    -- contents, byte for byte
    assert.equal("A", extract_one(path, "a.txt"))
    assert.equal(binary, extract_one(path, "bin.dat"))
    assert.equal("", extract_one(path, "empty"))
    assert.equal("#!/bin/sh\necho run\n", extract_one(path, "bin/run.sh"))
    assert.equal("from the host", extract_one(path, "t/sub/f"))
    assert.equal("long name", extract_one(path, long))
    assert.equal("deeper", extract_one(path, "deep/" .. long .. "/" .. long))
  end)

  it("streams a host file in chunks of bounded size, whole", function()
    local block = ("0123456789abcdef"):rep(64 * 1024) -- 1 MiB
    local f = assert(io.open(dir .. "/big", "wb"))
    for i = 1, 3 do f:write(block:sub(1, -2), string.char(i)) end
    f:write("tail")
    f:close()
    local entries = assert(context.entries { ["big"] = { file = dir .. "/big" } })
    local src = context.tar_source(entries)
    local total, chunks, biggest = 0, 0, 0
    local out = assert(io.open(dir .. "/big.tar", "wb"))
    while true do
      local chunk, err = src()
      assert.is_nil(err)
      if not chunk then break end
      chunks = chunks + 1
      total = total + #chunk
      biggest = math.max(biggest, #chunk)
      out:write(chunk)
    end
    out:close()
    assert.is_true(chunks >= 10, "only " .. chunks .. " chunks")
    assert.is_true(biggest <= 512 * 1024, "a chunk of " .. biggest .. " bytes")
    assert.equal(context.tar_size(entries), total)
    assert.equal(3 * 1024 * 1024 + 4, listing(dir .. "/big.tar").big.size)
    local same = helper.sh("tar -xOf " .. q(dir .. "/big.tar") .. " big | cmp - " .. q(dir .. "/big") .. " && echo same")
    assert.equal("same\n", same)
  end)

  it("keeps returning nil once the stream has ended", function()
    local src = context.tar_source(assert(context.entries { a = "x" }))
    repeat local chunk = src() until not chunk
    assert.is_nil(src())
    assert.is_nil(src())
  end)

  it("says when a host file has gone before it is read", function()
    helper.write(dir .. "/gone", "x")
    local entries = assert(context.entries { g = { file = dir .. "/gone" } })
    os.remove(dir .. "/gone")
    local src = context.tar_source(entries)
    local chunk, err = src()
    assert.is_nil(chunk)
    assert.matches(dir .. "/gone", err, 1, true)
    assert.matches("No such file", err, 1, true)
  end)

  it("says when a host file shrinks while it is read", function()
    helper.write(dir .. "/shrinks", ("x"):rep(2 * 1024 * 1024))
    local entries = assert(context.entries { s = { file = dir .. "/shrinks" } })
    local src = context.tar_source(entries)
    local chunk, err = src()
    assert.is_string(chunk, err)
    helper.write(dir .. "/shrinks", "") -- truncated on the host
    repeat chunk, err = src() until not chunk
    assert.is_string(err)
    assert.matches("shrank", err, 1, true)
  end)
end)

describe("lockup.context.hash", function()
  local dir

  before_each(function()
    dir = helper.tmpdir()
  end)

  after_each(function()
    helper.rm_rf(dir)
  end)

  local function hash(set)
    return assert(context.hash(assert(context.entries(set))))
  end

  it("is sha256 over names, types, modes and contents (a stable format)", function()
    -- the format, written out independently, hashed by the host's sha256sum:
    -- content tags of images built by an earlier version must stay valid
    local bytes = table.concat {
      C.bin_pack(">s4s1I4", "a.txt", "file", oct "644"), C.bin_pack(">I8", 1), "A",
      C.bin_pack(">s4s1I4", "x", "dir", oct "755"),
      C.bin_pack(">s4s1I4", "x/y.sh", "file", oct "755"), C.bin_pack(">I8", 2), "#!",
    }
    helper.write(dir .. "/bytes", bytes)
    local want = helper.sha256_file(dir .. "/bytes")
    assert.equal(want, hash { ["a.txt"] = "A", ["x/y.sh"] = { data = "#!", mode = oct "755" } })
    assert.matches("^%x+$", want)
    assert.equal(64, #want)
  end)

  it("is the same for the same content, whatever the table's order or how a file is given", function()
    helper.write(dir .. "/f", "contents")
    helper.sh("chmod 644 " .. q(dir .. "/f"))
    local a = hash { one = "1", two = "2", ["f"] = "contents" }
    local b = hash { ["f"] = { file = dir .. "/f" }, two = { data = "2" }, one = "1" }
    assert.equal(a, b)
  end)

  it("changes with a content, a mode, a name or a type", function()
    local base = hash { a = "x", d = { data = "y", mode = oct "755" } }
    local others = {
      hash { a = "X", d = { data = "y", mode = oct "755" } },
      hash { a = "x", d = { data = "y", mode = oct "750" } },
      hash { b = "x", d = { data = "y", mode = oct "755" } },
      hash { a = "x", ["d/z"] = "y" },
      hash { a = "x", d = { data = "y", mode = oct "755" }, e = "" },
      hash { a = "xy", d = { data = "", mode = oct "755" } }, -- same bytes, moved across files
    }
    local seen = { [base] = true }
    for i, h in ipairs(others) do
      assert.is_nil(seen[h], "case " .. i .. " hashes like another")
      seen[h] = true
    end
  end)

  it("ignores mtimes: touching a host directory's files changes nothing", function()
    helper.sh("cd " .. q(dir) .. " && mkdir s && printf a > s/f && ln -s s/f l")
    local before = hash(dir)
    helper.sh("touch -d '2001-02-03 04:05:06' " .. q(dir .. "/s/f") .. " " .. q(dir .. "/s"))
    helper.sh("touch -h -d '2001-02-03 04:05:06' " .. q(dir .. "/l"))
    assert.equal(before, hash(dir))
    helper.write(dir .. "/s/f", "b")
    assert.not_equal(before, hash(dir))
  end)

  it("sees a symlink's target", function()
    helper.sh("cd " .. q(dir) .. " && ln -s one l")
    local before = hash(dir)
    helper.sh("cd " .. q(dir) .. " && rm l && ln -s two l")
    assert.not_equal(before, hash(dir))
  end)

  it("says when a host file changed between listing and hashing", function()
    helper.write(dir .. "/f", "short")
    local entries = assert(context.entries { f = { file = dir .. "/f" } })
    helper.write(dir .. "/f", "longer now")
    local h, err = context.hash(entries)
    assert.is_nil(h)
    assert.matches("changed", err, 1, true)
    os.remove(dir .. "/f")
    h, err = context.hash(entries)
    assert.is_nil(h)
    assert.matches("No such file", err, 1, true)
  end)

  it("hashes a big file in slices, letting other tasks run between them (a loop such as nginx's never waits long)", function()
    local lockup = require "lockup"
    local big_dir = helper.tmpdir()
    helper.write(big_dir .. "/big", ("0123456789abcdef"):rep(9 * 65536)) -- 9 MiB: three slices
    local alone = assert(lockup.content_tag(big_dir, "t"))
    local tag, ticks, done = nil, 0, false
    lockup.run(function()
      tag = assert(lockup.content_tag(big_dir, "t"))
      done = true
    end, function()
      while not done do
        ticks = ticks + 1
        lockup.sleep(0)
      end
    end)
    os.execute("rm -rf " .. q(big_dir))
    assert.equal(alone, tag)
    assert.is_true(ticks >= 2, "the other task ran " .. ticks .. " times while the file was hashed")
  end)
end)
