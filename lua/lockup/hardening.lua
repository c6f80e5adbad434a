-- The secure defaults of a box, and the container configuration built from
-- docker:start's options. A user who writes `docker:start{ image = ... }` and
-- nothing else gets every limit below; each has a named option to change it.
local unsafe = require "lockup.unsafe"

local type, error, tostring, pairs, ipairs, tonumber = type, error, tostring, pairs, ipairs, tonumber
local string_format, math_floor, math_huge = string.format, math.floor, math.huge

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

_M.PODMAN_NPROC = 32768 -- RLIMIT_NPROC on Podman (see _M.container)
local PODMAN_READ_ONLY_TMPFS = { "/run", "/var/tmp" } -- see _M.container

-- Raises `err`, if any, at the user's level (need -> container ->
-- lifecycle.start, which docker:start tail-calls -> the user's code).
local function need(v, err)
  if err then error(err, 4) end
  return v
end

local function whole(v) return v == math_floor(v) end

-- Docker reads 0 (and -1) as "no limit" for memory, CPUs, processes and a
-- tmpfs's size, so a value that reaches the container's config as 0 ("0m",
-- pids = 0.5, cpus = 1e-10) would quietly remove the limit it names. A limit
-- is checked as it will be sent, after rounding (`sent`), against the least
-- value that keeps it a limit and that the Engine accepts; NaN and infinities
-- never pass. Returns sent, or nil, err.
local function at_least(name, given, sent, least, shown)
  if sent >= least and sent < math_huge then return sent end -- NaN fails the first test
  local why = ""
  if sent == sent and sent <= 0 then
    why = string_format(", which the container's config would get as %s: no limit at all to Docker",
      sent < 0 and "a negative number" or "0")
  end
  return nil, string_format("bad option '%s' to 'start' (at least %s expected, got %s%s)", name, shown,
    type(given) == "string" and string_format("%q", given) or tostring(given), why)
end

-- "512m", "1g", "64k" or a whole number of bytes, at least `least` (written
-- `shown`). Returns the number of bytes, or nil, err.
local function bytes(v, name, least, shown)
  local n
  if type(v) == "number" and (v ~= v or whole(v)) then
    n = v
  elseif type(v) == "string" then
    local digits, unit = v:lower():match("^(%d+)([kmg]?)b?$")
    n = digits and tonumber(digits) * (unit == "k" and 1024 or unit == "m" and MiB or unit == "g" and 1024 * MiB or 1)
  end
  if not n then
    return nil, string_format("bad option '%s' to 'start' (a size such as 512m or 1g, or a whole number of bytes, "
      .. "expected, got %s)", name, tostring(v))
  end
  return at_least(name, v, n, least, shown)
end

-- A number of processes or files: a whole number, at least `least`.
local function count(v, name, least)
  if type(v) ~= "number" or (v == v and not whole(v)) then
    return nil, string_format("bad option '%s' to 'start' (a whole number, at least %d, expected, got %s)",
      name, least, tostring(v))
  end
  return at_least(name, v, v, least, tostring(least))
end

