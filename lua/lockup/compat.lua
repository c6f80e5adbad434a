-- The few things Lua 5.4 and LuaJIT 2.1 (OpenResty's, Debian's luajit2) spell
-- differently. The rest of lua/ is written in their common dialect and asks this
-- module for these; it is the one file that may name a 5.3+ function.
--
-- Numbers: LuaJIT has no integer subtype. There, an "integer" is a number with
-- an integral value in the int64 range, except -0.0 (a float in both worlds,
-- so that its sign survives). Integers above 2^53 exist only on 5.4: LuaJIT
-- rounds them to the nearest double.
--
-- Big-endian byte strings: string.pack where the Lua has it (5.3+), else a
-- pure-Lua path that gives the same bytes. Both are here as `native` and
-- `portable`, so a spec on 5.4 can check one against the other.
local select, type, error, pairs = select, type, error, pairs
local string_format = string.format
local math_floor, math_huge = math.floor, math.huge
-- Lua 5.1's and LuaJIT's, where the portable path runs (5.4 has them only when
-- built with LUA_COMPAT_MATHLIB, as Debian's is).
local math_frexp, math_ldexp = math.frexp, math.ldexp -- luacheck: ignore 143
local string_char, string_byte, string_pack, string_unpack = string.char, string.byte, string.pack, string.unpack

local _M = {}

-- pack(...) -> { n = count, ... }, as table.pack.
function _M.pack(...)
  return { n = select("#", ...), ... }
end

_M.unpack = table.unpack or unpack -- luacheck: ignore (unpack is LuaJIT's global)

local TWO63 = 2 ^ 63

-- Does the number look like an integer on LuaJIT (see the top of this file)?
local function integral(x)
  return x == math_floor(x) and x >= -TWO63 and x < TWO63 and (x ~= 0 or 1 / x > 0)
end

-- is_integer(x) -> boolean: math.type(x) == "integer" on 5.4.
-- tointeger(x) -> x as an integer | nil: math.tointeger on 5.4.
if math.type then
  local math_type = math.type
  function _M.is_integer(x) return math_type(x) == "integer" end
  _M.tointeger = math.tointeger
else
  function _M.is_integer(x) return type(x) == "number" and integral(x) end
  function _M.tointeger(x)
    -- As on 5.4, -0.0 converts to 0 (adding 0.0 drops the sign).
    if type(x) == "number" and x == math_floor(x) and x >= -TWO63 and x < TWO63 then return x + 0.0 end
    return nil
  end
end

-- The largest count of bytes lockup passes to C as "no limit": math.maxinteger
-- on 5.4; on LuaJIT 2^53, as a double of 2^63 does not fit lua_Integer.
_M.maxinteger = math.maxinteger or 2 ^ 53

-- close_coroutine(co) -> true | false, err: coroutine.close on 5.4, which runs
-- a dead or suspended coroutine's pending `<close>` handlers. LuaJIT has no
-- `<close>`, so nothing is pending there: dropping the coroutine is enough.
_M.close_coroutine = coroutine.close or function() return true end

--- big-endian numbers ----------------------------------------------------------

local portable, native = {}, {}
_M.portable, _M.native = portable, native

-- n's `size` bytes, most significant first; 0 <= n < 256^size, n integral.
local function bytes_of(n, size)
  local out = {}
  for i = size, 1, -1 do
    local low = n % 256
    out[i] = low
    n = (n - low) / 256
  end
  return string_char(_M.unpack(out, 1, size))
end

-- The number that s[i .. i + size - 1] spells, unsigned.
local function number_of(s, i, size)
  local n = 0
  for j = i, i + size - 1 do n = n * 256 + string_byte(s, j) end
  return n
end

local function check_unsigned(n, bits, what)
  if type(n) ~= "number" or n ~= math_floor(n) or n < 0 or n >= 2 ^ bits then
    error(string_format("%s: an integer from 0 to 2^%d - 1 expected", what, bits), 3)
  end
end

function portable.u8(n) check_unsigned(n, 8, "u8") return string_char(n) end
function portable.u32(n) check_unsigned(n, 32, "u32") return bytes_of(n, 4) end
function portable.u64(n) check_unsigned(n, 64, "u64") return bytes_of(n, 8) end

-- Two's complement, from the halves: each step is exact for any integral
-- double (the low half is n mod 2^32, which a double can hold).
function portable.i64(n)
  if type(n) ~= "number" or n ~= math_floor(n) or n < -TWO63 or n >= TWO63 then
    error("i64: an integer in the int64 range expected", 2)
  end
  local hi = math_floor(n / 2 ^ 32)
  local lo = n - hi * 2 ^ 32
  if hi < 0 then hi = hi + 2 ^ 32 end
  return bytes_of(hi, 4) .. bytes_of(lo, 4)
end

-- IEEE-754 binary64: sign, 11 bits of biased exponent, 52 of fraction, built
-- as two 32-bit halves (the whole 64 bits would not fit a double's 53).
local function f64_of(negative, exponent, fraction)
  local hi = (negative and 2 ^ 31 or 0) + exponent * 2 ^ 20 + math_floor(fraction / 2 ^ 32)
  return bytes_of(hi, 4) .. bytes_of(fraction % 2 ^ 32, 4)
end

function portable.f64(x)
  if type(x) ~= "number" then error("f64: a number expected", 2) end
  if x ~= x then return f64_of(false, 0x7ff, 2 ^ 51) end -- one quiet NaN: a payload does not cross
  local negative = x < 0 or (x == 0 and 1 / x < 0)
  if negative then x = -x end
  if x == math_huge then return f64_of(negative, 0x7ff, 0) end
  if x == 0 then return f64_of(negative, 0, 0) end
  local m, e = math_frexp(x) -- x = m * 2^e, 0.5 <= m < 1, so x = 1.f * 2^(e - 1)
  if e > -1022 then return f64_of(negative, e + 1022, (m * 2 - 1) * 2 ^ 52) end -- normal
  return f64_of(negative, 0, math_ldexp(x, 1074)) -- subnormal: x in units of 2^-1074
end

-- read_*(s, i) -> value, the position after it. The caller has checked that
-- the bytes are there.
function portable.read_u32(s, i) return number_of(s, i, 4), i + 4 end

function portable.read_i64(s, i)
  local hi, lo = number_of(s, i, 4), number_of(s, i + 4, 4)
  if hi >= 2 ^ 31 then hi = hi - 2 ^ 32 end
  return hi * 2 ^ 32 + lo, i + 8 -- rounded to the nearest double beyond 2^53
end

function portable.read_f64(s, i)
  local hi, lo = number_of(s, i, 4), number_of(s, i + 4, 4)
  local sign = hi >= 2 ^ 31 and -1 or 1
  local e = math_floor(hi / 2 ^ 20) % 2 ^ 11
  local f = (hi % 2 ^ 20) * 2 ^ 32 + lo
  if e == 0x7ff then
    if f ~= 0 then return 0 / 0, i + 8 end
    return sign * math_huge, i + 8
  end
  if e == 0 then return sign * math_ldexp(f, -1074), i + 8 end
  return sign * math_ldexp(f + 2 ^ 52, e - 1075), i + 8
end

if string_pack then
  function native.u8(n) return string_pack("B", n) end
  function native.u32(n) return string_pack(">I4", n) end
  function native.u64(n) return string_pack(">I8", n) end
  function native.i64(n) return string_pack(">i8", n) end
  function native.f64(x) return string_pack(">d", x) end
  function native.read_u32(s, i) return string_unpack(">I4", s, i) end
  function native.read_i64(s, i) return string_unpack(">i8", s, i) end
  function native.read_f64(s, i) return string_unpack(">d", s, i) end
end

-- The ones lockup uses: string.pack's where there is one.
for name, fn in pairs(portable) do _M[name] = native[name] or fn end

return _M
