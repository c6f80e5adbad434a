-- lockup: ephemeral Docker sandboxes for Lua.
--
--   local lockup = require "lockup"
--   local docker = assert(lockup.connect())
--   lockup.run(function()
--     local box <close> = assert(docker:start{ image = "busybox:local" })
--     print(box:run("echo hello"))
--   end)
local docker_api = require "lockup.docker"
local box = require "lockup.box"
local scheduler = require "lockup.scheduler"
local core = require "lockup.core"
local options = require "lockup.options"
local files = require "lockup.files"
local image = require "lockup.image"

local _M = {
  _VERSION = "lockup 0.1",
  run = scheduler.run,
  spawn = scheduler.spawn,
  sleep = scheduler.sleep,
}

-- lockup.connect([url | opts]) -> docker | nil, err
_M.connect = docker_api.connect

local Docker = docker_api.Docker

-- docker:start(opts) -> box | nil, err
function Docker:start(opts)
  return box.start(self, opts)
end

-- Images (lockup.image) and files in and out of boxes (lockup.files).
Docker.build, Docker.import, Docker.pull = image.build, image.import, image.pull
Docker.image_exists, Docker.remove_image = image.image_exists, image.remove_image
_M.content_tag = image.content_tag
_M.progress = require "lockup.progress"
local Box = box.Box
Box.put, Box.put_file, Box.get, Box.get_file = files.put, files.put_file, files.get, files.get_file

-- lockup.inmate{ dir = ... } -> jail: call Lua functions that run in a container.
_M.inmate = require("lockup.inmate").new

-- docker:prune([{all = true}]) -> number removed | nil, err. Removes the boxes
-- whose owning process (on this host) is gone; with all = true, every box.
function Docker:prune(opts)
  opts = options.check(opts, { all = "boolean" }, "prune", 2)
  local status, list = self:request("GET", "/containers/json", {
    query = { all = 1, filters = { label = { box.OWNER_LABEL } } },
  })
  if not status then return nil, "listing boxes: " .. list end
  local me_host = box.owner():match("^(.*)/%d+$")
  local removed = 0
  for _, c in ipairs(list) do
    local host, pid = tostring(c.Labels[box.OWNER_LABEL]):match("^(.*)/(%d+)$")
    local stray = opts.all or (host == me_host and not core.pid_alive(tonumber(pid)))
    if stray then
      local ok, err, code = self:request("DELETE", "/containers/" .. c.Id, { query = { force = 1 } })
      if ok or code == 404 then removed = removed + 1
      else return nil, "removing box " .. c.Id:sub(1, 12) .. ": " .. err end
    end
  end
  return removed
end

-- lockup.prune([opts]) -> number removed | nil, err, on the default connection.
function _M.prune(opts)
  opts = options.check(opts, { all = "boolean", docker = "table" }, "prune", 2)
  local d, err = opts.docker
  if not d then
    d, err = _M.connect()
    if not d then return nil, err end
  end
  return d:prune { all = opts.all }
end

return _M
