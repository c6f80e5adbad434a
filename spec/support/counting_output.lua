-- busted's usual terminal output, plus the counts written to $LOCKUP_COUNTS
-- ("passed failed pending") so that scripts/check.sh can print one summary line
-- for several runs (plain build, sanitizers).
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    local path = os.getenv("LOCKUP_COUNTS")
    if path then
      local f = assert(io.open(path, "w"))
      f:write(handler.successesCount, " ", handler.failuresCount + handler.errorsCount, " ",
        handler.pendingsCount, "\n")
      f:close()
    end
    return nil, true
  end)
  return handler
end
