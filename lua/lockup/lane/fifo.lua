-- The fifo lane, for an engine on this host: the session shell reads the FIFO
-- `in` and writes `out` and `err`, and the lifeline watches `life`, in a
-- per-box directory on the host that is bind-mounted read-only at MOUNT in
-- the box. No byte goes through dockerd, so a step costs close to what a
-- shell over pipes on the host costs. Who may open what is fifo.c's business
-- (see src/fifo.h); this module places the directories, says whether an
-- engine can use the lane at all, and removes what a killed process left
-- behind.
local core = require "lockup.core"
local scheduler = require "lockup.scheduler"

local setmetatable, type, tostring, tonumber, ipairs, next = setmetatable, type, tostring, tonumber, ipairs, next
local string_format = string.format
local wait_any = scheduler.wait_any

local _M = { name = "fifo" }

_M.MOUNT = "/.lockup"
local TOKEN_BYTES = 16 -- a lane directory's name: <pid>-<32 hex digits>

-- The private parent of this user's lane directories (mode 0700, checked).
function _M.parent()
  local uid = core.geteuid()
  if uid == 0 then return "/run/lockup" end
  local runtime = os.getenv("XDG_RUNTIME_DIR")
  if runtime and runtime:sub(1, 1) == "/" then return runtime .. "/lockup" end
  return "/tmp/lockup-" .. uid
end

-- The box's numeric uid and gid from start's `user`, or nil for a name: the
-- FIFOs must belong to the box's uid, and only the image knows a name's.
function _M.ids(user)
  if user == "root" then return 0, 0 end
  local uid, gid = tostring(user):match("^(%d+):?(%d*)$")
  if not uid then return nil end
  return tonumber(uid), tonumber(gid ~= "" and gid or uid)
end

local Lane = {}
local lane_mt = { __index = Lane, __name = "lockup.lane.fifo" }
function lane_mt.__tostring(self) return "lockup.lane.fifo (" .. self.dir .. ")" end

-- Before create: the lane directory for a box running as `user`. Returns the
-- lane (lane.bind is the Binds entry that mounts it), or nil, err.
function _M.open(user)
  local uid, gid = _M.ids(user)
  if not uid then
    return nil, string_format("lane 'fifo' needs a numeric user (uid or uid:gid) or root, got '%s': "
      .. "the lane's FIFOs must belong to the box's uid; give user = \"uid:gid\", or lane = \"attach\"",
      tostring(user))
  end
  local parent = _M.parent()
  local ok, err = core.fifo_parent(parent)
  if not ok then return nil, "lane 'fifo': " .. err end
  local dir = parent .. "/" .. core.getpid() .. "-" .. core.random_hex(TOKEN_BYTES)
  local fifo
  fifo, err = core.fifo(dir, uid, gid)
  if not fifo then return nil, "lane 'fifo': " .. err end
  local input, out, errs = fifo:fds()
  local r = { { out, "r" }, { errs, "r" }, { out, "r", errs, "r" } } -- by what the pump waits for
  local rw = {}
  for i, list in ipairs(r) do
    rw[i] = { input, "w" }
    for j = 1, #list do rw[i][j + 2] = list[j] end
  end
  return setmetatable({
    fifo = fifo, dir = dir, bind = dir .. ":" .. _M.MOUNT .. ":ro", sets = { r = r, rw = rw },
  }, lane_mt)
end

function Lane:send(data, from) return self.fifo:send(data, from) end
-- Asks PID 1 to kill the steps' processes (lockup.session): a word on `life`.
function Lane:poke() return self.fifo:poke() end

-- Reads both FIFOs; when it would block, remembers which still owe bytes
-- this step (one whose sentinel came has no more to say).
function Lane:pump(stream)
  local st, waiting = stream:pump(self.fifo)
  self.waiting = st == false and waiting or nil
  return st, waiting
end

