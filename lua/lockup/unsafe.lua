-- What docker:start refuses unless `unsafe = { ... }` names its kind:
-- options that would hand the box part of the host. Volumes of its system
-- directories or of a container engine's socket (each host path read as
-- Docker reads it and as the kernel would follow it), capabilities beyond
-- Docker's default set, security options that turn a confinement off.
local core = require "lockup.core"
local fifo = require "lockup.lane.fifo"
local sorted_keys = require("lockup.options").sorted_keys

local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local string_format, table_concat = string.format, table.concat
local os_getenv = os.getenv

local _M = {}

-- Options that would hand the box part of the host are refused unless the
-- caller names their kind in `unsafe = { ... }`; each name lets one kind through.
_M.KINDS = {
  sockets = "volumes of a unix socket, or of a directory holding a container engine's socket",
  host_paths = "volumes of the host's system directories (/, /etc, /proc, /sys, /dev, /usr, /var/lib/docker, ...)",
  capabilities = "cap_add beyond Docker's default set, or ALL",
  unconfined = "security_opt that turns a confinement off (seccomp, AppArmor, SELinux labels, masked paths, "
    .. "no-new-privileges, read-only cgroups)",
}

-- The set of names in an `unsafe` list, each one of `kinds` (a table of
-- name = what it lets through), or nil, err naming the option of `fname`.
-- start and connect both take one (connect's kinds: lockup.docker).
function _M.set(list, kinds, fname)
  local set = {}
  for k, name in pairs(list or {}) do
    if type(k) ~= "number" or not kinds[name] then
      local got = type(name) == "string" and string_format("'%s'", name) or tostring(name)
      return nil, string_format("bad option 'unsafe' to '%s' (a list of names out of %s expected, got %s)",
        fname, table_concat(sorted_keys(kinds), ", "), got)
    end
    set[name] = true
  end
  return set
end

-- The error for an option refused as `kind`: which option, why, and the name
-- that lets it through.
local function refused(option, why, kind)
  return nil, string_format("bad option '%s' to 'start' (%s; if the box must have it, give unsafe = { \"%s\" })",
    option, why, kind)
end

-- `path` with "//", "." and ".." worked out as text, without a trailing "/".
local function lexical(path)
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then parts[#parts] = nil
    elseif part ~= "." then parts[#parts + 1] = part end
  end
  return "/" .. table_concat(parts, "/")
end

-- `path` as the kernel would follow it: the longest part of it that exists
-- through realpath (symlinks, then ".."), the rest, which Docker would create,
-- added as text.
local function resolved(path)
  local head, tail = path, nil
  while true do
    local real = core.realpath(head)
    if real then return lexical(tail and (real .. "/" .. tail) or real) end
    local parent, last = head:match("^(.*)/([^/]*)$")
    head, tail = parent ~= "" and parent or "/", tail and (last .. "/" .. tail) or last
  end
end

-- Both readings of a host path: Docker's (as text) and the kernel's.
local function readings(path)
  local a, b = lexical(path), resolved(path)
  return a == b and { a } or { a, b }
end

local function inside(path, dir)
  if dir == "/" then return path ~= "/" end
  return path:sub(1, #dir + 1) == dir .. "/"
end

-- How host path p stands to the protected path t, or nil when apart.
local function relation(p, t)
  if p == t then return "is" end
  if inside(p, t) then return "is inside" end
  if inside(t, p) then return "holds" end
  return nil
end

-- The host's system directories: read, they leak its secrets (/etc/shadow,
-- /root, other containers' files in /var/lib/docker, /proc of host
-- processes); written, they take it over (its programs, its boot, the
-- kernel's controls in /proc and /sys, its devices). A volume that is one,
-- lies inside one or holds one (/, /var) is refused; so is the parent of the
-- fifo lanes' directories, which holds every box's FIFOs.
local HOST_PATHS = {
  "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/sbin", "/sys", "/usr",
  "/var/lib/containerd", "/var/lib/containers", "/var/lib/docker", "/var/lib/kubelet",
}

-- Where container engines listen: a box that can connect to one can start a
-- container with the host's / mounted, so it is root on the host.
local ENGINE_SOCKETS = {
  "/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock",
  "/run/crio/crio.sock", "/run/buildkit/buildkitd.sock",
}

-- The engine sockets on this host: the known places, the one lockup talks
-- to (`client`), DOCKER_HOST's and the user's runtime directory's.
local function engine_sockets(client)
  local list = {}
  for _, path in ipairs(ENGINE_SOCKETS) do list[#list + 1] = path end
  list[#list + 1] = client
  list[#list + 1] = (os_getenv("DOCKER_HOST") or ""):match("^unix://(/.+)$")
  local runtime = os_getenv("XDG_RUNTIME_DIR")
  if runtime and runtime:sub(1, 1) == "/" then
    list[#list + 1] = runtime .. "/docker.sock"
    list[#list + 1] = runtime .. "/podman/podman.sock"
  end
  return list
end

-- Why volume `given` (read as `p`) reaches one of `protected`, or nil.
local function reaches(given, p, protected, what)
  for _, t in ipairs(protected) do
    for _, tp in ipairs(readings(t)) do
      local rel = relation(p, tp)
      if rel then
        local shown = given == p and given or string_format("%s (%s)", given, p)
        return string_format("%s %s %s %s", shown, rel, what, tp)
      end
    end
  end
  return nil
end

local SYSTEM_WHY = "the host's system directories hold its secrets, its programs and the kernel's controls: "
  .. "read, they leak; written, they hand over the host"
local SOCKET_WHY = "a box connects to a socket even through a read-only mount, and through a container "
  .. "engine's socket it is root on the host"

-- Refuses a volume whose host path hands over part of the host; true or nil, err.
-- Sockets first: an engine's socket hands over the host most directly.
local function check_volume(given, allowed, sockets)
  local host_paths = {}
  for _, path in ipairs(HOST_PATHS) do host_paths[#host_paths + 1] = path end
  host_paths[#host_paths + 1] = fifo.parent()
  for _, p in ipairs(readings(given)) do
    if not allowed.sockets then
      local st = core.lstat(p, true)
      local why = st and st.type == "socket" and (given .. " is a unix socket")
        or reaches(given, p, sockets, "the engine socket")
      if why then return refused("volumes", why .. ": " .. SOCKET_WHY, "sockets") end
    end
    local why = not allowed.host_paths and reaches(given, p, host_paths, "the host's")
    if why then return refused("volumes", why .. ": " .. SYSTEM_WHY, "host_paths") end
  end
  return true
end

-- Docker's default capabilities: those `docker run` gives a container
-- unasked, and the only ones cap_add gives back without unsafe. Any other is
-- one Docker itself withholds because it reaches past the container.
local DOCKER_CAPS = {
  AUDIT_WRITE = true, CHOWN = true, DAC_OVERRIDE = true, FOWNER = true, FSETID = true, KILL = true, MKNOD = true,
  NET_BIND_SERVICE = true, NET_RAW = true, SETFCAP = true, SETGID = true, SETPCAP = true, SETUID = true,
  SYS_CHROOT = true,
}
local CAP_WHY = {
  ALL = "every capability: a root box with them is as good as --privileged",
  SYS_ADMIN = "mount, namespaces and many kernel controls: the classic container escape",
  SYS_PTRACE = "tracing the processes it sees: reading and changing their memory",
  SYS_MODULE = "loading code into the host's kernel",
  DAC_READ_SEARCH = "open_by_handle_at: reading any file on the host's filesystems",
  NET_ADMIN = "control of network interfaces, routes and firewalls",
  SYS_RAWIO = "raw I/O to ports and devices",
  SYS_TIME = "setting the host's clock",
  SYS_RESOURCE = "raising its own limits past the box's",
  BPF = "loading BPF programs into the host's kernel",
}

-- Refuses a capability beyond Docker's default set; true or nil, err.
local function check_capability(cap)
  local name = cap:upper():gsub("^CAP_", "")
  if DOCKER_CAPS[name] then return true end
  return refused("cap_add", string_format("%s (%s) is not in Docker's default set (%s)", cap,
    CAP_WHY[name] or "a power Docker withholds from containers", table_concat(sorted_keys(DOCKER_CAPS), ", ")),
    "capabilities")
end

local FALSE, TRUE = { ["0"] = true, f = true, ["false"] = true }, { ["1"] = true, t = true, ["true"] = true }

-- What a security_opt entry switches off, as Docker reads it ("key=value",
-- or the older "key:value"), or nil when it confines no less.
local function unconfined_why(entry)
  local key, value = entry:match("^%s*([^=:]-)%s*[=:]%s*(.-)%s*$")
  key, value = (key or entry):lower(), (value or ""):lower()
  if key == "seccomp" and value == "unconfined" then
    return "the seccomp filter: every system call, those of container escapes too, reaches the kernel"
  elseif key == "apparmor" and value == "unconfined" then
    return "AppArmor confinement"
  elseif key == "label" and value == "disable" then
    return "SELinux separation"
  elseif key == "systempaths" and value == "unconfined" then
    return "the masks Docker puts on /proc and /sys paths (kcore, sysrq-trigger, ...)"
  elseif key == "no-new-privileges" and FALSE[value] then
    return "no-new-privileges, which lockup sets: setuid programs could gain privileges again"
  elseif key == "writable-cgroups" and TRUE[value] then
    return "read-only cgroups: the box could change its own limits"
  end
  return nil
end

-- Refuses a security_opt entry that turns a confinement off; true or nil, err.
local function check_security_opt(entry)
  local off = unconfined_why(entry)
  if not off then return true end
  return refused("security_opt", string_format("%q turns off %s", entry, off), "unconfined")
end

-- Refuses what would hand the box part of the host unless `unsafe` names
-- its kind; `client` is the socket lockup talks to. True, or nil, err for the
-- first option refused.
function _M.check(opts, client)
  local allowed, err = _M.set(opts.unsafe, _M.KINDS, "start")
  if not allowed then return nil, err end
  local sockets = engine_sockets(client)
  for _, host_path in ipairs(sorted_keys(opts.volumes or {})) do
    local ok, why = check_volume(host_path, allowed, sockets)
    if not ok then return nil, why end
  end
  for _, cap in ipairs(allowed.capabilities and {} or opts.cap_add or {}) do
    local ok, why = check_capability(cap)
    if not ok then return nil, why end
  end
  for _, entry in ipairs(allowed.unconfined and {} or opts.security_opt or {}) do
    local ok, why = check_security_opt(entry)
    if not ok then return nil, why end
  end
  return true
end

return _M
