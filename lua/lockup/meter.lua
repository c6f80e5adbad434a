-- What a call cost the box: CPU time (user, system) and the memory
-- high-water mark of everything in the container while the call ran, read
-- where the box cannot forge them (README.md, "What a call cost").
--
-- A meter has begin(), used() (CPU seconds since begin, or nil), finish(r)
-- (the figures into the result r), close(), and the fields `source` and
-- `every` (how often a CPU limit may be looked at). Two sources:
--  * "cgroup": where the Engine runs on this host, the container's cgroup
--    here, a lockup.core cgroup (v1 cpuacct.stat and memory, or v2 cpu.stat
--    and memory.peak) with its files kept open: four syscalls a call. The peak
--    is reset as each call begins (v1: memory.max_usage_in_bytes; v2:
--    memory.peak through lockup's own descriptor, Linux 6.12+), so it is the
--    call's own.
--  * "engine" (accounting = "engine", for an Engine elsewhere): its stats
--    API, a request before the call and one after: CPU time only (the stats
--    have no peak that can be reset), and slow: dockerd samples once a
--    second, so each request waits up to a second (1.0 s measured, Docker
--    20.10). That is why lockup never falls back to it on its own.
local core = require "lockup.core"

local setmetatable, type, math_max = setmetatable, type, math.max
local string_format = string.format
local now = core.monotime

local _M = {}

local REQUEST_TIMEOUT = 5 -- seconds for the Engine's inspect and stats

-- The container's cgroup on this host (core.cgroup), or nil. The Engine
-- gives the pid of the container's first process; /proc/PID/cgroup here
-- names its cgroups. A path that does not hold the container's id is not the
-- container's (an Engine on another machine: that pid is someone else here).
local function host_cgroup(box)
  local status, info = box.docker:request("GET", "/containers/" .. box.id .. "/json",
    { deadline = now() + REQUEST_TIMEOUT })
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
    local cg = core.cgroup(1, v1.cpuacct .. "/cpuacct.stat", v1.memory and (v1.memory .. "/memory.max_usage_in_bytes"))
    if cg then return cg end
  end
  if v2 then
    local dir = "/sys/fs/cgroup" .. v2
    return core.cgroup(2, dir .. "/cpu.stat", dir .. "/memory.peak") or nil
  end
  return nil
end

-- The container's CPU seconds so far, user and system, from the Engine's
-- stats (the kernel's tick-based split), or nil.
local function engine_cpu(box)
  local status, stats = box.docker:request("GET", "/containers/" .. box.id .. "/stats",
    { query = { stream = "false", ["one-shot"] = "true" }, deadline = now() + REQUEST_TIMEOUT })
  local usage = status and type(stats) == "table" and type(stats.cpu_stats) == "table" and stats.cpu_stats.cpu_usage
  if type(usage) ~= "table" then return nil end
  local u, s = usage.usage_in_usermode, usage.usage_in_kernelmode
  if type(u) ~= "number" or type(s) ~= "number" then return nil end
  return u / 1e9, s / 1e9
end

local Engine = { source = "engine", every = 1 }
local engine_mt = { __index = Engine, __name = "lockup.meter" }

function Engine:begin()
  self.user, self.sys = engine_cpu(self.box)
end

function Engine:used()
  local u, s = engine_cpu(self.box)
  if not u or not self.user then return nil end
  return u - self.user + s - self.sys
end

function Engine:finish(r)
  local u, s = engine_cpu(self.box)
  if u and self.user then r.cpu_user, r.cpu_sys = math_max(0, u - self.user), math_max(0, s - self.sys) end
  self.user, self.sys = nil, nil
end

function Engine.close() end

-- A box's meter (`how`: start's `accounting`: nil or true, the cgroup on
-- this host; "engine", the Engine's stats), or false when there is none:
-- accounting = false, or the source could not be read (an Engine elsewhere).
function _M.open(box, how)
  if how == false then return false end
  if how ~= "engine" then return host_cgroup(box) or false end
  if not engine_cpu(box) then return false end
  return setmetatable({ box = box }, engine_mt)
end

return _M
