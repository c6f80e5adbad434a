-- lockup: ephemeral Docker sandboxes for Lua.
--
--   local lockup = require "lockup"
--   local docker = assert(lockup.connect())
--   lockup.run(function()
--     local box <close> = assert(docker:start{ image = "busybox:local" })
--     print(box:run("echo hello"))
--   end)
--
-- (`<close>` is Lua 5.4's; on LuaJIT 2.1 call box:stop() when done.)
--
-- The API in one table; each module it re-exports is complete on its own.
local docker_api = require "lockup.docker"
local scheduler = require "lockup.scheduler"
local options = require "lockup.options"
local image = require "lockup.image"

local _M = {
  _VERSION = "lockup 0.2",
  run = scheduler.run,
  spawn = scheduler.spawn,
  sleep = scheduler.sleep,
  -- coroutine.wrap/resume for your own coroutines inside lockup.run: their
  -- lockup calls wait as the task's (a plain coroutine's raise there).
  wrap = scheduler.wrap,
  resume = scheduler.resume,
  -- lockup.connect([url | opts]) -> docker | nil, err
  connect = docker_api.connect,
  content_tag = image.content_tag,
  progress = require "lockup.progress",
  -- lockup.inmate{ dir = ... } -> jail: call Lua functions that run in a container.
  inmate = require("lockup.inmate").new,
  -- lockup.pool{ docker, image, size, ... } -> pool: started, never-used boxes, ready ahead of demand.
  pool = require("lockup.pool").new,
}

-- lockup.prune([opts]) -> number removed | nil, err, on the default connection
-- (docker:prune: boxes and fifo lanes of processes that are gone).
function _M.prune(opts)
  opts = options.check(opts, { all = "boolean", docker = "table" }, "prune", 2)
  local d, err = opts.docker
  if not d then
    d, err = docker_api.connect { lane = "attach" } -- no lane probe: prune starts no box
    if not d then return nil, err end
  end
  return d:prune { all = opts.all }
end

return _M
