-- A Docker Engine API client: endpoints, version negotiation, REST calls over
-- pooled keep-alive connections, and hijacked streams (attach, exec).
--
-- Every wait goes through lockup.scheduler, so a call yields inside lockup.run
-- and blocks anywhere else.
local core = require "lockup.core"
local scheduler = require "lockup.scheduler"
local cjson = require("cjson").new()
local options = require "lockup.options"
local box = require "lockup.box"
local image = require "lockup.image"
local lifecycle = require "lockup.lifecycle"
local fifo = require "lockup.lane.fifo"
local ngx_backend = require "lockup.ngx"
local cosocket = require "lockup.cosocket"
local unsafe_api = require "lockup.unsafe"

local setmetatable, type, tostring, tonumber, pairs, error = setmetatable, type, tostring, tonumber, pairs, error
local table_concat, string_format = table.concat, string.format
local now, wait = core.monotime, scheduler.wait

local _M = {}

_M.MIN_API = "1.30" -- AutoRemove, `wait?condition=removed`, `Upgrade: tcp` on attach
_M.MAX_API = "1.45" -- the newest API whose requests lockup writes
local DEFAULT_TIMEOUT = 60 -- seconds for one REST call
local POOL_MAX = 8 -- idle keep-alive connections kept per client
local SILENT_PING = 0.5 -- seconds a daemon that went silent gets to answer a ping before the next call


local Docker = {}
local docker_mt = { __index = Docker, __name = "lockup.docker" }

function docker_mt.__tostring(self)
  return string_format("lockup.docker (%s%s, API %s)", self.endpoint, self.tls and ", TLS" or "",
    self.api_version or "?")
end

local function api_number(v)
  local major, minor = tostring(v or ""):match("^(%d+)%.(%d+)$")
  return major and tonumber(major) * 1000 + tonumber(minor)
end

local CONNECT_OPTIONS = { socket = "string", host = "string", port = "number", url = "string",
  timeout = "number", api_version = "string", lane = "string", tls = "table|boolean", unsafe = "table" }
local TLS_OPTIONS = { ca = "string", cert = "string", key = "string", verify = "boolean" }

