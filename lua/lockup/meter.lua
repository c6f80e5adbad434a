-- What a call cost the box: CPU time (user, system) and the memory
-- high-water mark of everything in the container while the call ran, read
-- where the box cannot forge them (README.md, "What a step cost").
--
-- Where the Engine runs on this host, from the container's cgroup here
-- (lockup.core cgroup: v1 cpuacct and memory, or v2 cpu.stat and
-- memory.peak), its files kept open: a few pread(2)s a call. The peak is
-- reset as each call begins (v1: memory.max_usage_in_bytes; v2: memory.peak
-- through lockup's own descriptor, Linux 6.12+): it is the call's own. Where
-- the Engine is elsewhere (or asked for), from its stats API, one request
-- before and one after: CPU time only, as the stats have no peak that can be
-- reset.
local core = require "lockup.core"

local setmetatable, type, math_max, math_min = setmetatable, type, math.max, math.min
local string_format = string.format
local now = core.monotime

local _M = {}

local Meter = {}
local meter_mt = { __index = Meter, __name = "lockup.meter" }

-- How often a CPU limit is checked at most: the cgroup's files cost
-- microseconds, the Engine's stats a request.
local CHECK_CGROUP, CHECK_ENGINE = 0.005, 0.05
local NCPUS = core.ncpus()
local INSPECT_TIMEOUT = 5

-- The container's cgroup on this host (core.cgroup), or nil. The Engine
-- gives the pid of the container's first process; /proc/PID/cgroup here
-- names its cgroups. A path that does not hold the container's id is not the
-- container's (an Engine on another machine: that pid is someone else here).
local function host_cgroup(box)
  local status, info = box.docker:request("GET", "/containers/" .. box.id .. "/json",
    { deadline = now() + INSPECT_TIMEOUT })
  local pid = status and type(info) == "table" and type(info.State) == "table" and info.State.Pid
  if type(pid) ~= "number" or pid <= 0 then return nil end
  local f = io.open(string_format("/proc/%d/cgroup", pid))
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local v1, v2 = {}, nil
  for controllers, path in text:gmatch("%d+:([^:\n]*):([^\n]*)") do
    if path:find(box.id, 1, true) then
      if controllers == "" then v2 = path end
      for c in controllers:gmatch("[^,]+") do v1[c] = "/sys/fs/cgroup/" .. controllers .. path end
    end
  end
  if v1.cpuacct then
    local cg = core.cgroup(1, v1.cpuacct .. "/cpuacct.usage_user", v1.cpuacct .. "/cpuacct.usage_sys",
      v1.memory and (v1.memory .. "/memory.max_usage_in_bytes"))
    if cg then return cg end
  end
  if v2 then
    local dir = "/sys/fs/cgroup" .. v2
    return core.cgroup(2, dir .. "/cpu.stat", nil, dir .. "/memory.peak") or nil
  end
  return nil
end

-- The container's CPU seconds so far, user and system, from the Engine's
-- stats (the kernel's tick-based split: 1/USER_HZ steps), or nil.
local function engine_cpu(box, deadline)
  local status, stats = box.docker:request("GET", "/containers/" .. box.id .. "/stats",
    { query = { stream = "false", ["one-shot"] = "true" }, deadline = deadline })
  local usage = status and type(stats) == "table" and type(stats.cpu_stats) == "table" and stats.cpu_stats.cpu_usage
  if type(usage) ~= "table" then return nil end
  local u, s = usage.usage_in_usermode, usage.usage_in_kernelmode
  if type(u) ~= "number" or type(s) ~= "number" then return nil end
  return u / 1e9, s / 1e9
end

-- A box's meter (`how`: start's `accounting`: nil or true, lockup's choice;
-- "engine", the Engine's stats even where the cgroup could be read), or
-- false when there is none: accounting = false, or neither source answers.
function _M.open(box, how)
  if how == false then return false end
  if how ~= "engine" then
    local cg = host_cgroup(box)
    if cg then return setmetatable({ cgroup = cg, source = "cgroup", every = CHECK_CGROUP }, meter_mt) end
  end
  if not engine_cpu(box, now() + INSPECT_TIMEOUT) then return false end
  return setmetatable({ box = box, source = "engine", every = CHECK_ENGINE }, meter_mt)
end

-- CPU seconds so far (user, system) and the peak since begin, or nil.
function Meter:read(deadline)
  if self.cgroup then return self.cgroup:sample() end
  return engine_cpu(self.box, deadline)
end

-- A call begins: the CPU counts now, and the peak starts afresh.
function Meter:begin(deadline)
  if self.cgroup then
    self.user, self.sys = self.cgroup:begin()
  else
    self.user, self.sys = engine_cpu(self.box, deadline)
  end
end

-- CPU seconds spent since begin, or nil when it cannot be read.
function Meter:used(deadline)
  local u, s = self:read(deadline)
  if not u or not self.user then return nil end
  return u - self.user + s - self.sys
end

-- When to look again at a call's CPU time against `limit` (seconds): the
-- soonest the box could have spent the rest, on every CPU of the host.
function Meter:check_at(limit, deadline)
  local left = limit - (self:used(deadline) or 0)
  return math_min(deadline, now() + math_max(self.every, left / NCPUS))
end

-- The call ended: its figures into the result r (none that cannot be read:
-- the box gone, or a figure this source does not have).
function Meter:finish(r, deadline)
  local u, s, peak = self:read(deadline)
  if u and self.user then
    r.cpu_user, r.cpu_sys = math_max(0, u - self.user), math_max(0, s - self.sys)
  end
  r.memory_peak = peak
  self.user, self.sys = nil, nil
end

function Meter:close()
  if self.cgroup then self.cgroup:close() end
end

return _M
