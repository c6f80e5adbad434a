-- A Docker Engine API client, as lockup.connect returns it: where the Engine
-- is (lockup.endpoint), the API version negotiated, what this engine can do
-- (Docker or Podman, the fifo lane), and the calls on it: REST over pooled
-- connections (lockup.client), boxes (lockup.box), images (lockup.image).
local box = require "lockup.box"
local image = require "lockup.image"
local lifecycle = require "lockup.lifecycle"
local fifo = require "lockup.lane.fifo"
local ngx_backend = require "lockup.ngx"
local endpoint = require "lockup.endpoint"
local client = require "lockup.client"

local setmetatable, type, tostring, tonumber, ipairs, error = setmetatable, type, tostring, tonumber, ipairs, error
local string_format = string.format

local _M = {}

_M.MIN_API = "1.30" -- AutoRemove, `wait?condition=removed`, `Upgrade: tcp` on attach
_M.MAX_API = "1.45" -- the newest API whose requests lockup writes
local DEFAULT_TIMEOUT = 60 -- seconds for one REST call
_M.UNSAFE = endpoint.UNSAFE -- what connect's `unsafe` may name

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

Docker.open, Docker.send, Docker.receive, Docker.request = client.open, client.send, client.receive, client.request

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
  local where, opts = endpoint.parse(target)
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
