-- Checking option tables. Programmer errors throw, naming the option: a typo
-- such as `memroy` must never pass silently.
local type, pairs, error, tostring, select = type, pairs, error, tostring, select
local string_format, table_concat, table_sort = string.format, table.concat, table.sort
local math_huge, math_floor = math.huge, math.floor

local _M = {}

-- Raises, at the level of fname's caller, unless every argument after
-- fname is a function: lockup.run, spawn, background and wrap, whichever
-- scheduler backend has them (lockup.scheduler, lockup.ngx).
function _M.check_functions(fname, ...)
  for i = 1, select("#", ...) do
    local t = type((select(i, ...)))
    if t ~= "function" then
      error(string_format("bad argument #%d to '%s' (function expected, got %s)", i, fname, t), 3)
    end
  end
end

function _M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table_sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Checks opts against known = {name = "type"} (or "type|type"); `level` is the error level as
-- seen by the caller of check (as for error()). Returns opts, or {} for nil.
function _M.check(opts, known, fname, level)
  level = level + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string_format("bad argument to '%s' (table of options expected, got %s)", fname, type(opts)), level)
  end
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      error(string_format("unknown option '%s' to '%s' (known: %s)", tostring(k), fname,
        table_concat(_M.sorted_keys(known), ", ")), level)
    end
    if type(v) ~= want and not ("|" .. want .. "|"):find("|" .. type(v) .. "|", 1, true) then
      error(string_format("bad option '%s' to '%s' (%s expected, got %s)", k, fname, want:gsub("|", " or "),
        type(v)), level)
    end
  end
  -- An infinite timeout would let a call never end; max_output 0 (or a
  -- fraction) would reach the core as "no cap".
  if opts.timeout and not (opts.timeout > 0 and opts.timeout < math_huge) then -- luacheck: ignore 581 (NaN too)
    error(string_format("bad option 'timeout' to '%s' (positive, finite number of seconds expected, got %s)",
      fname, tostring(opts.timeout)), level)
  end
  local max = opts.max_output
  if max and not (max >= 1 and max < math_huge and max == math_floor(max)) then -- luacheck: ignore 581
    error(string_format("bad option 'max_output' to '%s' (a whole number of bytes, at least 1, expected, got %s)",
      fname, tostring(max)), level)
  end
  return opts
end

return _M