-- What connect refuses unless `unsafe = { ... }` names it (as start does with
-- lockup.unsafe's KINDS): each name lets one kind through.
_M.UNSAFE = {
  tls_noverify = "tls = { verify = false }: TLS that does not check who answers, so that anyone on the way "
    .. "to the daemon can pose as it, and run what they like in every box and read what goes in",
}

local function default_target()
  local env = os.getenv("DOCKER_HOST")
  return (env and env ~= "") and env or "unix:///var/run/docker.sock" -- empty means unset, as for the CLI
end

local function getenv(name)
  local v = os.getenv(name)
  return v ~= "" and v or nil -- empty means unset, as for the CLI
end


-- Whether a file can be read: nil, or why not.
local function unreadable(path)
  local f, err = io.open(path, "rb")
  if f then
    f:close()
    return nil
  end
  return (tostring(err):gsub("^[^:]*: ", "")) -- io.open's message starts with the path
end

-- The TLS settings of a tcp:// endpoint, as the docker CLI takes them: the
-- `tls` option, or else DOCKER_TLS_VERIFY (any non-empty value, as for the
-- CLI; DOCKER_TLS too, but verified: lockup never skips verification unasked)
-- with the PEM files in DOCKER_CERT_PATH (default ~/.docker). Returns the
-- settings for core.conn (nil: plain TCP), or nil, err when a file is missing.
-- Bad options raise at the user's call.
local function tls_settings(opts, unsafe, https)
  local tls = opts.tls
  if tls == nil and (https or getenv("DOCKER_TLS_VERIFY") or getenv("DOCKER_TLS")) then tls = true end
  if not tls then
    if https then error("bad option 'tls' to 'connect' (an https:// URL needs TLS)", 4) end
    return nil
  end
  if tls == true then -- the docker CLI's files
    local dir = getenv("DOCKER_CERT_PATH")
    local from = dir and "DOCKER_CERT_PATH" or "~/.docker, the default of DOCKER_CERT_PATH"
    dir = dir or ((getenv("HOME") or "") .. "/.docker")
    local settings = { verify = true, from = from }
    for _, f in ipairs { { "ca", "ca.pem" }, { "cert", "cert.pem" }, { "key", "key.pem" } } do
      local path = dir .. "/" .. f[2]
      local why = unreadable(path)
      if why then
        return nil, string_format("TLS to the Docker daemon: cannot read %s (%s) in %s: %s; put the daemon's CA "
          .. "(ca.pem) and this client's certificate and key (cert.pem, key.pem) there, as for the docker CLI, "
          .. "or give connect{ tls = { ca =, cert =, key = } }", path, f[2], from, why)
      end
      settings[f[1]] = path
    end
    return settings
  end
  options.check(tls, TLS_OPTIONS, "connect (option tls)", 4)
  if (tls.cert == nil) ~= (tls.key == nil) then
    error("bad option 'tls' to 'connect' (cert and key go together: give both, or neither)", 4)
  end
  if tls.verify == false and not unsafe.tls_noverify then
    error("bad option 'tls.verify' to 'connect' (verify = false lets anyone on the way to the daemon pose as it, "
      .. "and so run what they like in every box; give tls.ca, the CA that signed the daemon's certificate, "
      .. "instead; if it must be so, give unsafe = { \"tls_noverify\" })", 4)
  end
  local settings = { verify = tls.verify ~= false, from = "tls" }
  local FILES = { { "ca", "the CA certificate" }, { "cert", "the client certificate" }, { "key", "the client key" } }
  for _, f in ipairs(FILES) do
    local path = tls[f[1]]
    if path then
      local why = unreadable(path)
      if why then
        return nil, string_format("TLS to the Docker daemon: cannot read %s %s (tls.%s): %s", f[2], path, f[1], why)
      end
      settings[f[1]] = path
    end
  end
  return settings
end

-- Turns what the user gave into {endpoint, url, socket, tls}: curl connects to
-- `url`, through the unix socket `socket` when there is one, with TLS
-- settings `tls` when given. Returns it and the options.
local function parse_target(target)
  local unsafe = {}
  local opts = {}
  if type(target) == "table" then
    opts = options.check(target, CONNECT_OPTIONS, "connect", 3)
    local err
    unsafe, err = unsafe_api.set(opts.unsafe, _M.UNSAFE, "connect")
    if not unsafe then error(err, 3) end
    if opts.socket and opts.host then error("bad argument to 'connect' (give socket or host/port, not both)", 3) end
    if opts.socket and opts.socket:sub(1, 1) ~= "/" then
      error("bad option 'socket' to 'connect' (an absolute path expected, got " .. opts.socket .. ")", 3)
    end
    target = opts.url or (opts.socket and "unix://" .. opts.socket)
      or (opts.host and "tcp://" .. opts.host .. ":" .. (opts.port or (opts.tls and 2376 or 2375)))
      or default_target()
  elseif target == nil then
    target = default_target()
  elseif type(target) ~= "string" then
    error("bad argument #1 to 'connect' (URL string or table of options expected, got " .. type(target) .. ")", 3)
  end
  local path = target:match("^unix://(/.*)$")
  if path then
    if opts.tls then error("bad option 'tls' to 'connect' (TLS is for tcp:// endpoints, not a unix socket)", 3) end
    return { endpoint = target, url = "http://localhost/", socket = path }, opts
  end
  local host, port = target:match("^tcp://([^/:]+):(%d+)/?$")
  local https = false
  if not host then host, port = target:match("^http://([^/:]+):(%d+)/?$") end
  if not host then
    host, port = target:match("^https://([^/:]+):(%d+)/?$")
    https = host ~= nil
  end
  if not host then host, port = target:match("^tcp://(%[[%x:]+%]):(%d+)/?$") end
  if host then
    local tls, err = tls_settings(opts, unsafe, https)
    if err then return nil, err end
    return { endpoint = "tcp://" .. host .. ":" .. port,
      url = (tls and "https://" or "http://") .. host .. ":" .. port .. "/",
      host = host:gsub("^%[(.*)%]$", "%1"), port = tonumber(port), tls = tls }, opts
  end
  return nil, string_format("unsupported Docker endpoint %q: use unix:///absolute/path/to/docker.sock "
    .. "or tcp://host:port", target)
end

-- What a TLS failure means, and what to do: a message for the known ones,
-- or nil. `err` is libcurl's (OpenSSL's) message.
local function tls_explain(self, err)
  local tls, at = self.tls, self.endpoint
  local ca = tls.ca and string_format("the CA in %s (%s)", tls.ca, tls.from == "tls" and "tls.ca" or "ca.pem")
    or "the system's CAs"
  local cert = tls.cert and string_format("this client's certificate %s", tls.cert) or "no client certificate"
  local function has(s) return err:find(s, 1, true) end
  if has("certificate has expired") or has("certificate is not yet valid") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is out of its dates "
      .. "(%s): renew it, or check this host's clock", at, err)
  elseif has("unable to get local issuer") or has("self-signed certificate") or has("self signed certificate")
    or has("certificate signature failure") or has("unable to verify the first certificate") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is not signed by %s "
      .. "(%s): give the CA that signed it (the file dockerd's --tlscacert names)", at, ca, err)
  elseif has("subject name") or has("does not match target host") or has("no alternative certificate") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is not for this name "
      .. "(%s): connect with a name or address in the certificate, or renew it with this one", at, err)
  elseif has("certificate required") or (not tls.cert and (has("alert bad certificate")
    or has("alert handshake failure") or has("alert certificate unknown"))) then
    return string_format("the Docker daemon at %s wants a client certificate and got none (%s): give tls.cert and "
      .. "tls.key (cert.pem and key.pem in DOCKER_CERT_PATH), signed by the CA the daemon trusts", at, err)
  elseif has("alert certificate expired") or has("alert bad certificate") or has("alert unknown ca")
    or has("alert certificate unknown") or has("alert decrypt error") or has("alert certificate revoked") then
    return string_format("the Docker daemon at %s refused %s (%s): it must be signed by the CA the daemon "
      .. "trusts (dockerd --tlscacert) and be within its dates", at, cert, err)
  elseif has("unable to set private key") or has("could not load PEM client certificate")
    or has("unable to use client certificate") or has("key values mismatch") then
    return string_format("TLS to the Docker daemon at %s: cannot use the client certificate %s and key %s (%s): "
      .. "they must be PEM files of one key pair", at, tostring(tls.cert), tostring(tls.key), err)
  elseif has("wrong version number") or has("packet length too long") or has("record layer failure") then
    return string_format("the Docker daemon at %s does not speak TLS there (%s): is that its plain port "
      .. "(2375)? Connect without tls, or to the port dockerd --tlsverify listens on (2376)", at, err)
  elseif has("SSL connection timeout") then
    return string_format("timed out in the TLS handshake with %s (%s): is a TLS server listening there "
      .. "(dockerd --tlsverify)?", at, err)
  elseif has("unexpected eof") or has("Connection reset") or has("connection closed")
    or has("SSL_ERROR_SYSCALL") then
    return string_format("the Docker daemon at %s closed the TLS connection (%s): it may have refused %s, "
      .. "or not speak TLS there; its log says why", at, err, cert)
  end
  return nil
