-- Turns a JPEG into a 120x120 thumbnail with GraphicsMagick inside a box, and
-- writes it next to the input (photo.jpg -> photo-thumb.jpg).
--
--   lua5.4 examples/thumbnail.lua [input.jpg]      (make example runs it)
--
-- The whole job of the seed article, from Lua: build the image (once: its tag
-- is derived from what goes into it), start a hardened box (no network,
-- read-only root, non-root user, limits), put the input in, convert, take the
-- output out, stop. The input is treated as hostile: it never touches a
-- converter on the host.
local lockup = require "lockup"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local input = arg[1] or (here .. "/photo.jpg")
local output = input:gsub("%.[^./]*$", "") .. "-thumb.jpg"

local docker = assert(lockup.connect())

-- The image: examples/thumbnail/ (a Dockerfile on top of debian-gm:local).
local image_dir = here .. "/thumbnail"
local tag = assert(lockup.content_tag(image_dir, "lockup-thumbnail"))
if not docker:image_exists(tag) then
  assert(docker:build{ context = image_dir, tag = tag, on_progress = lockup.progress("building " .. tag) })
end

-- The conversion, in a running box.
local function convert(box)
  assert(box:put_file(input, "in.jpg", { on_progress = lockup.progress("upload") }))
  local r = assert(box:run("thumbnail in.jpg out.jpg 120"))
  assert(r.ok, "conversion failed: " .. r.stderr)
  local info = assert(box:run("gm identify -format '%m %wx%h' out.jpg; ls /sys/class/net"))
  local size = assert(box:get_file("out.jpg", output))
  local kind, dims, nets = info.stdout:match("^(%S+) (%S+)\n(.*)$")
  print(string.format("%s -> %s: %s %s, %d bytes (converted in %.0f ms; the box's network: %s)",
    input, output, kind, dims, size, r.duration * 1000, nets:gsub("%s+$", ""):gsub("\n", ", ")))
end

lockup.run(function()
  local box = assert(docker:start{ image = tag, memory = "256m", pids = 64, timeout = 60 })
  -- Stopped on every path; on Lua 5.4 `local box <close> = ...` does this, but
  -- this example runs on LuaJIT too.
  local ok, err = pcall(convert, box)
  box:stop()
  if not ok then error(err, 0) end
end)
