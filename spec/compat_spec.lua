-- The specs' own stand-ins for what LuaJIT lacks (spec/support/compat.lua),
-- checked against Lua 5.4's originals where they exist.
local C = require "support.compat"

describe("support.compat", function()
  local cases = {
    { ">BBBBI4", 1, 0, 0x80, 0xff, 0 }, { ">BBBBI4", 2, 0, 0, 0, 0xffffffff }, { ">I4I4", 0x09000000, 0xffffffff },
    { ">I2", 0xffd8 }, { ">I8", 1024 }, { ">I8", 2 ^ 53 }, { ">s4s1I4", "a.txt", "file", 420 }, { ">s4", "" },
    { ">i8", 0 }, { ">i8", 1 }, { ">i8", -1 }, { ">i8", -2 }, { ">i8", 2 ^ 53 }, { ">i8", -2 ^ 53 }, { ">i4", -7 },
    { ">d", 0 }, { ">d", -0.0 }, { ">d", 1 }, { ">d", -2.25 }, { ">d", 1e308 }, { ">d", 4.9e-324 }, { ">d", 2.2e-308 },
    { ">d", 2 ^ 63 }, { ">d", math.huge }, { ">d", -math.huge }, { ">d", 0.1 },
  }
  -- string.pack exists on 5.4 only: there the stand-in must give its bytes.
  if string.pack then
    for _, case in ipairs(cases) do
      it("bin_pack" .. case[1] .. " gives string.pack's bytes for " .. tostring(case[2]), function()
        local fmt = case[1]
        local args = { C.unpack(case, 2) }
        -- string.pack wants integers for integer formats: 2^53 and -2^53 are floats on 5.4
        if fmt:find("[Ii]") then for i, v in ipairs(args) do if type(v) == "number" then args[i] = C.tointeger(v) end end end
        assert.equal(string.pack(fmt, C.unpack(args)), C.bin_pack(fmt, C.unpack(case, 2)))
      end)
    end
  end

  it("bin_pack gives known bytes (on every Lua)", function()
    assert.equal("\1\0\0\0\0\0\0\5", C.bin_pack(">BBBBI4", 1, 0, 0, 0, 5))
    assert.equal("\xff\xff\xff\xff\xff\xff\xff\xfe", C.bin_pack(">i8", -2))
    assert.equal("\x3f\xf0\0\0\0\0\0\0", C.bin_pack(">d", 1))
    assert.equal("\x80\0\0\0\0\0\0\0", C.bin_pack(">d", -0.0))
    assert.equal("\x7f\xf8\0\0\0\0\0\0", C.bin_pack(">d", 0 / 0))
  end)

  it("bin_unpack reads what bin_pack wrote, then the next position", function()
    local s = C.bin_pack(">s4s1I4", "x/y.sh", "file", 493) .. "rest"
    assert.same({ "x/y.sh", "file", 493, 20 }, { C.bin_unpack(">s4s1I4", s) })
    assert.same({ 0xffd8, 5 }, { C.bin_unpack(">I2", "\0\0\xff\xd8", 3) })
  end)

  it("pack, unpack and tointeger", function()
    assert.same({ n = 3, 1, nil, 3 }, C.pack(1, nil, 3))
    assert.same({ n = 0 }, C.pack())
    assert.same({ "b", "c" }, { C.unpack({ "a", "b", "c" }, 2) })
    assert.equal(12, C.tointeger("12"))
    assert.equal(12, C.tointeger(12.0))
    assert.is_nil(C.tointeger(1.5))
    assert.is_nil(C.tointeger("x"))
    assert.is_nil(C.tointeger(math.huge))
  end)

  it("execute and popen_read report exit codes as Lua 5.4 does", function()
    assert.same({ true, "exit", 0 }, { C.execute("true") })
    assert.same({ nil, "exit", 3 }, { C.execute("exit 3") })
    assert.same({ "out\n", 0 }, { C.popen_read("echo out") })
    assert.same({ "no newline", 7 }, { C.popen_read("printf 'no newline'; exit 7") })
    assert.same({ "", 1 }, { C.popen_read("false") })
  end)
end)
