-- Where the Engine is: the targets lockup.connect takes (unix:///path,
-- tcp://host:port, https://, a table of socket or host/port, DOCKER_HOST and,
-- for TLS, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as the docker CLI reads
-- them), turned into what a connection needs. Bad options raise at the
-- caller of lockup.connect.
local options = require "lockup.options"
local unsafe_api = require "lockup.unsafe"

local type, tostring, tonumber, error, ipairs = type, tostring, tonumber, error, ipairs
local string_format = string.format

local _M = {}

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
function _M.parse(target)
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

return _M
