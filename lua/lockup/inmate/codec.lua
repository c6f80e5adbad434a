-- The inmate protocol's value codec and frame helper (docs/inmate-protocol.md).
--
-- No lockup.core: the same file runs on the host and inside the jail under a
-- bare lua5.4. Exact and binary safe: integers stay integers, floats keep their
-- bits (NaN, inf, -0.0), strings are raw bytes.
--
-- On Lua 5.3+ it packs numbers with string.pack. On LuaJIT (a host only) it
-- takes lockup.compat's pure-Lua packing, which gives the same bytes; numbers
-- there have no integer subtype, so an integral number in the int64 range
-- (not -0.0) is sent as an integer, and an integer received beyond 2^53 is
-- rounded to the nearest double.
--
-- Encoding refuses what cannot cross (functions, userdata, threads, cycles) with
-- a message that says what and where; that is a programmer error, so it throws.
-- Decoding reads what a jail sent, i.e. anything: it returns nil, "malformed ..."
-- and never throws, never loops, and rejects a claimed count or length the
-- remaining bytes cannot hold before doing any work for it.
local type, error, next, tostring = type, error, next, tostring
local string_byte, string_format, math_huge = string.byte, string.format, math.huge
local table_concat = table.concat

-- Big-endian numbers, and what counts as an integer.
local u32, i64, f64, read_u32, read_i64, read_f64, is_integer
if string.pack then
  local string_pack, string_unpack, math_type = string.pack, string.unpack, math.type
  function u32(n) return string_pack(">I4", n) end
  function i64(n) return string_pack(">i8", n) end
  function f64(x) return string_pack(">d", x) end
  function read_u32(s, i) return string_unpack(">I4", s, i) end
  function read_i64(s, i) return string_unpack(">i8", s, i) end
  function read_f64(s, i) return string_unpack(">d", s, i) end
  function is_integer(v) return math_type(v) == "integer" end
else
  local compat = require "lockup.compat"
  u32, i64, f64, is_integer = compat.u32, compat.i64, compat.f64, compat.is_integer
  read_u32, read_i64, read_f64 = compat.read_u32, compat.read_i64, compat.read_f64
end

local _M = {}

-- One byte per value; ASCII, so a hex dump of a frame reads.
local NIL, FALSE, TRUE, INT, FLOAT, STR, TABLE = "N", "F", "T", "I", "D", "S", "M"
local B_NIL, B_FALSE, B_TRUE = string_byte(NIL), string_byte(FALSE), string_byte(TRUE)
local B_INT, B_FLOAT, B_STR, B_TABLE = string_byte(INT), string_byte(FLOAT), string_byte(STR), string_byte(TABLE)

-- Tables nested deeper than this are refused both ways: bounded recursion on
-- either side, whoever built the data.
_M.MAX_DEPTH = 100
local MAX_U32 = 0xffffffff

--- encoding ------------------------------------------------------------------

