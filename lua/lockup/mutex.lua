-- A FIFO lock over lockup's scheduler: calls on one box run one at a time,
-- in call order, whichever backend parks them (the epoll loop, or nginx's:
-- scheduler.park and scheduler.wake are looked up at each use).
local scheduler = require "lockup.scheduler"

local setmetatable, tostring = setmetatable, tostring
local co_running, table_remove = coroutine.running, table.remove

local _M = {}

-- The main thread's identity while it waits or holds the lock: LuaJIT's
-- coroutine.running() gives nil there, which would read as "nobody".
local MAIN_THREAD = {}

local Mutex = {}
local mutex_mt = { __index = Mutex, __name = "lockup.mutex" }

function _M.new()
  return setmetatable({ owner = nil, queue = {} }, mutex_mt)
end

-- true, or nil, err when the wait for the lock could not be had (outside
-- lockup.run, with nothing that could ever unlock it).
function Mutex:lock()
  local co = co_running() or MAIN_THREAD
  if not self.owner then
    self.owner = co
    return true
  end
  local queue = self.queue
  queue[#queue + 1] = co
  repeat -- only unlock() hands the lock over; any other wake parks again
    local ok, err = scheduler.park()
    if not ok then
      for i = #queue, 1, -1 do
        if queue[i] == co then table_remove(queue, i) break end
      end
      return nil, "the box is busy with a call from another coroutine, and " .. tostring(err)
    end
  until self.owner == co
  return true
end

function Mutex:unlock()
  local nxt = table_remove(self.queue, 1)
  self.owner = nxt
  if nxt then scheduler.wake(nxt ~= MAIN_THREAD and nxt or nil) end
end

return _M