-- CPUs as Docker's NanoCpus. The kernel's smallest CFS quota (1 ms of each
-- 100 ms period Docker uses) is a hundredth of a CPU; below it the container
-- fails to start, and below a billionth it would get no limit at all.
local function nano_cpus(v)
  return at_least("cpus", v, math_floor(v * 1e9 + 0.5), 1e7, "0.01")
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
-- code through the shell anyway. Podman (4.3) refuses uid= and gid= ("unknown
-- mount option"); its own option U chowns the mount to the container's
-- user, which is the same owner here (the User field is this very uid:gid).
local function tmpfs_options(user, size, engine)
  local uid, gid = tostring(user):match("^(%d+):?(%d*)$")
  local owner = uid and (engine == "podman" and ",U,mode=0700"
    or string_format(",uid=%s,gid=%s,mode=0700", uid, gid ~= "" and gid or uid)) or ",mode=1777"
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

-- The writable tmpfs mounts of a box, given its HostConfig, sorted.
function _M.tmpfs(host)
  local list = {}
  for path, o in pairs(host.Tmpfs) do
    if o:sub(1, 3) ~= "ro," then list[#list + 1] = path end -- Podman's, made read-only (_M.container)
  end
  table.sort(list)
  return list
end

-- Every path a box has something mounted on (tmpfs and volumes), given its
-- HostConfig, sorted.
function _M.mount_points(host)
  local list = {}
  for path in pairs(host.Tmpfs) do list[#list + 1] = path end
  for _, b in ipairs(host.Binds or {}) do list[#list + 1] = b:match("^[^:]*:([^:]*)") end
  table.sort(list)
  return list
end

-- The mounts a box can write to, given its HostConfig: the tmpfs mounts and
-- the writable volumes (with a writable root filesystem, the rest too).
function _M.writable(host)
  local list = _M.tmpfs(host)
  for _, b in ipairs(host.Binds or {}) do
    local target = b:match("^[^:]*:([^:]*):rw$")
    if target then list[#list + 1] = target end
  end
  table.sort(list)
  return list
end

-- Returns the fields of a create request that hardening decides: the Config
-- part (User, WorkingDir, NetworkDisabled) and the HostConfig. `client`: the
-- unix socket this client reaches the Engine through, if any; `engine`:
-- "docker" or "podman" (docker.engine_of).
function _M.container(opts, client, engine)
  local D = _M.DEFAULTS
  local user = opts.user or D.user
  local workdir = opts.workdir or D.workdir
  local network = opts.network or D.network
  local read_only = opts.read_only
  if read_only == nil then read_only = D.read_only end
  local disk = opts.disk and need(bytes(opts.disk, "disk", 1, "1 byte")) or D.disk
  -- Docker refuses less than 6 MiB ("Minimum memory limit allowed is 6MB").
  local memory = opts.memory and need(bytes(opts.memory, "memory", 6 * MiB, "6m")) or D.memory
  local nano = need(nano_cpus(opts.cpus or D.cpus))
  local pids = opts.pids and need(count(opts.pids, "pids", 1)) or D.pids
  local ulimits = opts.ulimits or {}
  for k in pairs(ulimits) do
    if k ~= "nofile" and k ~= "fsize" then
      error("bad option 'ulimits' to 'start' ({ nofile = n, fsize = bytes } expected)", 3)
    end
  end
  local nofile = ulimits.nofile and need(count(ulimits.nofile, "ulimits.nofile", 1)) or D.nofile
  local fsize = ulimits.fsize and need(bytes(ulimits.fsize, "ulimits.fsize", 1, "1 byte")) or D.fsize

  local mounts = {}
  for _, path in ipairs(string_list(opts.tmpfs, "tmpfs") or { "/tmp", workdir }) do
    mounts[path] = tmpfs_options(user, disk, engine)
  end
  local cap_add = string_list(opts.cap_add, "cap_add")
  local security_opt = { "no-new-privileges" }
  for _, s in ipairs(string_list(opts.security_opt, "security_opt") or {}) do security_opt[#security_opt + 1] = s end
  local volumes = binds(opts.volumes)
  need(unsafe.check(opts, client))

  -- With a read-only root, Podman mounts writable tmpfs of its own, without
  -- a size, at /run and /var/tmp (its read_only_tmpfs, which its Docker API
  -- cannot turn off) where nothing else is mounted: read-only ones there keep
  -- the box's writable places those it was given, as with Docker.
  if engine == "podman" and read_only then
    local taken = {}
    for _, b in ipairs(volumes or {}) do taken[b:match("^[^:]*:([^:]*)")] = true end
    for _, path in ipairs(PODMAN_READ_ONLY_TMPFS) do
      if not mounts[path] and not taken[path] then mounts[path] = "ro,nosuid,nodev,noexec,size=64k" end
    end
  end

  local config = { User = user, WorkingDir = workdir, NetworkDisabled = not network }
  local host = {
    AutoRemove = true,
    NetworkMode = network and "default" or "none",
    LogConfig = { Type = "none", Config = {} }, -- output is ours alone, never on the daemon's disk
    ReadonlyRootfs = read_only,
    Tmpfs = mounts,
    Binds = volumes,
    CapDrop = { "ALL" },
    CapAdd = cap_add,
    SecurityOpt = security_opt,
    Memory = memory,
    MemorySwap = memory,
    NanoCpus = nano,
    PidsLimit = pids,
    Ulimits = {
      { Name = "nofile", Soft = nofile, Hard = nofile },
      { Name = "fsize", Soft = fsize, Hard = fsize },
    },
    Runtime = opts.runtime,
  }
  if engine == "podman" then
    -- Given any ulimits, Podman adds RLIMIT_NPROC at 1048576 unless told
    -- otherwise, and runc fails to start the box ("error setting rlimit type
    -- 6: operation not permitted") where root cannot raise a hard limit (no
    -- CAP_SYS_RESOURCE). Docker leaves it as dockerd's. 32768, the kernel's
    -- default pid_max, is what Podman's own service got here; the box's
    -- processes are bounded by `pids` (a cgroup) anyway, while this one counts
    -- every process of the box's uid on the host, so it must stay generous.
    host.Ulimits[3] = { Name = "nproc", Soft = _M.PODMAN_NPROC, Hard = _M.PODMAN_NPROC }
  end
  return config, host
end

return _M