-- The path to the value being encoded, as "args[2].cb": built only for an error
-- message, from the root's name and the stack of keys walked so far. keys[d] is
-- the key that led to depth d, so depth also counts the tables entered.
local function where(root, keys, depth)
  local out = { root }
  -- A path down a deep structure is cut in its middle: the ends say where.
  local skip_from, skip_to = depth > 12 and 6 or depth + 1, depth - 5
  for i = 1, depth do
    if i == skip_from then out[#out + 1] = string_format("<%d more>", skip_to - skip_from + 1) end
    if i >= skip_from and i <= skip_to then goto continue end
    local k = keys[i]
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
      out[#out + 1] = "." .. k
    elseif type(k) == "string" then
      out[#out + 1] = "[" .. string_format("%q", #k > 40 and k:sub(1, 40) .. "..." or k):gsub("\\\n", "\\n") .. "]"
    else
      out[#out + 1] = "[" .. tostring(k) .. "]"
    end
    ::continue::
  end
  return table_concat(out)
end

local encode

local function refuse(st, depth, what)
  error(string_format("cannot send %s (at %s)", what, where(st.root, st.keys, depth)), 0)
end

local function encode_table(st, t, depth)
  if st.open[t] then refuse(st, depth, "a table that contains itself") end
  if depth >= _M.MAX_DEPTH then refuse(st, depth, "tables nested deeper than " .. _M.MAX_DEPTH) end
  st.open[t] = true
  local out = st.out
  local at = #out + 1
  out[at] = false -- the count, once known
  local count = 0
  -- next, not pairs: metatables (and __pairs) do not cross, only the raw contents.
  for k, v in next, t do
    local kt = type(k)
    st.keys[depth + 1] = k
    -- (A Lua table cannot hold a NaN key, so every number key can cross.)
    if kt ~= "number" and kt ~= "string" and kt ~= "boolean" then
      refuse(st, depth, "a " .. kt .. " as a table key")
    end
    encode(st, k, depth + 1)
    encode(st, v, depth + 1)
    count = count + 1
  end
  st.keys[depth + 1] = nil
  if count > MAX_U32 then refuse(st, depth, "a table of more than 2^32 - 1 pairs") end
  out[at] = TABLE .. u32(count)
  st.open[t] = nil
end

function encode(st, v, depth)
  local out = st.out
  local t = type(v)
  if t == "nil" then
    out[#out + 1] = NIL
  elseif t == "boolean" then
    out[#out + 1] = v and TRUE or FALSE
  elseif t == "number" then
    if is_integer(v) then
      out[#out + 1] = INT .. i64(v)
    else
      out[#out + 1] = FLOAT .. f64(v)
    end
  elseif t == "string" then
    if #v > MAX_U32 then refuse(st, depth, "a string of 4 GiB or more") end
    out[#out + 1] = STR .. u32(#v) .. v
  elseif t == "table" then
    encode_table(st, v, depth)
  else
    refuse(st, depth, "a " .. t)
  end
end

local function state(root)
  return { root = root, keys = {}, open = {}, out = {} }
end

-- encode_value(v) -> bytes; throws "cannot send ... (at value...)".
function _M.encode_value(v)
  local st = state("value")
  encode(st, v, 0)
  return table_concat(st.out)
end

-- encode_list(t [, name]) -> bytes: t[1] .. t[t.n] as a values list (t.n
-- defaults to #t); `name` ("values") heads the path in error messages, e.g.
-- encode_list(args, "args") -> "cannot send a function (at args[2].cb)".
function _M.encode_list(t, name)
  local n = t.n or #t
  if not is_integer(n) or n < 0 or n > MAX_U32 then
    error("the count of values (n) must be an integer from 0 to 2^32 - 1", 2)
  end
  name = name or "values"
  local st = state(name)
  st.out[1] = u32(n)
  for i = 1, n do
    -- Each list item is a root of its own, so that nesting is counted the same
    -- way as for encode_value (and as the decoder counts it).
    st.root = name .. "[" .. i .. "]"
    encode(st, t[i], 0)
  end
  return table_concat(st.out)
end

-- encode_values(n, ...) -> bytes: the first n arguments, nils included.
function _M.encode_values(n, ...)
  return _M.encode_list({ n = n, ... })
end

--- decoding ------------------------------------------------------------------

-- Each reader takes (s, i, depth, st), i being the position of the value's
-- tag, and returns value, next position; or nil, nil, message for malformed
-- input. st is the decoding's state (see start): the values it may still
-- create, and its slice budget.

local decode

local function malformed(what, i)
  return nil, nil, string_format("malformed value: %s at byte %d", what, i)
end

-- The payload holds more values than the caller allows (st.max_values).
local function too_many(st, i)
  st.over = true
  return nil, nil, string_format("too many values: more than %.0f in one payload (at byte %d)", st.max_values, i)
end

-- Counts one value against the limit and the slice; at the end of a slice
-- the caller's pause runs (it may yield, or raise to give up).
local function tally(st, i)
  local left = st.left - 1
  if left < 0 then return too_many(st, i) end
  st.left = left
  local budget = st.budget - 1
  if budget <= 0 then
    budget = st.slice
    st.pause()
  end
  st.budget = budget
  return true
end

-- Key tags accepted in a table; nil and tables cannot be keys.
local KEY_TAGS = { [B_FALSE] = true, [B_TRUE] = true, [B_INT] = true, [B_FLOAT] = true, [B_STR] = true }

local function decode_table(s, i, depth, st)
  if depth >= _M.MAX_DEPTH then return malformed("tables nested deeper than " .. _M.MAX_DEPTH, i) end
  local len = #s
  if len - i < 4 then return malformed("truncated table count", i) end
  local count = read_u32(s, i + 1)
  local p = i + 5
  -- Every pair takes at least two bytes, and is two values: a larger count is
  -- a lie or over the limit, refused before any work is done for it.
  if count * 2 > len - p + 1 then
    return malformed(string_format("table count %d larger than the bytes left can hold", count), i)
  end
  if count * 2 > st.left then return too_many(st, i) end
  local t = {}
  for _ = 1, count do
    local kb = string_byte(s, p)
    if not KEY_TAGS[kb] then
      if kb == B_NIL then return malformed("nil table key", p) end
      if kb == B_TABLE then return malformed("table as a table key", p) end
      if kb == nil then return malformed("truncated table", p) end
      return malformed(string_format("unknown tag 0x%02x", kb), p)
    end
    local k, q, err = decode(s, p, depth + 1, st)
    if q == nil then return nil, nil, err end
    if k ~= k then return malformed("NaN table key", p) end
    -- A float key with an integral value lands on the integer key (Lua's rule),
    -- so 1 and 1.0 are one key: caught here as a duplicate.
    if t[k] ~= nil then return malformed("duplicate table key", p) end
    local v, r
    v, r, err = decode(s, q, depth + 1, st)
    if r == nil then return nil, nil, err end
    if v == nil then return malformed("nil table value", q) end
    t[k] = v
    p = r
  end
  return t, p
end

function decode(s, i, depth, st)
  local b = string_byte(s, i)
  local len = #s
  if b == nil then return malformed("truncated (a value expected)", i) end
  local counted, _, err = tally(st, i)
  if not counted then return nil, nil, err end
  if b == B_NIL then return nil, i + 1 end
  if b == B_FALSE then return false, i + 1 end
  if b == B_TRUE then return true, i + 1 end
  if b == B_INT or b == B_FLOAT then
    if len - i < 8 then return malformed("truncated number", i) end
    return (b == B_INT and read_i64 or read_f64)(s, i + 1)
  end
  if b == B_STR then
    if len - i < 4 then return malformed("truncated string length", i) end
    local n = read_u32(s, i + 1)
    if n > len - i - 4 then
      return malformed(string_format("string length %d larger than the bytes left", n), i)
    end
    return s:sub(i + 5, i + 4 + n), i + 5 + n
  end
  if b == B_TABLE then return decode_table(s, i, depth, st) end
  return malformed(string_format("unknown tag 0x%02x", b), i)
end

local function check_string(s, fn)
  if type(s) ~= "string" then error(fn .. ": a string expected, got " .. type(s), 3) end
end

local function no_pause() end

-- The state of one decoding, from the caller's limits (see decode_value).
local function start(limits, fn)
  if limits == nil then return { left = math_huge, budget = math_huge, slice = math_huge, pause = no_pause } end
  if type(limits) ~= "table" then error(fn .. ": limits must be a table", 3) end
  local max, slice, pause = limits.max_values or math_huge, limits.slice or math_huge, limits.pause or no_pause
  if type(max) ~= "number" or max < 0 or type(slice) ~= "number" or slice < 1 or type(pause) ~= "function" then
    error(fn .. ": limits are {max_values = n >= 0, slice = n >= 1, pause = function}", 3)
  end
  return { left = max, max_values = max, budget = limits.budget or slice, slice = slice, pause = pause }
end

-- What a decoding returns on failure: nil, err, and "max_values" when it
-- failed on that limit rather than on malformed bytes. The slice budget left
-- goes back to the caller's limits, so that a stream of small payloads pauses
-- as often as one big one.
local function finish(limits, st, v, err)
  if limits then limits.budget = st.budget end
  if err then return nil, err, st.over and "max_values" or nil end
  return v
end

-- decode_value(bytes [, limits]) -> v | nil, err [, "max_values"]. A decoded
-- nil is (nil, nil): tell it from a failure by the second value.
-- limits (for bytes from a jail; none for trusted bytes):
--   max_values  the most values the payload may create (every value counts:
--               list items, table keys and values, the tables themselves);
--               a payload that claims or holds more fails, before the work
--               for a claimed count is done;
--   slice, pause  pause() is called after each `slice` values decoded, the
--               caller's chance to let other work run or (by raising, which
--               passes through) to give up; `budget`, the values left of the
--               current slice, is kept in limits from one call to the next.
function _M.decode_value(s, limits)
  check_string(s, "decode_value")
  local st = start(limits, "decode_value")
  local v, p, err = decode(s, 1, 0, st)
  if p == nil then return finish(limits, st, nil, err) end
  if p <= #s then
    return finish(limits, st, nil, string_format("malformed value: %d trailing bytes at byte %d", #s - p + 1, p))
  end
  return finish(limits, st, v)
end

-- decode_values(bytes [, limits]) -> {n = count, ...} | nil, err [, "max_values"]
function _M.decode_values(s, limits)
  check_string(s, "decode_values")
  local st = start(limits, "decode_values")
  if #s < 4 then return finish(limits, st, nil, "malformed values list: truncated count at byte 1") end
  local n = read_u32(s, 1)
  -- Every value takes at least one byte.
  if n > #s - 4 then
    return finish(limits, st, nil,
      string_format("malformed values list: count %d larger than the bytes left at byte 1", n))
  end
  if n > st.left then
    local _, _, err = too_many(st, 1)
    return finish(limits, st, nil, err)
  end
  local t, p = { n = n }, 5
  for i = 1, n do
    local v, q, err = decode(s, p, 0, st)
    if q == nil then return finish(limits, st, nil, err) end
    t[i], p = v, q
  end
  if p <= #s then
    return finish(limits, st, nil,
      string_format("malformed values list: %d trailing bytes at byte %d", #s - p + 1, p))
  end
  return finish(limits, st, t)
end

--- frames --------------------------------------------------------------------

_M.PROTOCOL = 1
-- The host parser's default limit (core.frames), and a jail's (max_frame):
-- a few MiB, as what one frame costs the host once decoded is many times that.
_M.MAX_FRAME = 4 * 1024 * 1024

-- Frame types.
_M.CALL, _M.HELLO, _M.YIELD, _M.PAD, _M.RETURN, _M.ERROR = "C", "H", "Y", "P", "R", "E"
local TYPES = { C = true, H = true, Y = true, P = true, R = true, E = true }

-- frame(type, payload) -> header .. payload
function _M.frame(kind, payload)
  if not TYPES[kind] then error("frame: type must be one of C, H, Y, P, R, E", 2) end
  if type(payload) ~= "string" then error("frame: payload must be a string", 2) end
  if #payload > MAX_U32 then error("frame: payload of 4 GiB or more", 2) end
  return kind .. u32(#payload) .. payload
end

-- unframe(bytes) -> type, payload | nil, err: `bytes` must be exactly one
-- whole frame (the runner reads its request this way).
function _M.unframe(s)
  check_string(s, "unframe")
  if #s < 5 then return nil, string_format("malformed frame: %d bytes, shorter than a header", #s) end
  local kind = s:sub(1, 1)
  if not TYPES[kind] then return nil, string_format("malformed frame: unknown type 0x%02x", string_byte(kind)) end
  local n = read_u32(s, 2)
  if n ~= #s - 5 then
    return nil, string_format("malformed frame: payload length %d, but %d bytes follow the header", n, #s - 5)
  end
  return kind, s:sub(6)
end

return _M
