-- The attach lane inside nginx: the same hijacked connection to dockerd and
-- Docker's multiplexed stream as lockup.lane.attach, over a cosocket
-- (lockup.cosocket), which waits inside nginx's event loop. Same interface:
-- send(data, from), pump(stream), wait(want, deadline), answered(), close().
local setmetatable, tostring = setmetatable, tostring

local _M = { name = "attach" }

local Lane = {}
local lane_mt = { __index = Lane, __name = "lockup.lane.cosocket" }
function lane_mt.__tostring(self) return "lockup.lane.cosocket (" .. tostring(self.conn) .. ")" end

-- A lane over a cosocket connection already hijacked (attach or exec).
function _M.wrap(conn)
  return setmetatable({ conn = conn }, lane_mt)
end

-- A cosocket sends all it is given, waiting inside nginx meanwhile.
function Lane:send(data, from) return self.conn:send(data, from) end
function Lane:pump(stream) return self.conn:pump(stream) end
-- Only reading is waited for: sending never returns early here.
function Lane:wait(_, deadline) return self.conn:readable(deadline) end
function Lane.answered() end
function Lane:close() self.conn:close() end

return _M
