-- Prepare once, fork many: a box is set up once (a data set put in by files,
-- the photo decoded ahead into GraphicsMagick's own format), committed to an
-- image, and then 100 thumbnails are made, each in a fresh copy of it: a box
-- from a pool that resets each box handed back (its processes killed, its
-- writable mounts back to the committed files, a new shell) in milliseconds.
--
--   lua5.4 examples/fork.lua [conversions]      (make example runs it)
--
-- Nothing one conversion does can reach the next: each starts from the
-- committed files, whatever the previous one wrote, deleted or left running.
local lockup = require "lockup"
local core = require "lockup.core"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local N = tonumber(arg[1] or 100)
local SIZES = { 64, 96, 120, 160, 200 }

local docker = assert(lockup.connect())

-- The thumbnail example's image: GraphicsMagick on debian-gm:local, and
-- the conversion script that limits it before it decodes anything.
local image_dir = here .. "/thumbnail"
local base = assert(lockup.content_tag(image_dir, "lockup-thumbnail"))
if not docker:image_exists(base) then
  assert(docker:build{ context = image_dir, tag = base, on_progress = lockup.progress("building " .. base) })
end

local function ms(seconds) return string.format("%.1f ms", seconds * 1000) end

-- Once: the data set in by files, the preparation, the commit. The tag says
-- what the image holds: the same preparation gives the same tag (and reuses
-- the image), another gives another.
local t0 = core.monotime()
local box = assert(docker:start{ image = base, memory = "256m", pids = 64, timeout = 60 })
local ok, image = pcall(function()
  assert(box:put("data", {
    ["photo.jpg"] = { file = here .. "/photo.jpg" },
    ["sizes.txt"] = table.concat(SIZES, "\n") .. "\n",
  }))
  local r = assert(box:run("gm convert data/photo.jpg data/photo.miff && ls -s data"))
  assert(r.ok, "preparing: " .. r.stderr)
  return assert(box:commit())
end)
box:stop()
if not ok then error(image, 0) end
print(string.format("prepared and committed %s in %s", image, ms(core.monotime() - t0)))

-- Many: each conversion in a fresh copy. The pool keeps a box ready and
-- resets each one given back; a box that cannot be made clean is replaced.
local pool = assert(lockup.pool{ docker = docker, image = image, size = 2, reset = true,
  start = { memory = "256m", pids = 64, timeout = 60 } })
local times, bytes = {}, 0
lockup.run(function()
  for i = 1, N do
    local t = core.monotime()
    local copy = assert(pool:acquire())
    local size = SIZES[(i - 1) % #SIZES + 1]
    -- Each conversion also litters (a file, a process left running): the
    -- next copy sees none of it.
    local r = assert(copy:run(string.format("ls /work; thumbnail data/photo.miff out.jpg %d && wc -c < out.jpg; "
      .. "echo litter > data/litter; sleep 60 &", size)))
    assert(r.ok and not r.stdout:find("out.jpg", 1, true) and not r.stdout:find("litter", 1, true),
      "conversion " .. i .. ": " .. r.stdout .. r.stderr)
    bytes = bytes + tonumber(r.stdout:match("(%d+)\n$"))
    pool:release(copy)
    times[i] = core.monotime() - t
  end
end)
local stats = pool:stats()
pool:close()

table.sort(times)
print(string.format("%d conversions, each in a fresh copy: median %s, p90 %s (acquire, convert, release); "
  .. "%d bytes of thumbnails; %d resets, %d boxes replaced", N, ms(times[math.ceil(N / 2)]),
  ms(times[math.ceil(N * 0.9)]), bytes, stats.resets, stats.reset_failed))