-- Waits for the FIFOs that owe bytes ("r"), or those or room in `in` ("rw").
function Lane:wait(want, deadline)
  return wait_any(self.sets[want][self.waiting or 3], deadline)
end

-- The shell has answered once: it holds out and err, so their EOF now means
-- that it is gone.
function Lane:answered() self.fifo:answered() end
-- Nothing to read from out or err, not even their end (a pooled box's check).
function Lane:idle() return next(core.poll(self.sets.r[3], 0)) == nil end
function Lane:close() self.fifo:close() end

-- Whether the fifo lane can work with the engine `d`: nil, why when it
-- cannot. It needs a unix socket, a daemon that maps no users (rootless or
-- userns-remap: the box's uid would not be the FIFOs' owner), and one that
-- sees this host's files: a bind source that does not exist must be refused,
-- and a directory made here must be found. Two creates that cannot succeed
-- (the image does not exist; on Podman, the name is not one) tell which; no
-- container is made.
function _M.usable(d)
  if not d.socket then return nil, "the Engine at " .. d.endpoint .. " is reached over TCP (a remote engine)" end
  local status, info = d:request("GET", "/info")
  if not status then return nil, "asking the Engine: " .. tostring(info) end
  for _, o in ipairs(type(info) == "table" and info.SecurityOptions or {}) do
    local name = tostring(o):match("name=(%w+)")
    if name == "rootless" or name == "userns" then
      return nil, "the Docker daemon runs " .. (name == "rootless" and "rootless" or "with userns-remap")
        .. ": the box's uid is not the host's"
    end
  end
  local parent = _M.parent()
  local ok, err = core.fifo_parent(parent)
  if not ok then return nil, err end
  local seen = parent .. "/probe-" .. core.random_hex(TOKEN_BYTES)
  local function probe(source)
    local _, msg = d:request("POST", "/containers/create", { body = {
      Image = "lockup-lane-probe:" .. core.random_hex(8),
      HostConfig = { Mounts = { { Type = "bind", Source = source, Target = "/probe", ReadOnly = true } } },
    } })
    msg = tostring(msg)
    return msg:find("bind source path does not exist", 1, true) and "missing"
      or msg:find("No such image", 1, true) and "found" or msg
  end
  if d.engine == "podman" then
    -- Podman looks the image up before the mounts, and never checks a bind
    -- source at create. Its own API can make a container of a host
    -- directory (rootfs), which it stats first; a name it refuses comes next.
    probe = function(source)
      local _, msg = d:request("POST", "/v4.0.0/libpod/containers/create", { unversioned = true, body = {
        rootfs = source, command = { "true" }, name = "-lockup-lane-probe-",
      } })
      msg = tostring(msg)
      return msg:find("stat " .. source .. ": no such file", 1, true) and "missing"
        or msg:find("names must match", 1, true) and "found" or msg
    end
  end
  local missing = probe(seen)
  ok, err = core.mkdir(seen)
  if not ok then return nil, err end
  local found = probe(seen)
  core.rmdir(seen)
  if missing == "missing" and found == "found" then return true end
  if missing == "missing" and found == "missing" then
    return nil, "the Engine does not see this host's files (a socket forwarded from another machine, or a VM)"
  end
  return nil, "could not tell whether the Engine sees this host's files (" .. missing .. "; " .. found .. ")"
end

-- Removes the lane directories whose process is gone (killed before it could
-- clean up); nothing else under the parent is touched. Returns how many.
function _M.prune()
  local parent = _M.parent()
  local names = core.listdir(parent)
  local removed = 0
  for _, name in ipairs(names or {}) do
    local pid, token = name:match("^(%d+)%-(%x+)$")
    if pid and #token == 2 * TOKEN_BYTES and not core.pid_alive(tonumber(pid))
      and core.fifo_remove(parent .. "/" .. name) then
      removed = removed + 1
    end
  end
  return removed
end

return _M
