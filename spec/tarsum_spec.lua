-- Specs for lockup.tarsum (lua/lockup/tarsum.lua): the content hash box:commit
-- tags an image with. What counts (names, types, permission bits, link
-- targets, contents) and what does not (times, owners, entry order, the
-- archive's own layout: ustar prefix, GNU long names, pax records); then
-- hostile archives, which come out of a box: nil, err or a hash, never a Lua
-- error, a crash or a hang. No Docker: archives are made with lockup.core's
-- tar writer, or by hand below where the writer would not make them.
local core = require "lockup.core"
local tarsum = require "lockup.tarsum"
local C = require "support.compat"

-- An archive made with lockup.core's writer: build(t) adds its entries.
local function archive(build)
  local t = core.tar()
  build(t)
  assert(t:finish())
  local data = assert(t:take(64 * 1024 * 1024))
  t:close()
  return data
end

local function hash(data, salt)
  return assert(tarsum.hash(data, salt))
end

-- Tar by hand ----------------------------------------------------------------

local BLOCK = 512
local END = ("\0"):rep(2 * BLOCK)

local function pad(s, width)
  assert(#s <= width, "field too long")
  return s .. ("\0"):rep(width - #s)
end

-- An octal field of `width` bytes, NUL-terminated.
local function octal(n, width)
  local s = string.format("%o", n)
  return ("0"):rep(width - 1 - #s) .. s .. "\0"
end

-- A 512-byte header block with a correct checksum. h: name, mode, size, type
-- ("0" by default), link, prefix, uid, gid, mtime, uname, gname, and raw
-- overrides mode_field / size_field; gnu = true for GNU's magic.
local function header(h)
  local block = table.concat({
    pad(h.name or "", 100),
    h.mode_field or octal(h.mode or 420, 8),
    octal(h.uid or 0, 8),
    octal(h.gid or 0, 8),
    h.size_field or octal(h.size or 0, 12),
    octal(h.mtime or 0, 12),
    "        ", -- the checksum, counted as spaces
    h.type or "0",
    pad(h.link or "", 100),
    h.gnu and "ustar  \0" or ("ustar\0" .. "00"),
    pad(h.uname or "", 32),
    pad(h.gname or "", 32),
    octal(0, 8),
    octal(0, 8),
    pad(h.prefix or "", 155),
    ("\0"):rep(12),
  })
  assert(#block == BLOCK)
  local sum = 0
  for i = 1, BLOCK do sum = sum + block:byte(i) end
  return block:sub(1, 148) .. string.format("%06o", sum) .. "\0 " .. block:sub(157)
end

local function padded(data)
  return data .. ("\0"):rep((BLOCK - #data % BLOCK) % BLOCK)
end

-- One entry: its header, then `data` padded to whole blocks.
local function entry(h, data)
  data = data or ""
  if h.size == nil and h.size_field == nil then h.size = #data end
  return header(h) .. padded(data)
end

-- A pax record "len key=value\n", len counting itself.
local function pax_record(key, value)
  local rest = " " .. key .. "=" .. value .. "\n"
  local len = #rest + 1
  while #tostring(len) + #rest ~= len do len = #tostring(len) + #rest end
  return len .. rest
end

-- GNU's long name ('L') or long link ('K') entry for `name`.
local function gnu_long(kind, name)
  return entry({ name = "././@LongLink", type = kind, gnu = true, mode = 0 }, name .. "\0")
end

local function is_hex64(s)
  return type(s) == "string" and #s == 64 and s:find("^%x+$") ~= nil
end

-- Runs tarsum.hash(data, salt) under a pcall with a time bound (a count hook
-- that raises once `seconds` have passed): returns { ok, hex|nil, err } and
-- whether it ran out of time. A hang would otherwise hang the whole run.
local function bounded_hash(data, salt, seconds)
  local deadline = core.monotime() + (seconds or 5)
  local out_of_time = false
  debug.sethook(function()
    if core.monotime() > deadline then
      out_of_time = true
      error("tarsum.hash did not return in time", 0)
    end
  end, "", 10000)
  local r = C.pack(pcall(tarsum.hash, data, salt))
  debug.sethook()
  return r, out_of_time
end

-- The answer to hostile input: nil and a message, or a hash; never a raise.
local function assert_answer(data, what)
  local r, out_of_time = bounded_hash(data)
  assert(not out_of_time, what .. ": tarsum.hash did not return (a loop that does not end)")
  assert(r[1], what .. ": tarsum.hash raised: " .. tostring(r[2]))
  if r[2] == nil then
    assert(type(r[3]) == "string" and #r[3] > 0, what .. ": nil without a message")
  else
    assert(is_hex64(r[2]), what .. ": not a hash: " .. tostring(r[2]))
  end
  return r[2], r[3]
end

-- A small archive of every kind of entry, made with lockup.core's writer.
local function sample(mtime, order)
  local entries = {
    function(t) t:dir("tmp", 1023, mtime) end,
    function(t) t:dir("tmp/sub", 493, mtime) end,
    function(t) t:file("tmp/sub/a.txt", 420, "alpha\n", mtime) end,
    function(t) t:file("tmp/empty", 420, "", mtime) end,
    function(t) t:file("tmp/secret", 384, "s3cr3t", mtime) end,
    function(t) t:file("tmp/with space", 420, "spaced", mtime) end,
    function(t) t:symlink("tmp/link", "sub/a.txt", mtime) end,
  }
  return archive(function(t)
    for _, i in ipairs(order or { 1, 2, 3, 4, 5, 6, 7 }) do entries[i](t) end
  end)
end

describe("lockup.tarsum.hash", function()
  it("is 64 hex digits, and the same for the same bytes", function()
    local a = sample(1000)
    local h = hash(a)
    assert.is_true(is_hex64(h))
    assert.equal(h, hash(a))
    assert.equal(h, hash(a, "")) -- no salt is the empty one
  end)

  it("does not depend on times", function()
    assert.equal(hash(sample(1000)), hash(sample(1700000000)))
    assert.equal(hash(sample(0)), hash(sample(2000000000)))
  end)

  it("does not depend on owners (uid, gid, user and group names)", function()
    local a = entry({ name = "f", uid = 0, gid = 0, uname = "root", gname = "root" }, "x") .. END
    local b = entry({ name = "f", uid = 65534, gid = 65534, uname = "nobody", gname = "nogroup" }, "x") .. END
    assert.equal(hash(a), hash(b))
  end)

  it("does not depend on the order of the entries", function()
    local h = hash(sample(1))
    assert.equal(h, hash(sample(1, { 7, 6, 5, 4, 3, 2, 1 })))
    assert.equal(h, hash(sample(1, { 3, 1, 7, 2, 5, 4, 6 })))
  end)

  it("changes with a byte of a file's contents", function()
    local a = archive(function(t) t:file("f", 420, "hello world") end)
    local b = archive(function(t) t:file("f", 420, "hello World") end)
    local c = archive(function(t) t:file("f", 420, "hello world\0") end)
    assert.are_not.equal(hash(a), hash(b))
    assert.are_not.equal(hash(a), hash(c))
  end)

  it("changes with a name", function()
    local a = archive(function(t) t:file("tmp/f", 420, "x") end)
    local b = archive(function(t) t:file("tmp/g", 420, "x") end)
    local c = archive(function(t) t:file("work/f", 420, "x") end)
    assert.are_not.equal(hash(a), hash(b))
    assert.are_not.equal(hash(a), hash(c))
  end)

  it("changes with the permission bits, setuid and sticky ones too", function()
    local hashes = {}
    for _, mode in ipairs { 420, 384, 493, 2468, 1517 } do -- 0644 0600 0755 04644 02755
      local h = hash(archive(function(t) t:file("f", mode, "x") end))
      assert.is_nil(hashes[h], "mode " .. mode .. " hashes as another")
      hashes[h] = true
    end
    assert.are_not.equal(hash(archive(function(t) t:dir("d", 493) end)),
      hash(archive(function(t) t:dir("d", 448) end)))
  end)

  it("changes with a symlink's target", function()
    local a = archive(function(t) t:symlink("l", "a.txt") end)
    local b = archive(function(t) t:symlink("l", "b.txt") end)
    assert.are_not.equal(hash(a), hash(b))
  end)

  it("changes with an entry's type: a file, a directory and a symlink of one name", function()
    local f = hash(archive(function(t) t:file("x", 493, "") end))
    local d = hash(archive(function(t) t:dir("x", 493) end))
    local l = hash(archive(function(t) t:symlink("x", "") end))
    assert.are_not.equal(f, d)
    assert.are_not.equal(f, l)
    assert.are_not.equal(d, l)
  end)

  it("changes with an entry more or less", function()
    local a = archive(function(t) t:file("a", 420, "") end)
    local b = archive(function(t)
      t:file("a", 420, "")
      t:file("b", 420, "")
    end)
    assert.are_not.equal(hash(a), hash(b))
    assert.are_not.equal(hash(a), hash(archive(function() end)))
  end)

  it("keeps the bytes of files apart: where one file ends and the next begins", function()
    local a = archive(function(t)
      t:file("a", 420, "xy")
      t:file("b", 420, "z")
    end)
    local b = archive(function(t)
      t:file("a", 420, "x")
      t:file("b", 420, "yz")
    end)
    assert.are_not.equal(hash(a), hash(b))
  end)

  it("changes with the salt", function()
    local a = sample(1)
    assert.are_not.equal(hash(a), hash(a, "lockup-commit 1\nsha256:0\n"))
    assert.are_not.equal(hash(a, "one"), hash(a, "two"))
    assert.equal(hash(a, "one"), hash(a, "one"))
  end)

  it("of an empty archive, and of no bytes at all, is the hash of nothing", function()
    local empty = hash(archive(function() end))
    assert.equal(empty, hash(""))
    assert.equal(empty, hash(END))
    assert.equal(core.sha256():hex(), empty)
  end)
end)

describe("lockup.tarsum: the archive's own layout does not count", function()
  local LONG = ("d"):rep(120) .. "/" .. ("f"):rep(60) -- 181 bytes: over ustar's 100
  local VERY_LONG = ("v"):rep(150) .. "/" .. ("w"):rep(150) -- no ustar split holds it

  it("a GNU long name ('L') hashes as the plain long name", function()
    for _, name in ipairs { LONG, VERY_LONG } do
      local plain = archive(function(t) t:file(name, 420, "long\n") end)
      local gnu = gnu_long("L", name) .. entry({ name = name:sub(1, 100), gnu = true }, "long\n") .. END
      assert.equal(hash(plain), hash(gnu))
      local list = assert(tarsum.entries(gnu))
      assert.equal(1, #list)
      assert.equal(name, list[1].name)
      assert.equal("long\n", list[1].data)
    end
  end)

  it("a ustar prefix hashes as the plain long name", function()
    local plain = archive(function(t) t:file(LONG, 420, "long\n") end)
    local split = entry({ prefix = ("d"):rep(120), name = ("f"):rep(60) }, "long\n") .. END
    assert.equal(hash(plain), hash(split))
  end)

  it("a pax path record hashes as the plain long name; other pax records and global ones do not count", function()
    local plain = archive(function(t) t:file(VERY_LONG, 420, "long\n") end)
    local records = pax_record("mtime", "1700000000.5") .. pax_record("path", VERY_LONG)
      .. pax_record("uid", "123456789") .. pax_record("uname", "someone")
    local pax = entry({ name = "PaxHeaders/x", type = "g" }, pax_record("comment", "global"))
      .. entry({ name = "PaxHeaders/x", type = "x" }, records)
      .. entry({ name = "truncated" }, "long\n") .. END
    assert.equal(hash(plain), hash(pax))
  end)

  it("a long symlink target, as GNU 'K' or pax linkpath, hashes as the plain one", function()
    local target = ("t"):rep(150)
    local plain = archive(function(t) t:symlink("l", target) end)
    local gnu = gnu_long("K", target) .. entry({ name = "l", type = "2", mode = 511, link = target:sub(1, 100),
      gnu = true }) .. END
    local pax = entry({ name = "x", type = "x" }, pax_record("linkpath", target))
      .. entry({ name = "l", type = "2", mode = 511 }) .. END
    assert.equal(hash(plain), hash(gnu))
    assert.equal(hash(plain), hash(pax))
  end)

  it("'./' in front of a name and '/' after a directory's do not count", function()
    local plain = archive(function(t)
      t:dir("d", 493)
      t:file("d/f", 420, "x")
    end)
    local dotted = entry({ name = "./d/", type = "5", mode = 493 }) .. entry({ name = "./d/f" }, "x") .. END
    assert.equal(hash(plain), hash(dotted))
  end)

  it("an old tar's NUL type is a regular file, and its numbers may be space-padded", function()
    local plain = archive(function(t) t:file("f", 420, "hello") end)
    local old = entry({ name = "f", type = "\0", mode_field = "   644 \0", size_field = "          5 " }, "hello")
      .. END
    assert.equal(hash(plain), hash(old))
  end)

  it("a size in GNU's base-256 counts as the same size in octal", function()
    local plain = archive(function(t) t:file("f", 420, "hello") end)
    local b256 = entry({ name = "f", size_field = "\128" .. ("\0"):rep(10) .. "\5" }, "hello") .. END
    assert.equal(hash(plain), hash(b256))
  end)

  it("the blocks after the end of the archive do not count", function()
    local a = sample(1)
    assert.equal(hash(a), hash(a .. ("\0"):rep(4096)))
    assert.equal(hash(a), hash(a .. entry({ name = "after-the-end" }, "x")))
  end)

  it("entries lists each entry with its name, type, permission bits, link and data", function()
    local list = assert(tarsum.entries(sample(5)))
    local by = {}
    for _, e in ipairs(list) do by[e.name] = e end
    assert.equal(7, #list)
    assert.same({ name = "tmp/sub/a.txt", type = "0", mode = 420, link = "", data = "alpha\n" }, by["tmp/sub/a.txt"])
    assert.same({ name = "tmp/link", type = "2", mode = 511, link = "sub/a.txt", data = "" }, by["tmp/link"])
    assert.equal("5", by["tmp/sub"].type)
    assert.equal(1023, by["tmp"].mode)
    assert.equal(384, by["tmp/secret"].mode)
    assert.equal("", by["tmp/empty"].data)
    assert.equal("spaced", by["tmp/with space"].data)
  end)
end)

describe("lockup.tarsum on hostile archives", function()
  local valid = archive(function(t) t:file("f", 420, ("x"):rep(1000)) end)

  it("a header cut short: the entries before it, or nil, err", function()
    local two = archive(function(t)
      t:file("a", 420, "A")
      t:file("b", 420, "B")
    end)
    for _, cut in ipairs { 1, 100, 511, 1024 + 1, 1024 + 300, 1024 + 511 } do
      assert_answer(two:sub(1, cut), "cut at " .. cut)
    end
    -- cut inside the second header: what is left is the first entry
    local first = archive(function(t) t:file("a", 420, "A") end)
    local h = assert_answer(two:sub(1, 1024 + 300), "cut inside the second header")
    if h then assert.equal(hash(first), h) end
  end)

  it("an entry's data cut short: nil, err", function()
    local h, err = assert_answer(valid:sub(1, BLOCK + 999), "cut inside the data")
    assert.is_nil(h)
    assert.matches("ends inside an entry", err, 1, true)
  end)

  it("a size that is not octal: nil, err", function()
    for _, field in ipairs { "0000000001x\0", "00000009999\0", "-0000000001\0", "1 2        \0", "0x000000010\0" } do
      local h, err = assert_answer(entry({ name = "f", size_field = field }, "") .. END, "size " .. field)
      assert.is_nil(h)
      assert.matches("malformed tar header", err, 1, true)
    end
  end)

  it("a mode that is not octal: nil, err", function()
    local h, err = assert_answer(entry({ name = "f", mode_field = "0000x44\0" }, "") .. END, "mode")
    assert.is_nil(h)
    assert.matches("malformed tar header", err, 1, true)
  end)

  it("a size past the end of the archive: nil, err", function()
    for _, size in ipairs { 1024 + 1, 4096, 8 ^ 11 - 1 } do -- past the two end blocks too
      local h, err = assert_answer(entry({ name = "f", size = size }, "") .. END, "size " .. size)
      assert.is_nil(h)
      assert.matches("ends inside an entry", err, 1, true)
    end
    local big = entry({ name = "f", size_field = "\128" .. ("\0"):rep(4) .. "\32" .. ("\0"):rep(6) }, "") .. END
    local h = assert_answer(big, "a base-256 size of 2^50")
    assert.is_nil(h)
  end)

  -- A base-256 field summed in Lua 5.4's integers would wrap past 2^63
  -- before a 2^53 check: a size read as -512 sent the reader back where it
  -- had been, an endless loop on an archive out of a box. Every one of these
  -- is over 2^53 and refused, on both Luas.
  it("a base-256 size of 2^63 or more (negative in two's complement, or wrapping): nil, err, and it ends",
    function()
      local function hex(s)
        return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
      end
      for _, tail in ipairs { "\255\255\255\255\255\255\254\0", "\255\255\255\255\255\255\252\0",
        "\128\0\0\0\0\0\0\0", "\255\255\255\255\255\255\255\255", "\0\0\0\0\0\0\0\1" } do
        for _, top in ipairs { "\128\0\0\0", "\128\1\2\3", "\128\255\255\0" } do
          local data = entry({ name = "a", size_field = top .. tail }, "") .. entry({ name = "b" }, "b") .. END
          if top .. tail ~= "\128\0\0\0\0\0\0\0\0\0\0\1" then -- that one is 1: a size
            local h, err = assert_answer(data, "base-256 size " .. hex(top .. tail))
            assert.is_nil(h, "base-256 size " .. hex(top .. tail) .. " taken as a size")
            assert.is_string(err)
          end
        end
      end
    end)

  it("random bytes: nil, err or a hash", function()
    math.randomseed(20261207)
    for n = 1, 300 do
      local len = math.random(0, 4 * BLOCK)
      local bytes = {}
      for i = 1, len do bytes[i] = string.char(math.random(0, 255)) end
      assert_answer(table.concat(bytes), "random bytes #" .. n)
    end
  end)

  it("pax records with a bad length: nil, err", function()
    for _, body in ipairs {
      "999 path=x\n",                 -- past the end of the records
      "0 path=x\n",                   -- zero
      "path=x\n",                     -- no length
      "x5 path=x\n",                  -- not a number
      "12path=abcd\n",                -- no space after the length
      pax_record("path", "ok") .. "3", -- a trailing length without a record
      "-5 path=x\n",
      ("9"):rep(40) .. " path=x\n",    -- a length no number holds exactly
    } do
      local data = entry({ name = "pax", type = "x" }, body) .. entry({ name = "f" }, "x") .. END
      local h, err = assert_answer(data, "pax " .. body)
      assert.is_nil(h)
      assert.matches("malformed pax record", err, 1, true)
    end
    -- short records that are records still: they name nothing
    local short = entry({ name = "pax", type = "x" }, "1 " .. "2 " .. pax_record("comment", "")) .. entry({ name = "f" }, "x")
      .. END
    assert_answer(short, "short pax records")
  end)

  it("a GNU long name with no entry after it, or a long name of NUL bytes: nil, err or a hash", function()
    assert_answer(gnu_long("L", ("n"):rep(300)) .. END, "a long name and then the end")
    assert_answer(gnu_long("L", ("n"):rep(300)), "a long name and no end blocks")
    assert_answer(gnu_long("L", "") .. entry({ name = "f" }, "x") .. END, "an empty long name")
    assert_answer(gnu_long("K", ("\0"):rep(10)) .. entry({ name = "l", type = "2" }) .. END, "a long link of NULs")
  end)

  it("a GNU long name then a file: the file under the long name", function()
    local name = ("n"):rep(200) .. "/file"
    local h = assert_answer(gnu_long("L", name) .. entry({ name = "short" }, "data") .. END, "long name")
    assert.equal(hash(archive(function(t) t:file(name, 420, "data") end)), h)
  end)

  it("a few thousand random mutations of a valid archive never raise nor hang", function()
    local base = sample(1234) -- dirs, files, a symlink
    base = base:sub(1, #base - #END) .. gnu_long("L", ("g"):rep(130)) .. entry({ name = "g", gnu = true }, "gnu")
      .. entry({ name = "x", type = "x" }, pax_record("path", ("p"):rep(200))) .. entry({ name = "p" }, "pax")
      .. gnu_long("K", ("k"):rep(120)) .. entry({ name = "k", type = "2" }) .. END
    assert.is_true(is_hex64(hash(base)))
    local special = { 0, 32, 48, 55, 56, 120, 128, 255, 10, 61 } -- NUL, space, '0', '7', '8', 'x', 0x80, 0xff, \n, '='
    math.randomseed(4242)
    local answers = { hash = 0, err = 0 }
    for n = 1, 3000 do
      local data = base
      for _ = 1, math.random(1, 4) do
        if #data == 0 then break end
        local how = math.random(1, 6)
        local at = math.random(1, #data)
        if how <= 2 then -- one byte, random or special
          local b = how == 1 and math.random(0, 255) or special[math.random(1, #special)]
          data = data:sub(1, at - 1) .. string.char(b) .. data:sub(at + 1)
        elseif how == 3 then -- a header field of digits, at a block's start
          local blk = math.floor((at - 1) / BLOCK) * BLOCK
          local field = ({ { 101, 8 }, { 125, 12 } })[math.random(1, 2)]
          local digits = string.format("%0" .. (field[2] - 1) .. "o", math.random(0, 2 ^ 31 - 1)):sub(-(field[2] - 1))
          data = data:sub(1, blk + field[1] - 1) .. digits .. "\0" .. data:sub(blk + field[1] + field[2])
        elseif how == 4 then -- cut
          data = data:sub(1, at)
        elseif how == 5 then -- a block dropped
          local blk = math.floor((at - 1) / BLOCK) * BLOCK
          data = data:sub(1, blk) .. data:sub(blk + BLOCK + 1)
        else -- a block repeated
          local blk = math.floor((at - 1) / BLOCK) * BLOCK
          data = data:sub(1, blk + BLOCK) .. data:sub(blk + 1)
        end
      end
      local h = assert_answer(data, "mutation #" .. n)
      if h then answers.hash = answers.hash + 1 else answers.err = answers.err + 1 end
    end
    -- the mutations reach both answers (a fuzz loop that only ever saw one would test little)
    assert.is_true(answers.hash > 100, "hashes: " .. answers.hash)
    assert.is_true(answers.err > 100, "errors: " .. answers.err)
  end)
end)
