-- lockup.progress([label [, file]]) -> on_progress function for build, pull,
-- import, put, put_file, get and get_file. In a terminal it draws one status
-- line on stderr (a bar for byte counts, the current step for a build);
-- anywhere else (a script, a pipe, a log) it stays quiet. Given a file, it
-- always draws to it.
local core = require "lockup.core"

local string_format, string_rep, math_floor, math_min = string.format, string.rep, math.floor, math.min

local WIDTH = 78 -- columns of the status line
local BAR = 24

local function size(n)
  if n >= 1024 * 1024 then return string_format("%.1f MiB", n / 1048576) end
  if n >= 1024 then return string_format("%.1f KiB", n / 1024) end
  return string_format("%d B", n)
end

-- The status line for one event, without the label.
local function status(ev)
  if ev.done and ev.total and ev.total > 0 then
    local f = math_min(1, ev.done / ev.total)
    local fill = math_floor(f * BAR + 0.5)
    return string_format("[%s%s] %3d%% %s / %s", string_rep("#", fill), string_rep(".", BAR - fill),
      math_floor(f * 100), size(ev.done), size(ev.total)), f >= 1
  elseif ev.done then
    return size(ev.done)
  end
  local text = ev.step or ev.text or ""
  if ev.op == "pull" and ev.id then text = ev.id .. ": " .. text end
  return text, ev.finished
end

return function(label, file)
  if file == nil then
    if not core.isatty(2) then return function() end end
    file = io.stderr
  end
  label = label and (label .. " ") or ""
  local last = ""
  return function(ev)
    local text, complete = status(ev)
    local line = (label .. text):gsub("[%c]", " "):sub(1, WIDTH)
    if line == last and not complete then return end
    last = line
    file:write("\r", line, string_rep(" ", WIDTH - #line), complete and "\n" or "")
    file:flush()
  end
end
