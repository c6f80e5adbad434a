-- The HTTP client a lockup.docker is: REST calls over pooled keep-alive
-- connections (lockup.core's, or nginx cosockets inside nginx), streamed
-- bodies both ways, hijacked streams (attach, exec), each call within its
-- deadline. Its methods are the client's (lockup.docker copies them into its
-- class): open, send, receive, request.
--
-- Every wait goes through lockup.scheduler, so a call yields inside lockup.run
-- and blocks anywhere else.
local core = require "lockup.core"
local scheduler = require "lockup.scheduler"
local cjson = require("cjson").new()
local cosocket = require "lockup.cosocket"
local explain = require "lockup.explain"

local type, tostring, pairs, ipairs, pcall = type, tostring, pairs, ipairs, pcall
local table_concat, string_format = table.concat, string.format
local now, wait = core.monotime, scheduler.wait

local POOL_MAX = 8 -- idle keep-alive connections kept per client
local SILENT_PING = 0.5 -- seconds a daemon that went silent gets to answer a ping before the next call

local Client = {}

-- A connection over an nginx cosocket (lockup.cosocket), or nil, err;
-- `name`: the nginx pool it is parked in when idle (lockup.pool's boxes).
local function open_cosocket(self, deadline, name)
  local c, err = cosocket.open(self.socket, self.host, self.port, deadline, name)
  if c then return c end
  local errno = err:find("permission denied", 1, true) and explain.EACCES
    or err:find("no such file", 1, true) and explain.ENOENT
    or err:find("connection refused", 1, true) and explain.ECONNREFUSED or nil
  return nil, err == "timeout" and ("timed out connecting to the Docker daemon at " .. self.endpoint)
    or explain.connect(self, err, errno)
end

-- A new connection, connected (or nil, err). `name`: see open_cosocket.
function Client:open(deadline, name)
  if self.cosockets then return open_cosocket(self, deadline, name) end
  local c = core.conn(self.url, self.socket, math.max(0.001, deadline - now()), self.tls)
  while true do
    local ok, fd, want, timer = c:connect()
    if ok then return c end
    if ok == nil then
      c:close()
      return nil, explain.connect(self, fd, want)
    end
    if now() >= deadline then
      c:close()
      return nil, "timed out connecting to the Docker daemon at " .. self.endpoint
    end
    local until_ = timer and math.min(deadline, now() + timer) or deadline
    if fd >= 0 then wait(fd, want, until_) else scheduler.sleep(math.max(0, until_ - now())) end
  end
end

-- Sends all of data on c before the deadline.
local function send_all(c, data, deadline)
  local i = 1
  while i <= #data do
    local n, err = c:send(data, i)
    if n == nil then return nil, err end
    if n then
      i = i + n
    elseif not wait(c:fd(), "w", deadline) then
      return nil, "timed out"
    end
  end
  return true
end

local function query_string(q)
  if not q then return "" end
  local keys, parts = {}, {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then v = cjson.encode(v) end
    v = tostring(v):gsub("[^%w%-%._~]", function(ch) return string_format("%%%02X", ch:byte()) end)
    parts[#parts + 1] = k .. "=" .. v
  end
  return #parts > 0 and ("?" .. table_concat(parts, "&")) or ""
end

-- The request's head, and its body when that is a string or a table (JSON).
-- A function body (a source of chunks) is sent after it, chunked.
local function request_text(self, method, path, opts)
  local body, ctype = opts.body, opts.content_type
  if type(body) == "table" then
    body, ctype = cjson.encode(body), "application/json"
  end
  local streamed = type(body) == "function"
  if streamed then body = nil end
  local target = (opts.unversioned and "" or self.prefix) .. path .. query_string(opts.query)
  local lines = { method .. " " .. target .. " HTTP/1.1", "Host: docker", "User-Agent: lockup" }
  if opts.hijack then
    lines[#lines + 1] = "Connection: Upgrade"
    lines[#lines + 1] = "Upgrade: tcp"
  end
  if streamed then
    lines[#lines + 1] = "Content-Type: " .. (ctype or "application/octet-stream")
    lines[#lines + 1] = "Transfer-Encoding: chunked"
  elseif body then
    lines[#lines + 1] = "Content-Type: " .. (ctype or "application/octet-stream")
    lines[#lines + 1] = "Content-Length: " .. #body
  elseif method == "POST" or method == "PUT" then
    lines[#lines + 1] = "Content-Length: 0"
  end
  lines[#lines + 1] = "\r\n"
  return table_concat(lines, "\r\n") .. (body or "")
end

-- Sends a body given as a source function, chunked: true, or nil, err and
-- whether the source (not the connection) failed.
local function send_chunked(c, source, deadline)
  while true do
    local chunk, err = source()
    if chunk == nil and err then return nil, err, true end
    if chunk == nil then return send_all(c, "0\r\n\r\n", deadline) end
    if #chunk > 0 then
      local ok, serr = send_all(c, string_format("%x\r\n%s\r\n", #chunk, chunk), deadline)
      if not ok then return nil, serr end
    end
  end
end

-- Sends a request; returns a pending call to hand to Docker:receive. A pooled
-- connection the daemon has closed meanwhile fails on first use: then the call
-- is retried once on a fresh connection (nothing of it reached the daemon).
-- A streamed body (opts.body a function) is sent in full before this returns.
-- opts.deadline (a monotonic time) bounds the call instead of opts.timeout:
-- the REST calls a box's call makes share that call's deadline.
-- A daemon that let a call time out without a word (paused, or hung) is
-- asked with a short ping before the next call, so that calls made while it
-- stays silent fail at once instead of each waiting for its whole timeout.
function Client:send(method, path, opts)
  opts = opts or {}
  local deadline = opts.deadline or now() + (opts.timeout or self.timeout)
  if self.silent and not opts.ping then
    local silent = self.silent
    local ok = self:request("GET", "/_ping", { unversioned = true, ping = true,
      deadline = math.min(deadline, now() + SILENT_PING) })
    if not ok then return nil, silent end
    self.silent = nil
  end
  local text = request_text(self, method, path, opts)
  -- opts.dedicated: a call whose answer comes much later (wait) takes a connection of its own;
  -- opts.park: inside nginx, the name of the pool it is parked in while idle (lockup.pool)
  local pooled = not (opts.hijack or opts.dedicated) and table.remove(self.idle)
  local c, err = pooled
  if not c then
    c, err = self:open(deadline, opts.park)
    if not c then return nil, err end
  end
  local ok
  ok, err = send_all(c, text, deadline)
  if not ok and (pooled or c.reused) then
    c:close()
    return self:send(method, path, opts)
  end
  if not ok then
    c:close()
    return nil, string_format("%s %s: %s", method, path, err)
  end
  local call = { conn = c, method = method, path = path, opts = opts, deadline = deadline,
    pooled = pooled or c.reused, sent = now() }
  if type(opts.body) == "function" then
    call.pooled = false -- the body cannot be sent again
    local source_failed
    ok, err, source_failed = send_chunked(c, opts.body, deadline)
    if source_failed then
      c:close()
      return nil, err
    elseif not ok then -- the daemon stopped reading: its answer says why
      local status, body = self:receive(call, math.min(deadline, now() + 5))
      return nil, status and string_format("%s %s: the daemon answered %d before the whole body was sent",
        method, path, status) or body
    end
  end
  return call
end

-- What came on the connection, into the response parser: "head", "done",
-- "more" (a read budget spent), false (wait for more), or nil, err. The C
-- connection is read by the parser itself; a cosocket reads for itself.
local function pump_response(r, c)
  if c.pump then return c:pump(r) end
  return r:pump(c)
end

-- Waits until the connection has bytes: true, or false at the deadline. Over
-- TLS, bytes may wait decrypted in libcurl's TLS layer, which polling does not
-- show: then it is worth reading first.
local function readable(c, deadline)
  if c.readable then return c:readable(deadline) end
  if c:pending() then return true end
  return wait(c:fd(), "r", deadline)
end

-- An exchange that ended cleanly leaves its connection for the next call:
-- this client's pool, or nginx's for a cosocket (a cosocket belongs to the
-- request that made it, so it is never kept in a client that may outlive it).
local function keep(self, c, reusable)
  if c.release then
    if reusable then c:release() else c:close() end
  elseif reusable and #self.idle < POOL_MAX then
    self.idle[#self.idle + 1] = c
  else
    c:close()
  end
end

-- JSON is decoded as the content type says; Podman sends some (/top) with
-- none, so a body without one is decoded when it is JSON.
local function decode(body, headers)
  local ctype = headers["content-type"]
  if (ctype and ctype:find("json", 1, true) or (not ctype and body:find("^%s*[{%[]"))) and #body > 0 then
    local ok, v = pcall(cjson.decode, body)
    if ok then return v end
  end
  return body
end

-- The daemon's own message for a failed call.
local function error_message(call, status, body)
  local msg = type(body) == "table" and body.message or tostring(body):gsub("%s+$", "")
  if msg == "" then msg = "no message" end
  return string_format("%s (HTTP %d from %s %s)", msg, status, call.method, call.path)
end

-- Podman answers 500 where Docker answers 404 or 409, for the same cases:
-- its status as Docker's, for the callers that tell those apart.
local PODMAN_STATUS = {
  { "no such container", 404 }, -- inspecting one whose removal is under way
  { "container state improper", 409 }, -- killing one that has stopped; removing one that is stopping
}
local function podman_status(status, message)
  if status ~= 500 then return status end
  message = message:lower()
  for _, m in ipairs(PODMAN_STATUS) do
    if message:find(m[1], 1, true) then return m[2] end
  end
  return status
end

-- Reads the response to a pending call: status, body (decoded JSON, or text),
-- headers; or nil, err, status. With opts.hijack, a 101/200 answer returns the
-- connection itself and the stream bytes already read: status, conn, bytes.
-- With opts.on_body, a successful answer's body goes to it as it arrives
-- (streaming endpoints: build, pull), and the body returned is "".
function Client:receive(call, deadline)
  local c, opts = call.conn, call.opts
  deadline = deadline or call.deadline
  local r = core.response(call.method == "HEAD")
  local got_head, streaming = false, false
  while true do
    local st, err = pump_response(r, c)
    if streaming and st ~= "head" then
      local chunk = r:body()
      if #chunk > 0 then opts.on_body(chunk) end
    end
    -- false: wait for more; "more": a read budget spent. Either way the
    -- deadline holds, even against a daemon that streams without a pause.
    if st == false or st == "more" then
      if now() >= deadline or (st == false and not readable(c, deadline)) then
        c:close()
        local msg = string_format("timed out after %.3gs waiting for the Docker daemon at %s (%s %s)",
          deadline - call.sent, self.endpoint, call.method, call.path)
        if not got_head then
          self.silent = msg .. "; it has not answered since: is dockerd paused or overloaded?"
        end
        return nil, msg
      end
      if st == "more" then scheduler.yield() end
    elseif st == "head" then
      got_head = true
      local status = r:status()
      if opts.hijack and (status == 101 or status == 200) then
        return status, c, r:rest()
      end
      streaming = opts.on_body ~= nil and status < 400
    elseif st == "done" then
      local status, headers = r:status(), r:headers()
      keep(self, c, r:keep_alive() and not opts.dedicated)
      local body = decode(r:body(), headers)
      if status >= 400 then
        local msg = error_message(call, status, body)
        return nil, msg, self.engine == "podman" and podman_status(status, msg) or status
      end
      return status, body, headers
    else
      c:close()
      if not got_head and call.pooled then
        -- The daemon had closed this idle connection: try once more on a new one.
        local again, e2 = self:send(call.method, call.path, call.opts)
        if not again then return nil, e2 end
        again.pooled = false
        return self:receive(again, deadline)
      end
      err = err or "connection closed"
      if self.tls then
        err = explain.tls(self, err) or err
      else -- the daemon hung up mid-call: most often it stopped or restarted
        err = err .. " (the Docker daemon at " .. self.endpoint .. " closed the connection: is dockerd running?)"
      end
      return nil, string_format("%s %s: %s", call.method, call.path, err)
    end
  end
end

-- One REST call: status, body, headers | nil, err, status.
function Client:request(method, path, opts)
  local call, err = self:send(method, path, opts)
  if not call then return nil, err end
  return self:receive(call)
end

return Client
