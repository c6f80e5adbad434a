-- What one command gave back: code, ok, stdout, stderr, duration, the flags
-- that say how it ended (timed_out, cpu_limited, truncated, oom, exited,
-- box_stopped), `status`, which says it in one word, and what it cost
-- (cpu_user, cpu_sys, memory_peak: lockup.meter). Readable in the REPL.
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
  local how = r.timed_out and "timed out" or r.cpu_limited and "out of CPU time"
    or string_format("code %s", tostring(r.code))
  if r.signal then how = how .. ", signal " .. r.signal end
  if r.truncated then how = how .. ", truncated" end
  if r.oom then how = how .. ", out of memory" end
  if r.exited then how = how .. ", shell exited" end
  if r.box_stopped then how = how .. ", box stopped" end
  local cost = ""
  if r.cpu_user then cost = string_format(", cpu %.3fs user %.3fs sys", r.cpu_user, r.cpu_sys) end
  if r.memory_peak then cost = cost .. string_format(", peak %.1f MiB", r.memory_peak / 1048576) end
  return string_format("lockup.result (%s, %.3fs%s) stdout=%s stderr=%s", how, r.duration or 0, cost,
    preview(r.stdout or ""), preview(r.stderr or ""))
end

-- A code from 129 to 192 is a process ended by signal code - 128, as shells
-- and the Engine report it (a program that exits with such a code on its own
-- reads the same).
local function signal_of(code)
  if code and code > 128 and code <= 128 + 64 then return code - 128 end
  return nil
end

-- How the step ended, in one word; the first that applies wins.
function _M.status_of(t)
  if t.timed_out then return "timeout" end
  if t.cpu_limited then return "cpu_limit" end
  if t.oom then return "oom" end
  if t.truncated then return "truncated" end
  if t.exited then return "exited" end
  if t.engine_lost then return "engine_lost" end
  if t.code == 0 then return "ok" end
  if t.signal then return "signal" end
  return "exit"
end

function _M.new(t)
  t.stdout, t.stderr = t.stdout or "", t.stderr or "" -- a step may end before any output was read
  t.ok = t.code == 0 and not t.timed_out and not t.cpu_limited
  t.signal = signal_of(t.code)
  t.status = _M.status_of(t)
  return setmetatable(t, result_mt)
end

return _M
