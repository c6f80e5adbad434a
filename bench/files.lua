-- bench/files.lua: moving a big file into and out of a box, against the docker
-- CLI doing the same through `docker exec -i` in the same run.
--
--   cd /work/main && make
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/files.lua [mib] [rounds]
--
--   mib     size of the file in MiB  (default 1024)
--   rounds  rounds of each way       (default 1; about 2 minutes for 1 GiB)
--
-- For each: seconds, MiB/s, and this process's peak RSS growth (VmHWM, read
-- from /proc/self/status before and after), which shows the transfer streams
-- instead of holding the file. Byte-exactness is checked with sha256sum on
-- both sides. The box gets disk and memory for the file (tmpfs is memory).
package.path = (arg[0]:match("^(.*)[/\\]") or ".") .. "/?.lua;" .. package.path
local lockup = require "lockup"
local core = require "lockup.core"
local common = require "common"

local now, fmt, sh = core.monotime, string.format, common.sh
local MIB = math.tointeger(tonumber(arg[1] or 1024))
local ROUNDS = math.tointeger(tonumber(arg[2] or 1))
assert(MIB and MIB > 0 and ROUNDS and ROUNDS > 0, "usage: lua5.4 bench/files.lua [mib>0] [rounds>0]")

local function rss_peak_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmHWM:%s+(%d+) kB")
    if kib then return tonumber(kib) end
  end
end

local docker = assert(lockup.connect())
common.print_machine(docker)
local t_all = now()
local dir = sh("mktemp -d"):gsub("%s+$", "")
local src, back = dir .. "/src.bin", dir .. "/back.bin"
-- A file of MIB MiB that does not compress to nothing (tmpfs would not care,
-- but a pattern of zeros would flatter nothing else either).
assert(os.execute(fmt("head -c 1048576 /dev/urandom > %s/one && for i in $(seq %d); do cat %s/one; done > %s",
  dir, MIB, dir, src)))
local want = sh("sha256sum " .. src):match("^(%x+)")

local box <close> = assert(docker:start{ image = "busybox:local", disk = (MIB + 64) .. "m",
  memory = (2 * MIB + 256) .. "m", ulimits = { fsize = (MIB + 64) * 1048576 }, timeout = 600 })

local rows = { { "way", "seconds", "MiB/s", "peak RSS growth", "" } }
-- The CLI's memory is another process's: no RSS figure for it.
local function measure(name, fn, cli)
  for _ = 1, ROUNDS do
    local hwm0 = rss_peak_kib()
    local t0 = now()
    fn()
    local dt = now() - t0
    rows[#rows + 1] = { name, fmt("%.2f", dt), fmt("%.0f", MIB / dt),
      cli and "(the CLI's)" or fmt("%.1f MiB", (rss_peak_kib() - hwm0) / 1024), "" }
  end
end

local function box_sum()
  local r = assert(box:run("sha256sum /work/f"))
  return r.stdout:match("^(%x+)")
end

measure("box:put_file", function()
  assert(box:put_file(src, "/work/f"))
  assert(box_sum() == want, "put_file: bytes differ")
end)
measure("box:get_file", function()
  assert(box:get_file("/work/f", back))
  assert(sh("sha256sum " .. back):match("^(%x+)") == want, "get_file: bytes differ")
end)
measure("docker exec -i ... 'cat > f' < file", function()
  assert(os.execute(fmt("docker exec -i %s sh -c 'cat > /work/f' < %s", box.id, src)))
  assert(box_sum() == want, "docker exec in: bytes differ")
end, true)
measure("docker exec ... cat f > file", function()
  assert(os.execute(fmt("docker exec %s cat /work/f > %s", box.id, back)))
  assert(sh("sha256sum " .. back):match("^(%x+)") == want, "docker exec out: bytes differ")
end, true)
print(fmt("a %d MiB file of random bytes, %d rounds each way (sha256 checked on both sides):", MIB, ROUNDS))
common.print_table(rows)
box:stop()
os.execute("rm -rf " .. dir)
os.exit(common.report_leftovers(t_all) == 0 and 0 or 1)
