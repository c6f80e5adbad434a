-- POST a JPEG to /thumbnail, get a 120x120 thumbnail back: the conversion
-- runs in a fresh hardened box (no network, read-only root, non-root user,
-- limits), so the upload never touches a converter in nginx's own process.
-- The same API as a script: inside nginx lockup waits on cosockets, so the
-- worker goes on serving other requests while the box works.
local lockup = require "lockup"

-- examples/thumbnail/ (a Dockerfile on top of debian-gm:local), next to this directory.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local IMAGE_DIR = here .. "/../thumbnail"

-- The image's tag, built on first use (its tag comes from what goes into it).
local function image(docker)
  local tag = assert(lockup.content_tag(IMAGE_DIR, "lockup-thumbnail"))
  if not docker:image_exists(tag) then assert(docker:build { context = IMAGE_DIR, tag = tag }) end
  return tag
end

return function()
  ngx.req.read_body()
  local jpeg = ngx.req.get_body_data()
  if not jpeg then
    ngx.status = 400
    ngx.say("POST a JPEG (at most client_body_buffer_size bytes)")
    return
  end
  local docker = assert(lockup.connect())
  local box = assert(docker:start { image = image(docker), memory = "256m", pids = 64, timeout = 60 })
  -- No <close> in LuaJIT: stop on every path (the request's end would end the box anyway).
  local ok, err = pcall(function()
    assert(box:put("in.jpg", jpeg))
    local r = assert(box:run("thumbnail in.jpg out.jpg 120"))
    if not r.ok then
      ngx.status = 422
      ngx.say("conversion failed: ", r.stderr)
      return
    end
    ngx.header["Content-Type"] = "image/jpeg"
    ngx.print(assert(box:get("out.jpg")))
  end)
  box:stop()
  if not ok then error(err, 0) end
end
