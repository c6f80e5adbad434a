-- The secure defaults of a box, and the container configuration built from
-- docker:start's options. A user who writes `docker:start{ image = ... }` and
-- nothing else gets every limit below; each has a named option to change it.
local type, error, tostring, pairs, ipairs, tonumber = type, error, tostring, pairs, ipairs, tonumber
local string_format, math_floor = string.format, math.floor

local _M = {}

local MiB = 1024 * 1024

-- One table, documented as it stands in README.md ("Secure defaults").
_M.DEFAULTS = {
  network = false,          -- NetworkMode none: no interface but loopback
  user = "65534:65534",     -- nobody; `user = "root"` opts out
  read_only = true,         -- read-only root filesystem
  workdir = "/work",        -- a tmpfs owned by the user
  tmpfs = nil,              -- writable tmpfs mounts: { "/tmp", workdir } unless given
  disk = 256 * MiB,         -- size of each tmpfs mount
  memory = 512 * MiB,       -- memory limit, with swap equal to it (no swap beyond)
  cpus = 1,                 -- CPUs' worth of time
  pids = 256,               -- processes and threads
  nofile = 1024,            -- open files per process
  fsize = 1024 * MiB,       -- largest file a process may write
  max_output = 64 * MiB,    -- per stream and step, when not streamed to a callback
  timeout = 300,            -- seconds per step
}

-- "512m", "1g", "64k" or a number of bytes.
function _M.bytes(v, name)
  if type(v) == "number" then
    if v >= 1 and v == math_floor(v) then return v end
  elseif type(v) == "string" then
    local n, unit = v:lower():match("^(%d+)([kmg]?)b?$")
    if n then return tonumber(n) * (unit == "k" and 1024 or unit == "m" and MiB or unit == "g" and 1024 * MiB or 1) end
  end
  error(string_format("bad option '%s' to 'start' (a size such as 512m, 1g or a number of bytes expected, got %s)",
    name, tostring(v)), 4)
end

local function positive(v, name)
  if v ~= nil and not (v > 0) then -- luacheck: ignore 581 (NaN must fail too)
    error(string_format("bad option '%s' to 'start' (a positive number expected)", name), 4)
  end
  return v
end

local function string_list(v, name)
  if v == nil then return nil end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      error(string_format("bad option '%s' to 'start' (a list of strings expected; item %d is a %s)",
        name, i, type(s)), 4)
    end
  end
  return v
end

-- A numeric uid[:gid] owns the tmpfs mounts; a user name cannot be resolved
-- here, so then they are world-writable (sticky, like /tmp). `exec`: Docker
-- mounts tmpfs noexec unless told otherwise, but running what was put there
-- (a script, a build's output) is the point of a box, and a step can run any
-- code through the shell anyway.
local function tmpfs_options(user, size)
  local uid, gid = tostring(user):match("^(%d+):?(%d*)$")
  local owner = uid and string_format(",uid=%s,gid=%s,mode=0700", uid, gid ~= "" and gid or uid) or ",mode=1777"
  return string_format("rw,exec,nosuid,nodev,size=%d%s", size, owner)
end

-- Host directories mounted into the box: { ["/host/dir"] = "/box/dir" } is
-- read-only, "/box/dir:rw" writable. Returns the Binds list, sorted.
local function binds(volumes)
  if volumes == nil then return nil end
  local list = {}
  for host_path, spec in pairs(volumes) do
    local target, mode = tostring(spec):match("^(/[^:]*):?(%a*)$")
    if type(host_path) ~= "string" or not host_path:match("^/[^:]*$") or type(spec) ~= "string" or not target
      or (mode ~= "" and mode ~= "ro" and mode ~= "rw") then
      error("bad option 'volumes' to 'start' ({ [\"/host/dir\"] = \"/box/dir\" } expected, read-only; "
        .. "\"/box/dir:rw\" for writable; absolute paths without ':')", 4)
    end
    list[#list + 1] = host_path .. ":" .. target .. ":" .. (mode == "rw" and "rw" or "ro")
  end
  table.sort(list)
  return list
end

-- The mounts a box can write to, given its HostConfig: the tmpfs mounts and
-- the writable volumes (with a writable root filesystem, the rest too).
function _M.writable(host)
  local list = {}
  for path in pairs(host.Tmpfs) do list[#list + 1] = path end
  for _, b in ipairs(host.Binds or {}) do
    local target = b:match("^[^:]*:([^:]*):rw$")
    if target then list[#list + 1] = target end
  end
  table.sort(list)
  return list
end

-- Returns the fields of a create request that hardening decides: the Config
-- part (User, WorkingDir, NetworkDisabled) and the HostConfig.
function _M.container(opts)
  local D = _M.DEFAULTS
  local user = opts.user or D.user
  local workdir = opts.workdir or D.workdir
  local network = opts.network or D.network
  local read_only = opts.read_only
  if read_only == nil then read_only = D.read_only end
  local disk = opts.disk and _M.bytes(opts.disk, "disk") or D.disk
  local memory = opts.memory and _M.bytes(opts.memory, "memory") or D.memory
  local cpus = positive(opts.cpus, "cpus") or D.cpus
  local pids = positive(opts.pids, "pids") or D.pids
  local ulimits = opts.ulimits or {}
  for k, v in pairs(ulimits) do
    if (k ~= "nofile" and k ~= "fsize") or (k == "nofile" and (type(v) ~= "number" or v < 1)) then
      error("bad option 'ulimits' to 'start' ({ nofile = n, fsize = bytes } expected)", 3)
    end
  end
  local fsize = ulimits.fsize and _M.bytes(ulimits.fsize, "ulimits.fsize") or D.fsize

  local mounts = {}
  for _, path in ipairs(string_list(opts.tmpfs, "tmpfs") or { "/tmp", workdir }) do
    mounts[path] = tmpfs_options(user, disk)
  end
  local cap_add = string_list(opts.cap_add, "cap_add")
  local security_opt = { "no-new-privileges" }
  for _, s in ipairs(string_list(opts.security_opt, "security_opt") or {}) do security_opt[#security_opt + 1] = s end

  local config = { User = user, WorkingDir = workdir, NetworkDisabled = not network }
  local host = {
    AutoRemove = true,
    NetworkMode = network and "default" or "none",
    LogConfig = { Type = "none", Config = {} }, -- output is ours alone, never on the daemon's disk
    ReadonlyRootfs = read_only,
    Tmpfs = mounts,
    Binds = binds(opts.volumes),
    CapDrop = { "ALL" },
    CapAdd = cap_add,
    SecurityOpt = security_opt,
    Memory = memory,
    MemorySwap = memory,
    NanoCpus = math_floor(cpus * 1e9),
    PidsLimit = math_floor(pids),
    Ulimits = {
      { Name = "nofile", Soft = ulimits.nofile or D.nofile, Hard = ulimits.nofile or D.nofile },
      { Name = "fsize", Soft = fsize, Hard = fsize },
    },
    Runtime = opts.runtime,
  }
  return config, host
end

return _M
