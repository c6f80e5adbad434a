-- What a tar archive holds, as a hash that does not depend on when or by
-- whom it was made: each entry's type, name, permission bits, link target
-- and contents, in name order; times, owners and the archive's own layout
-- (ustar prefix, GNU long names, pax records) left out. box:commit tags an
-- image with it, so that the same preparation gives the same tag.
--
-- The archive comes out of a box: it is untrusted. Plain Lua string
-- handling throughout; anything malformed is nil, err, never a crash.
local core = require "lockup.core"

local tonumber, tostring, ipairs = tonumber, tostring, ipairs
local string_format, table_sort, table_concat = string.format, table.sort, table.concat

local _M = {}

local BLOCK = 512

-- A NUL-terminated field of the header.
local function text(h, at, len)
  return (h:sub(at, at + len - 1):gsub("%z.*$", ""))
end

-- A numeric field: octal digits (space or NUL padded), or GNU's base-256
-- (first byte 0x80) for values octal cannot hold. nil when malformed.
local function number(h, at, len)
  local f = h:sub(at, at + len - 1)
  if f:byte(1) == 0x80 then
    local n = 0.0 -- a float: Lua 5.4's integers would wrap before the check
    for i = 2, len do
      n = n * 256 + f:byte(i)
      if n >= 2 ^ 53 then return nil end
    end
    return n
  end
  local digits = f:match("^ *([0-7]*)[ %z]*$")
  if not digits then return nil end
  if digits == "" then return 0 end
  return tonumber(digits, 8)
end

-- The records of a pax header ("len key=value\n"...) that name things.
local function pax(data, into)
  local at = 1
  while at <= #data do
    local len, body = data:match("^(%d+) ()", at)
    len = tonumber(len)
    if not len or len < 1 or at + len - 1 > #data then return nil, "a malformed pax record" end
    local key, value = data:sub(body, at + len - 2):match("^([^=]+)=(.*)$")
    if key == "path" then into.name = value elseif key == "linkpath" then into.link = value end
    at = at + len
  end
  return true
end

local function clean(name)
  name = name:gsub("^%./", ""):gsub("/+$", "")
  return name
end

-- entries(data) -> list of { name, type, mode, link, data } | nil, err
function _M.entries(data)
  local list, at, pending = {}, 1, {}
  while at + BLOCK - 1 <= #data do
    local h = data:sub(at, at + BLOCK - 1)
    if not h:find("[^%z]") then break end -- the end: a zero block
    local size, mode = number(h, 125, 12), number(h, 101, 8)
    if not size or not mode then return nil, string_format("a malformed tar header at byte %d", at - 1) end
    local kind = h:sub(157, 157)
    local body_at = at + BLOCK
    if body_at + size - 1 > #data then return nil, "the archive ends inside an entry" end
    local body = data:sub(body_at, body_at + size - 1)
    at = body_at + math.ceil(size / BLOCK) * BLOCK
    if kind == "L" then
      pending.name = body:gsub("%z.*$", "")
    elseif kind == "K" then
      pending.link = body:gsub("%z.*$", "")
    elseif kind == "x" then
      local ok, err = pax(body, pending)
      if not ok then return nil, err end
    elseif kind ~= "g" then
      local name = text(h, 1, 100)
      if h:sub(258, 262) == "ustar" then
        local prefix = text(h, 346, 155)
        if prefix ~= "" then name = prefix .. "/" .. name end
      end
      list[#list + 1] = {
        name = clean(pending.name or name), type = kind == "\0" and "0" or kind, mode = mode % 4096,
        link = pending.link or text(h, 158, 100), data = (kind == "0" or kind == "\0") and body or "",
      }
      pending = {}
    end
  end
  return list
end

-- hash(data [, salt]) -> hex | nil, err
function _M.hash(data, salt)
  local list, err = _M.entries(data)
  if not list then return nil, err end
  table_sort(list, function(a, b) return a.name < b.name end)
  local h = core.sha256()
  h:update(salt or "")
  for _, e in ipairs(list) do
    h:update(table_concat({ e.type, e.name, string_format("%o", e.mode), e.link, tostring(#e.data), "" }, "\0"))
    h:update(e.data)
  end
  return h:hex()
end

return _M
