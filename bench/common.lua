-- bench/common.lua: what bench/latency.lua and bench/concurrency.lua share (the
-- `machine:` line, the `leftover containers:` line, percentiles, tables).
-- Each script puts its own directory on package.path and does require "common".
local lockup = require "lockup"
local core = require "lockup.core"
local lifecycle = require "lockup.lifecycle"

local fmt = string.format

local M = {}

-- Runs a shell command line (stderr too); returns its output and io.popen's close results.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, ok, how, code
end

-- The output of a shell command line, without trailing white space.
local function sh_trim(cmd)
  return (M.sh(cmd):gsub("%s+$", ""))
end

-- Percentile p (0..1) of a sorted list, linear interpolation between ranks.
function M.pct(sorted, p)
  local n = #sorted
  if n == 1 then return sorted[1] end
  local x = 1 + (n - 1) * p
  local lo = math.floor(x)
  local hi = math.min(lo + 1, n)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo)
end

-- Prints rows (lists of strings) as an aligned table; columns after the first
-- are right-aligned, except the last (free text).
function M.print_table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #cell) end
  end
  for r, row in ipairs(rows) do
    local out = {}
    for i, cell in ipairs(row) do
      if i == 1 then out[i] = cell .. string.rep(" ", widths[i] - #cell)
      elseif i == #row then out[i] = cell
      else out[i] = string.rep(" ", widths[i] - #cell) .. cell end
    end
    print("  " .. table.concat(out, "  "))
    if r == 1 then
      local rule = {}
      for i = 1, #widths do rule[i] = string.rep("-", widths[i]) end
      print("  " .. table.concat(rule, "  "))
    end
  end
end

-- A box killed from outside (another process's prune{ all = true }, as the
-- specs run it, or docker rm -f) ends its command with 137, or an exec with 126.
M.KILLED_HINT = {
  [137] = " (SIGKILL: was the box removed from outside, e.g. by prune{ all = true } in a concurrent `make check`?)",
  [126] = " (the exec could not run: was the box removed from outside, e.g. by a concurrent `make check`?)",
}

-- Prints the `machine:` line: the host and the Docker server that `docker`
-- (a lockup.connect() client) talks to.
function M.print_machine(docker)
  local ver = assert(docker:version())
  local cpu_model = sh_trim("sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1")
  print(fmt("machine: nproc=%s (%s); docker server %s (API %s, negotiated %s), %s/%s, kernel %s; loadavg %s; %s; %s",
    sh_trim("nproc"), cpu_model ~= "" and cpu_model or "cpu model unknown", tostring(ver.Version),
    tostring(ver.ApiVersion), tostring(docker.api_version), tostring(ver.Os), tostring(ver.Arch),
    tostring(ver.KernelVersion), sh_trim("cut -d' ' -f1-3 /proc/loadavg"), _VERSION, lockup._VERSION))
end

-- Prints the `leftover containers:` line (with the time since t_all, a
-- core.monotime reading) and returns how many of them are this process's.
function M.report_leftovers(t_all)
  local mine = M.sh(fmt("docker ps -aq --filter label=%s=%s", lifecycle.OWNER_LABEL, lifecycle.owner()))
  local any = M.sh(fmt("docker ps -aq --filter label=%s", lifecycle.OWNER_LABEL))
  local n_mine, n_any = select(2, mine:gsub("%S+", "")), select(2, any:gsub("%S+", ""))
  print(fmt("leftover containers: %d of this process, %d with label %s at all; total bench time %.1f s",
    n_mine, n_any, lifecycle.OWNER_LABEL, core.monotime() - t_all))
  return n_mine
end

return M
