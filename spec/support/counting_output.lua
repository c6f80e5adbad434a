-- busted's usual terminal output, plus the counts written to $LOCKUP_COUNTS
-- ("passed failed pending" on the first line, then one line per failure or
-- error: its name and where it failed) so that scripts/check.sh can end with
-- one summary for several runs (plain build, sanitizers) and repeat what
-- failed where CI's truncated log still shows it. At the end it also prints
-- the spec files that took longest (where `make check`'s time goes).
local SLOWEST = 6

return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  local ok, core = pcall(require, "lockup.core")
  local clock = ok and core.monotime or os.clock
  local took, started = {}, {}

  busted.subscribe({ "file", "start" }, function(file)
    started[file.name] = clock()
    return nil, true
  end)
  busted.subscribe({ "file", "end" }, function(file)
    if started[file.name] then took[#took + 1] = { file.name, clock() - started[file.name] } end
    return nil, true
  end)

  local function print_slowest()
    table.sort(took, function(a, b) return a[2] > b[2] end)
    local parts = {}
    for i = 1, math.min(SLOWEST, #took) do
      parts[i] = string.format("%s %.1f s", took[i][1]:match("[^/]*$"), took[i][2])
    end
    if #parts > 0 then io.write("\nslowest spec files: ", table.concat(parts, ", "), "\n") end
  end

  local function first_line(s)
    return (tostring(s or ""):match("[^\n]*"))
  end

  busted.subscribe({ "suite", "end" }, function()
    print_slowest()
    local path = os.getenv("LOCKUP_COUNTS")
    if path then
      local f = assert(io.open(path, "w"))
      f:write(handler.successesCount, " ", handler.failuresCount + handler.errorsCount, " ",
        handler.pendingsCount, "\n")
      for _, list in ipairs({ handler.failures, handler.errors }) do
        for _, t in ipairs(list) do
          local where = t.trace and t.trace.short_src and (t.trace.short_src .. ":" .. tostring(t.trace.currentline)) or "?"
          f:write("FAILED ", t.name or "?", " (", where, "): ", first_line(t.message):sub(1, 300), "\n")
        end
      end
      f:close()
    end
    return nil, true
  end)
  return handler
end
