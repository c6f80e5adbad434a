-- What one command gave back: code, ok, stdout, stderr, duration, and the
-- flags that say how it ended (timed_out, exited). Readable in the REPL.
local setmetatable, string_format = setmetatable, string.format

local _M = {}

-- No methods: a metatable for the name and tostring only.
local result_mt = { __name = "lockup.result" }

local PREVIEW = 40 -- bytes of each stream shown by tostring

local function preview(s)
  if #s <= PREVIEW then return string_format("%q", s):gsub("\\\n", "\\n") end
  return (string_format("%q", s:sub(1, PREVIEW)):gsub("\\\n", "\\n")) .. string_format("...(%d bytes)", #s)
end

function result_mt.__tostring(r)
  local how = r.timed_out and "timed out" or string_format("code %s", tostring(r.code))
  if r.exited then how = how .. ", shell exited" end
  return string_format("lockup.result (%s, %.3fs) stdout=%s stderr=%s", how, r.duration or 0,
    preview(r.stdout or ""), preview(r.stderr or ""))
end

function _M.new(t)
  t.stdout, t.stderr = t.stdout or "", t.stderr or "" -- a step may end before any output was read
  t.ok = t.code == 0 and not t.timed_out
  return setmetatable(t, result_mt)
end

return _M
