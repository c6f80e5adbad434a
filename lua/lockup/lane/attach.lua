-- The attach lane: the session shell's stdin, stdout and stderr are the
-- container's own, relayed by dockerd over one hijacked connection carrying
-- Docker's multiplexed stream. It works with every engine, local or remote;
-- each step pays dockerd's relay. An exec's hijacked connection is the same
-- kind of lane.
--
-- A lane moves bytes and nothing else (the session knows the sentinels):
-- send(data, from) -> n | false | nil, err; pump(stream) -> the stream's pump
-- status; wait(want, deadline) -> ready?; answered(); close(); and, for the
-- lanes of a box lockup.pool may hold (this and lockup.lane.fifo, not the
-- cosocket one: inside nginx a parked box is checked by nginx), idle() ->
-- nothing to read?; the fifo lane also has poke() (lockup.session).
local core = require "lockup.core"
local scheduler = require "lockup.scheduler"

local setmetatable, tostring, next = setmetatable, tostring, next
local wait_any = scheduler.wait_any

local _M = { name = "attach" }

local Lane = {}
local lane_mt = { __index = Lane, __name = "lockup.lane.attach" }
function lane_mt.__tostring(self) return "lockup.lane.attach (" .. tostring(self.conn) .. ")" end

-- A lane over a connection already hijacked (attach or exec); inside nginx,
-- where the connection is a cosocket, lockup.lane.cosocket's.
function _M.wrap(conn)
  if conn.pump then return require("lockup.lane.cosocket").wrap(conn) end
  local fd = conn:fd()
  local sets = { r = { fd, "r" }, w = { fd, "w" }, rw = { fd, "rw" } }
  return setmetatable({ conn = conn, tls = conn:tls(), sets = sets }, lane_mt)
end

-- After create, before start: attaches to the container's stdio. Returns the
-- lane, or nil, err, status. `park`: see lockup.lifecycle.park.
function _M.open(d, id, park)
  local status, conn, rest = d:request("POST", "/containers/" .. id .. "/attach", {
    query = { stream = 1, stdin = 1, stdout = 1, stderr = 1 }, hijack = true, park = park,
  })
  if not status then return nil, conn, rest end
  -- Nothing can come before the container starts.
  if #rest > 0 then
    conn:close()
    return nil, "attach: stream bytes before the container started"
  end
  return _M.wrap(conn)
end

function Lane:send(data, from) return self.conn:send(data, from) end
function Lane:pump(stream) return stream:pump(self.conn) end
-- Waits until the stream has bytes ("r"), room to send ("w"), or either ("rw").
-- Over TLS, bytes may wait decrypted in libcurl's TLS layer while the socket
-- has none: until a read has found nothing, the lane is ready without a poll.
function Lane:wait(want, deadline)
  if self.tls and self.conn:pending() then return true end
  return wait_any(self.sets[want], deadline)
end
-- Ends the input (an exec's stdin), keeping the output. Over TLS a TCP
-- half-close under the TLS stream, as the docker CLI does: dockerd takes it
-- (lockup.exec bounds an input of known size with `head -c` in the box, so
-- as not to depend on it).
function Lane:shutdown() return self.conn:shutdown() end
function Lane.answered() end -- nothing held back on this lane
-- Nothing to read, not even the stream's end (a pooled box's check).
function Lane:idle() return next(core.poll(self.sets.r, 0)) == nil end
function Lane:close() self.conn:close() end

return _M
