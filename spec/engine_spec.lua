-- A box's secure defaults as the engine really applies them, seen from inside
-- the box and in the engine's own record (inspect), whichever engine answers
-- DOCKER_HOST: Docker, or Podman (`make test-podman`), whose API takes the
-- same requests but applies some of them its own way (see README, "Podman").
local helper = require "helper"

local MiB = 1024 * 1024

-- What the box says about itself, one "key value" a line.
local INSIDE = table.concat({
  'echo "id $(id -u):$(id -g)"',
  -- every mount the box's user can create a file in
  'while read -r dev mnt fs opts rest; do [ -d "$mnt" ] || continue; f="$mnt/.lockup-probe-$$";'
    .. ' if touch "$f" 2>/dev/null; then rm -f "$f"; echo "writable $mnt"; fi; done </proc/mounts',
  'for d in /tmp /work; do echo "dir $d $(stat -c %a:%u:%g $d)"; done',
  'echo "root $(awk \'$2 == "/" { split($4, o, ","); print o[1] }\' /proc/mounts)"',
  'for d in /tmp /work; do echo "size $d $(df -k $d | awk \'NR == 2 { print $2 }\')"; done',
  'echo "net $(ls /sys/class/net | tr "\\n" " ")"',
  'grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs):" /proc/self/status | tr -d "\\t:" | sed "s/^\\([A-Za-z]*\\)/\\1 /"',
  'echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"',
  'echo "pids $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"',
  'echo "nofile $(ulimit -n)"',
  'echo "fsize $(ulimit -f)"',
}, "\n")

local function parse(text)
  local t, writable = {}, {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^(%S+)%s*(.-)%s*$")
    if k == "writable" then writable[#writable + 1] = v
    elseif k == "dir" or k == "size" then t[k .. " " .. v:match("^%S+")] = v:match("%S+$")
    else t[k] = v end
  end
  table.sort(writable)
  t.writable = table.concat(writable, " ")
  return t
end

describe("a box's secure defaults on " .. (os.getenv("DOCKER_HOST") or "the default engine"), function()
  local box

  setup(function()
    box = assert(helper.docker():start { image = helper.IMAGE })
  end)

  teardown(function()
    if box then box:stop() end
  end)

  it("hold inside the box: nobody, no capabilities, no network, read-only but for /tmp and /work, limits", function()
    local r = assert(box:run(INSIDE))
    assert.equal("", r.stderr)
    local t = parse(r.stdout)
    assert.equal("65534:65534", t.id)
    assert.equal("ro", t.root)
    -- the box's user writes to its two tmpfs mounts and its IPC namespace's
    -- (/dev/shm, /dev/mqueue: private to the box, within its memory), nowhere else
    assert.equal("/dev/mqueue /dev/shm /tmp /work", t.writable)
    -- owned by the box's user; runc gives a tmpfs the mode of the directory it
    -- covers, whatever mode= said (busybox:local's /tmp: 1777; /work, made by
    -- runc or Podman: 755 or 700), so the mode is left alone here
    assert.matches(":65534:65534$", t["dir /tmp"])
    assert.matches(":65534:65534$", t["dir /work"])
    assert.equal(tostring(256 * 1024), t["size /tmp"])
    assert.equal(tostring(256 * 1024), t["size /work"])
    assert.equal("lo", t.net)
    assert.equal("0000000000000000", t.CapEff)
    assert.equal("0000000000000000", t.CapPrm)
    assert.equal("0000000000000000", t.CapBnd)
    assert.equal("1", t.NoNewPrivs)
    assert.equal(tostring(512 * MiB), t.memory)
    assert.equal("256", t.pids)
    assert.equal("1024", t.nofile)
    assert.equal(string.format("%d", 1024 * MiB / 512), t.fsize) -- in 512-byte blocks
  end)

  it("are in the engine's record of the container", function()
    local info = assert(helper.inspect(box.id))
    local h = info.HostConfig
    assert.is_true(h.ReadonlyRootfs)
    assert.equal("none", h.NetworkMode)
    assert.equal("none", h.LogConfig.Type)
    assert.is_true(h.AutoRemove)
    assert.equal(512 * MiB, h.Memory)
    assert.equal(512 * MiB, h.MemorySwap)
    assert.equal(256, h.PidsLimit)
    assert.equal(1e9, h.NanoCpus)
    assert.same({ "no-new-privileges" }, h.SecurityOpt)
    assert.equal("65534:65534", info.Config.User)
    assert.is_string(h.Tmpfs["/tmp"])
    assert.is_string(h.Tmpfs["/work"])
    -- Docker records CapDrop as given (ALL); Podman as the list of what it dropped
    local drop = table.concat(h.CapDrop or {}, " ")
    assert.is_truthy(drop == "ALL" or (drop:find("CHOWN", 1, true) and drop:find("SETUID", 1, true)), drop)
    assert.is_true(type(h.CapAdd) ~= "table" or #h.CapAdd == 0) -- null, or an empty list
  end)
end)