end
_M.tls_explain = tls_explain

local ERRNO_EACCES, ERRNO_ENOENT, ERRNO_ECONNREFUSED = 13, 2, 111

function Docker:connect_error(err, errno)
  if errno == ERRNO_EACCES then
    return string_format("permission denied on %s: this user may not use the Docker daemon; "
      .. "add it to the docker group (sudo usermod -aG docker $USER, then log in again) or run as root",
      self.endpoint)
  elseif (errno == ERRNO_ENOENT or errno == ERRNO_ECONNREFUSED) and self.socket then
    return string_format("cannot connect to the Docker daemon at %s (%s): is dockerd running? "
      .. "Start it (sudo dockerd &, or the Docker service) or point DOCKER_HOST at the right socket",
      self.endpoint, errno == ERRNO_ENOENT and "no such socket" or "connection refused")
  elseif errno == ERRNO_ECONNREFUSED then
    return string_format("cannot connect to the Docker daemon at %s (connection refused): "
      .. "is dockerd listening there (dockerd -H %s)?", self.endpoint, self.endpoint)
  end
  return self.tls and tls_explain(self, err)
    or string_format("cannot connect to the Docker daemon at %s: %s", self.endpoint, err)
end

-- A connection over an nginx cosocket (lockup.cosocket), or nil, err;
-- `name`: the nginx pool it is parked in when idle (lockup.pool's boxes).
local function open_cosocket(self, deadline, name)
  local c, err = cosocket.open(self.socket, self.host, self.port, deadline, name)
  if c then return c end
  local errno = err:find("permission denied", 1, true) and ERRNO_EACCES
    or err:find("no such file", 1, true) and ERRNO_ENOENT
    or err:find("connection refused", 1, true) and ERRNO_ECONNREFUSED or nil
  return nil, err == "timeout" and ("timed out connecting to the Docker daemon at " .. self.endpoint)
    or self:connect_error(err, errno)
end

-- A new connection, connected (or nil, err). `name`: see open_cosocket.
function Docker:open(deadline, name)
  if self.cosockets then return open_cosocket(self, deadline, name) end
  local c = core.conn(self.url, self.socket, math.max(0.001, deadline - now()), self.tls)
  while true do
    local ok, fd, want, timer = c:connect()
    if ok then return c end
    if ok == nil then
      c:close()
      return nil, self:connect_error(fd, want)
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
function Docker:send(method, path, opts)
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
function Docker:receive(call, deadline)
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
        err = tls_explain(self, err)
      else -- the daemon hung up mid-call: most often it stopped or restarted
        err = err .. " (the Docker daemon at " .. self.endpoint .. " closed the connection: is dockerd running?)"
      end
      return nil, string_format("%s %s: %s", call.method, call.path, err)
    end
  end
end

-- One REST call: status, body, headers | nil, err, status.
function Docker:request(method, path, opts)
  local call, err = self:send(method, path, opts)
  if not call then return nil, err end
  return self:receive(call)
end

function Docker:ping()
  local status, body = self:request("GET", "/_ping", { unversioned = true })
  if not status then return nil, body end
  return body == "OK" or body
end

function Docker:version()
  local status, body = self:request("GET", "/version", { unversioned = true })
  if not status then return nil, body end
  return body
end

-- Whether this engine can serve the fifo lane: true, or nil and a message
-- that says why not (asked once; see lockup.lane.fifo).
function Docker:fifo_usable()
  if self.cosockets then
    return nil, "inside nginx boxes take the attach lane (over cosockets): the fifo lane needs a poll loop"
  end
  if self.fifo_why == nil then
    local ok, why = fifo.usable(self)
    self.fifo_why = not ok and string_format("lane 'fifo' cannot work with the Engine at %s: %s; "
      .. "use lane = \"attach\"", self.endpoint, why) or false
  end
  if self.fifo_why then return nil, self.fifo_why end
  return true
end

-- Boxes, images, and what a killed process left behind.
function Docker:start(opts)
  return box.start(self, opts)
end
Docker.build, Docker.import, Docker.pull = image.build, image.import, image.pull
Docker.image_exists, Docker.remove_image = image.image_exists, image.remove_image
Docker.prune = lifecycle.prune

function Docker:close()
  for i = #self.idle, 1, -1 do
    self.idle[i]:close()
    self.idle[i] = nil
  end
end

-- Which engine answers /version: "podman" when one of its Components is
-- named "Podman Engine" (Podman's Docker-compatible service says so, while
-- giving Docker's ApiVersion), else "docker". Podman's API differs in places
-- (tmpfs options, the fifo lane's probe, ...): lockup adapts where d.engine says.
function _M.engine_of(info)
  for _, c in ipairs(type(info) == "table" and type(info.Components) == "table" and info.Components or {}) do
    if type(c) == "table" and c.Name == "Podman Engine" then return "podman" end
  end
  return "docker"
end

-- connect([url | opts]) -> docker | nil, err. Negotiates the API version: the
-- daemon's own, capped at the newest one lockup knows (opts.api_version pins it).
function _M.connect(target)
  local where, opts = parse_target(target)
  if not where then return nil, opts end
  if ngx_backend.active then
    ngx_backend.check_phase("lockup.connect")
    if where.tls then
      return nil, "TLS to the Docker daemon is not available inside nginx (lockup's cosockets speak plain HTTP): "
        .. "reach the daemon over its unix socket, or through a TLS proxy on this host"
    end
  end
  if opts.api_version and not api_number(opts.api_version) then
    error("bad option 'api_version' to 'connect' (a version such as \"1.41\" expected)", 2)
  end
  local env_lane = os.getenv("LOCKUP_LANE")
  local lane = lifecycle.check_lane(opts.lane, "connect", 2)
    or (env_lane and env_lane ~= "" and lifecycle.check_lane(env_lane, "connect (LOCKUP_LANE)", 2)) or nil
  local self = setmetatable({
    endpoint = where.endpoint, url = where.url, socket = where.socket, host = where.host, port = where.port,
    tls = where.tls, lane = lane, cosockets = ngx_backend.active,
    timeout = opts.timeout or DEFAULT_TIMEOUT, idle = {}, prefix = "",
  }, docker_mt)
  local info, err = self:version()
  if not info and not self.tls and tostring(err):find("HTTP request to an HTTPS server", 1, true) then
    return nil, string_format("the Docker daemon at %s speaks TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH "
      .. "(ca.pem, cert.pem, key.pem), or give connect{ tls = { ca =, cert =, key = } } (%s)", self.endpoint, err)
  end
  if not info then return nil, err end
  local daemon = type(info) == "table" and info.ApiVersion
  self.engine = _M.engine_of(info)
  if not api_number(daemon) then
    return nil, self.endpoint .. " does not look like a Docker Engine (no ApiVersion in /version)"
  end
  if api_number(daemon) < api_number(_M.MIN_API) then
    return nil, string_format("the Docker daemon at %s speaks API %s; lockup needs %s or newer",
      self.endpoint, daemon, _M.MIN_API)
  end
  local want = opts.api_version or daemon
  if api_number(want) > api_number(daemon) then
    return nil, string_format("api_version %s is newer than the daemon's %s at %s", want, daemon, self.endpoint)
  end
  if api_number(want) < api_number(_M.MIN_API) then
    return nil, string_format("api_version %s is too old: lockup needs %s or newer", want, _M.MIN_API)
  end
  if api_number(want) > api_number(_M.MAX_API) then want = _M.MAX_API end
  self.api_version = want
  self.prefix = "/v" .. want
  -- The lane boxes get by default: fifo where this engine can serve it.
  if lane ~= "attach" then
    local usable, why = self:fifo_usable()
    if lane == "fifo" and not usable then return nil, why end
  end
  return self
end

_M.Docker = Docker
return _M
