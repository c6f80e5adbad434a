-- A connection to the Docker Engine over an nginx cosocket (ngx.socket.tcp):
-- what lockup.docker and the attach lane use inside nginx instead of the C
-- core's connection. A cosocket waits inside nginx's event loop and reads for
-- itself, so the C parsers are fed what it reads (response:feed,
-- stream:feed) instead of reading a descriptor.
--
-- The shape is the C connection's where lockup.docker uses it: send(data,
-- from) -> n | nil, err; close(). Reading is split in two: readable(deadline)
-- waits for bytes (true, or false at the deadline), and pump(parser) feeds
-- what came to the C parser. Cosockets cannot shut down their sending
-- side: nothing in lockup needs that.
local ngx = ngx -- luacheck: ignore 113 (nginx's global)
local core = require "lockup.core"

local setmetatable, tostring = setmetatable, tostring
local math_max, math_floor = math.max, math.floor
local now = core.monotime

local _M = {}

local READ_MAX = 65536 -- bytes taken from the cosocket per read
local KEEPALIVE_MS, POOL_SIZE = 60000, 8 -- nginx's pool of idle connections, per worker

local Conn = {}
local conn_mt = { __index = Conn, __name = "lockup.cosocket" }
function conn_mt.__tostring(self) return "lockup.cosocket (" .. self.where .. ")" end

local function ms_until(deadline)
  return math_max(1, math_floor((deadline - now()) * 1000))
end

-- Connects to the socket path, or host and port: conn, or nil, err. `reused`
-- is true for a connection from nginx's pool (the daemon may have closed it
-- since; lockup.docker retries such a call once). `name`: the pool it goes
-- back to, one of its own for a connection that is parked (Conn:park).
function _M.open(socket, host, port, deadline, name)
  local sock = ngx.socket.tcp()
  sock:settimeout(ms_until(deadline))
  local ok, err
  local pool = name and { pool = name } or nil
  if socket then
    ok, err = sock:connect("unix:" .. socket, pool)
  else
    ok, err = sock:connect(host, port, pool)
  end
  if not ok then return nil, err end
  local where = socket and ("unix:" .. socket) or (host .. ":" .. tostring(port))
  return setmetatable({ sock = sock, where = where, reused = (sock:getreusedtimes() or 0) > 0 }, conn_mt)
end

-- Sends data[from..]; cosockets send it all or fail. Returns the count, or nil, err.
function Conn:send(data, from)
  from = from or 1
  local ok, err = self.sock:send(from > 1 and data:sub(from) or data)
  if not ok then
    self.dead = err
    return nil, err
  end
  return #data - from + 1
end

-- Waits until bytes came, or the connection ended: true; false at the deadline.
function Conn:readable(deadline)
  if self.pending or self.ended then return true end
  self.sock:settimeout(ms_until(deadline))
  local data, err = self.sock:receiveany(READ_MAX)
  if data then
    self.pending = data
    return true
  elseif err == "timeout" then
    return false
  end
  self.ended = err
  return true
end

-- What came, taken (nil when nothing did).
local function take(self)
  local data = self.pending
  self.pending = nil
  return data
end

-- What came, fed to a C parser that cannot read for itself (core.response
-- or core.stream; both take feed(bytes) and finish()): the parser's pump
-- statuses ("head", "done" for a response; "exit", "truncated", "eof" for a
-- stream), false to wait for more bytes, or nil, err. Without new bytes the
-- parser is fed "" still: a response keeps the body bytes that came with its
-- head until fed again.
function Conn:pump(parser)
  local st, err = parser:feed(take(self) or "")
  if st ~= "more" then return st, err end
  if self.ended then
    if self.ended == "closed" then return parser:finish() end
    return nil, self.ended
  end
  return false
end

-- Back to nginx's pool (an HTTP exchange that ended cleanly), or closed.
function Conn:release()
  if self.pending or self.ended or self.dead or not self.sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE) then
    self.sock:close()
  end
  self.closed = true
end

-- Parks a connection nobody uses now (a warm box's, in lockup.pool) in
-- nginx's pool under the name it was opened with, with no idle timeout, for
-- a later request or timer of this worker to take back (_M.unpark). While it
-- is parked, nginx closes it if the daemon sends anything or hangs up: a box
-- that speaks or ends while idle loses its connection, and with it its
-- lifeline. true, or false, why when it could not be parked (then it is
-- closed).
function Conn:park()
  local ok, err
  if self.pending or self.ended or self.dead then
    ok, err = false, "it has unread bytes, or ended"
  else
    ok, err = self.sock:setkeepalive(0, 1)
  end
  if not ok then self.sock:close() end
  self.closed = true
  return ok and true or false, err
end

-- Takes back the connection parked under `name`: conn, or nil, err (nil,
-- "gone" when nginx closed it meanwhile: a fresh connection then comes out
-- of the pool, and is closed again).
function _M.unpark(socket, host, port, name, deadline)
  local c, err = _M.open(socket, host, port, deadline, name)
  if not c then return nil, err end
  if not c.reused then
    c:close()
    return nil, "gone"
  end
  return c
end

function Conn:close()
  if not self.closed then self.sock:close() end
  self.closed = true
end

function Conn.fd() return -1 end

return _M
