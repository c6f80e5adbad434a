-- busted's usual terminal output, plus the counts written to $LOCKUP_COUNTS
-- ("passed failed pending" on the first line, then one line per failure or
-- error: its name and where it failed) so that scripts/check.sh can end with
-- one summary for several runs (plain build, sanitizers) and repeat what
-- failed where CI's truncated log still shows it.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)

  local function first_line(s)
    return (tostring(s or ""):match("[^\n]*"))
  end

  busted.subscribe({ "suite", "end" }, function()
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
