-- What the specs need from Lua 5.4 that LuaJIT 2.1 lacks (or has in another
-- shape), in one place: `local C = require "support.compat"`. The specs run on
-- both interpreters (make test, make test-luajit), so a spec file uses only
-- the syntax and library both have, and everything else through here. No
-- lockup module is loaded, so the parser specs can use it without Docker.
local C = {}

local floor = math.floor

-- The features whose specs run only where they exist (each such spec says why).
C.INTEGERS = math.type ~= nil -- integer subtype: Lua 5.3+, not LuaJIT
C.CLOSE = (load("local x <close> = nil")) ~= nil -- to-be-closed variables: Lua 5.4
C.JIT = rawget(_G, "jit") ~= nil

-- The interpreter a spec's subprocess runs lockup with: the one running the
-- specs, since the core on package.cpath was built for it.
C.LUA = os.getenv("LOCKUP_TEST_LUA") or (C.JIT and "luajit" or "lua5.4")

C.unpack = table.unpack or rawget(_G, "unpack")

-- table.pack
function C.pack(...)
  return { n = select("#", ...), ... }
end

-- math.tointeger, also for numeric strings ("12"): the number when it has an
-- integral value, else nil.
function C.tointeger(x)
  local n = tonumber(x)
  if n == nil or n ~= floor(n) or n == math.huge or n == -math.huge then return nil end
  if math.tointeger then return math.tointeger(n) end
  return n
end

-- os.execute with Lua 5.4's results (true|nil, "exit"|"signal", code) on both:
-- LuaJIT (without its 5.2 compatibility) returns the raw wait status.
function C.execute(cmd)
  local a, b, c = os.execute(cmd)
  if type(a) ~= "number" then return a, b, c end
  if a % 256 == 0 then
    local code = floor(a / 256)
    return code == 0 or nil, "exit", code
  end
  return nil, "signal", a % 128
end

-- Runs a shell command line, reading its stdout: (output, exit code). LuaJIT's
-- io.popen():close() does not report the exit status, so the shell appends it
-- as three digits after the command's output (nil if it never got there).
function C.popen_read(cmd)
  local p = assert(io.popen("(" .. cmd .. "\n); printf '%03d' $?", "r"))
  local out = p:read("*a")
  p:close()
  local code = out:match("(%d%d%d)$")
  if not code then return out, nil end
  return out:sub(1, -4), tonumber(code)
end

-- string.pack / string.unpack for the big-endian formats the specs write by
-- hand: ">" then any of B (one byte), In (n-byte unsigned), in (n-byte two's
-- complement), sn (string after its n-byte length), d (IEEE-754 double; packing
-- only). Integers up to 2^53 in magnitude (a double's integers).
local function items(fmt)
  assert(fmt:sub(1, 1) == ">", "support.compat: big-endian formats only")
  local list = {}
  for kind, width in fmt:sub(2):gmatch("([BIisd])(%d*)") do
    if kind == "B" or kind == "d" then width = kind == "B" and 1 or 8 end
    list[#list + 1] = { kind, assert(tonumber(width), "width missing in " .. fmt) }
  end
  return list
end

local function uint(n, width)
  assert(n >= 0 and n == floor(n) and n < 2 ^ (8 * width) and n <= 2 ^ 53, "support.compat: value out of range")
  local bytes = {}
  for i = width, 1, -1 do
    bytes[i] = string.char(n % 256)
    n = floor(n / 256)
  end
  return table.concat(bytes)
end

local function int(n, width)
  assert(n == floor(n) and math.abs(n) <= 2 ^ 53, "support.compat: value out of range")
  if n >= 0 then return uint(n, width) end
  if width <= 4 then return uint(n + 2 ^ (8 * width), width) end
  -- negative and wide: the halves apart, each exact
  local hi = floor(n / 2 ^ 32)
  return uint(hi + 2 ^ (8 * width - 32), width - 4) .. uint(n - hi * 2 ^ 32, 4)
end

-- x = m * 2^e with 0.5 <= m < 1, for a finite x > 0 (math.frexp, which Lua 5.4
-- has only when built with LUA_COMPAT_MATHLIB). Scaling by a power of two is exact.
local function frexp(x)
  local e = floor(math.log(x, 2)) + 1
  local half = floor(e / 2)
  local m = x / 2 ^ half / 2 ^ (e - half) -- in two steps: 2^1024 is no double
  while m >= 1 do m, e = m / 2, e + 1 end
  while m < 0.5 do m, e = m * 2, e - 1 end
  return m, e
end

local function double(x)
  local sign = (x < 0 or (x == 0 and 1 / x < 0)) and 2 ^ 31 or 0
  x = math.abs(x)
  local hi, lo -- the top 32 bits (sign, exponent, 20 bits of fraction), the low 32
  if x ~= x then
    hi, lo = 0x7ff80000, 0
  elseif x == math.huge then
    hi, lo = 0x7ff00000, 0
  elseif x == 0 then
    hi, lo = 0, 0
  else
    local m, e = frexp(x)
    local biased, fraction
    if e > -1022 then
      biased, fraction = e + 1022, (m * 2 - 1) * 2 ^ 52
    else
      biased, fraction = 0, x * 2 ^ 537 * 2 ^ 537 -- x / 2^-1074, exactly
    end
    hi, lo = biased * 2 ^ 20 + floor(fraction / 2 ^ 32), fraction % 2 ^ 32
  end
  return uint(sign + hi, 4) .. uint(lo, 4)
end

function C.bin_pack(fmt, ...)
  local out = {}
  for i, item in ipairs(items(fmt)) do
    local v = select(i, ...)
    if item[1] == "s" then
      out[i] = uint(#v, item[2]) .. v
    elseif item[1] == "i" then
      out[i] = int(v, item[2])
    elseif item[1] == "d" then
      out[i] = double(v)
    else
      out[i] = uint(v, item[2])
    end
  end
  return table.concat(out)
end

-- The values, then the position after the last byte read.
function C.bin_unpack(fmt, s, pos)
  pos = pos or 1
  local values = {}
  local function read_uint(width)
    assert(pos + width - 1 <= #s, "support.compat: data string too short")
    local n = 0
    for i = pos, pos + width - 1 do n = n * 256 + s:byte(i) end
    pos = pos + width
    return n
  end
  for _, item in ipairs(items(fmt)) do
    assert(item[1] ~= "i" and item[1] ~= "d", "support.compat: unpacks only B, In and sn")
    local v = read_uint(item[2])
    if item[1] == "s" then
      assert(pos + v - 1 <= #s, "support.compat: data string too short")
      v, pos = s:sub(pos, pos + v - 1), pos + v
    end
    values[#values + 1] = v
  end
  values[#values + 1] = pos
  return C.unpack(values, 1, #values)
end

return C
