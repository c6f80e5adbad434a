-- Shared fixtures for the specs: `local helper = require "helper"` (.busted puts
-- spec/ on the path). Everything here talks to the real Docker Engine.
local lockup = require "lockup"
local now = require("lockup.core").monotime
local C = require "support.compat"

local helper = {}

-- The image (and shell) and the runtime the boxes of the specs run with: the
-- hostile suite runs again under others (Makefile: test-dash, test-bash, test-runsc).
helper.IMAGE = os.getenv("LOCKUP_TEST_IMAGE") or "busybox:local"
helper.RUNTIME = os.getenv("LOCKUP_TEST_RUNTIME") -- nil: the Engine's default
helper.LABEL = "lockup.owner"

local docker
-- The default connection, made once per busted process.
function helper.docker()
  if not docker then docker = assert(lockup.connect()) end
  return docker
end

-- Ids of every container (running or not) labelled lockup.owner, sorted; with
-- `owner` ("<host>/<pid>", see helper.owner), only those of that owner.
-- Podman builds the list from each container's /proc: one that exits
-- meanwhile fails the whole call (HTTP 500, "read /proc/N/cgroup: no such
-- process"), so that answer is asked again.
function helper.boxes(owner)
  local status, list
  for _ = 1, 5 do
    status, list = helper.docker():request("GET", "/containers/json", {
      query = { all = 1, filters = { label = { owner and (helper.LABEL .. "=" .. owner) or helper.LABEL } } },
    })
    if status or not tostring(list):find("no such process", 1, true) then break end
  end
  assert(status, list)
  local ids = {}
  for _, c in ipairs(list) do ids[#ids + 1] = c.Id end
  table.sort(ids)
  return ids
end

-- This process's boxes now, as a set of ids (for helper.no_new_boxes).
function helper.box_set()
  local set = {}
  for _, id in ipairs(helper.boxes(helper.owner())) do set[id] = true end
  return set
end

-- Are all this process's boxes ones that were in `before` (helper.box_set)?
-- Not a count: a box of an earlier spec may finish going meanwhile.
function helper.no_new_boxes(before)
  for _, id in ipairs(helper.boxes(helper.owner())) do
    if not before[id] then return false end
  end
  return true
end

-- Does the Engine the specs use (the local Docker one, not DOCKER_HOST's)
-- have gVisor as runtime "runsc"? scripts/setup.sh registers it when installed.
function helper.has_runsc()
  if os.getenv("DOCKER_HOST") then return false end
  return (helper.sh("docker info --format '{{json .Runtimes}}'")):find('"runsc"', 1, true) ~= nil
end

-- The container's inspect document, or nil once the Engine no longer knows it.
function helper.inspect(id)
  local status, body, code = helper.docker():request("GET", "/containers/" .. id .. "/json")
  if status then return body end
  -- Podman answers a container that is ending with a 500 ("read
  -- /proc/<pid>/cgroup: no such process"): still there, for a moment
  if code == 500 and tostring(body):find("no such process", 1, true) then return { State = { Status = "ending" } } end
  assert(code == 404, body)
  return nil
end

function helper.exists(id)
  return helper.inspect(id) ~= nil
end

-- Force-removes a container; fine if it is already gone (for teardown).
function helper.remove(id)
  local status, err, code = helper.docker():request("DELETE", "/containers/" .. id, { query = { force = 1 } })
  assert(status or code == 404, err)
end

-- Calls fn(box, ...) and stops the box however fn ends, as `local box <close>`
-- does on Lua 5.4 (LuaJIT has no to-be-closed variables; inside an `it`,
-- busted's finally(function() box:stop() end) does the same): fn's results,
-- or its error raised again once the box is stopped.
function helper.closing(box, fn, ...)
  local r = C.pack(pcall(fn, box, ...))
  if box then box:stop() end
  if not r[1] then error(r[2], 0) end
  return C.unpack(r, 2, r.n)
end

-- busted keeps one `finally` per test (a second replaces the first): a test
-- with several things to undo calls `local undo = helper.undo(finally)`, then
-- undo(fn) for each; they all run when the test ends, last first, however it ends.
function helper.undo(finally)
  local list = {}
  finally(function()
    for i = #list, 1, -1 do list[i]() end
  end)
  return function(fn) list[#list + 1] = fn end
end

-- Compiles `src`, a chunk only Lua 5.4 parses (`<close>`; run it where
-- support.compat's CLOSE is true), with `name` for its messages.
function helper.load54(src, name)
  return assert(load(src, "=" .. name, "t"))
end

-- Polls fn() every 0.1 s until it returns a true value (returned) or `seconds`
-- (default 5) have passed (false).
function helper.eventually(fn, seconds)
  local deadline = now() + (seconds or 5)
  while now() < deadline do
    local v = fn()
    if v then return v end
    lockup.sleep(0.1)
  end
  return fn() or false
end

-- The message of the error fn raises (it must raise one).
function helper.raised(fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

function helper.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command line: its stdout, whether it exited 0, and its exit
-- code. Plain tools run without LD_PRELOAD (under `make test-asan` it holds
-- libasan, which some, e.g. ps, hang on); helper.lua_cmd puts it back for Lua.
function helper.sh(cmd)
  local out, code = C.popen_read("unset LD_PRELOAD; " .. cmd)
  return out, code == 0, code
end

-- This process's pid and the host's name, read independently of lockup.
function helper.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  return C.tointeger(pid)
end

function helper.hostname()
  return (helper.sh("uname -n"):gsub("%s+$", ""))
end

-- What the lockup.owner label of a box started by process `pid` should say.
function helper.owner(pid)
  return helper.hostname() .. "/" .. (pid or helper.pid())
end

-- The cpath template this run loads lockup.core with (build/?.so, or
-- build-asan/?.so under `make test-asan`).
function helper.cpath()
  local so = assert(package.searchpath("lockup.core", package.cpath), "lockup.core not on package.cpath")
  local template = so:gsub("lockup/core%.so$", "?.so")
  return template
end

-- A shell command line running Lua `code` in a fresh interpreter of the kind
-- running the specs (lua5.4 or luajit: the core on the cpath is built for it)
-- with lockup on its paths (the same core as this run, with LD_PRELOAD passed
-- through for ASan).
-- opts.env: extra variables (a false value unsets it); opts.root: a directory
-- holding lua/ and the core's build directory, instead of the current one.
function helper.lua_cmd(code, opts)
  opts = opts or {}
  local root = opts.root and (opts.root .. "/") or ""
  local cpath = helper.cpath()
  if cpath:sub(1, 1) ~= "/" then cpath = root .. cpath:gsub("^%./", "") end
  local env = {
    LUA_PATH = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;;",
    LUA_CPATH = cpath .. ";;",
    LD_PRELOAD = os.getenv("LD_PRELOAD"),
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local unset, set, names = {}, {}, {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = env[k]
    if v == false then unset[#unset + 1] = "-u " .. k
    elseif v ~= nil then set[#set + 1] = k .. "=" .. helper.shell_quote(v) end
  end
  return table.concat({ "env", table.concat(unset, " "), table.concat(set, " "), C.LUA .. " -e",
    helper.shell_quote(code) }, " ")
end

-- A TCP port on 127.0.0.1 that nothing listens on now.
function helper.free_port()
  local out, ok = helper.sh([[python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
  local port = ok and tonumber(out:match("%d+"))
  assert(port and port > 1024, "could not find a free port: " .. out)
  return port
end

-- Host files for the file and image specs -------------------------------------

-- A fresh empty host directory (mktemp -d); remove it with helper.rm_rf.
function helper.tmpdir()
  local out, ok = helper.sh("mktemp -d /tmp/lockup-spec-XXXXXX")
  assert(ok, "mktemp -d failed")
  return (out:gsub("%s+$", ""))
end

-- Removes a host path made by a spec (only under /tmp, as a guard).
function helper.rm_rf(path)
  assert(path:match("^/tmp/[^/]"), "rm_rf outside /tmp: " .. path)
  helper.sh("rm -rf " .. helper.shell_quote(path))
end

-- Writes `data` to a host file.
function helper.write(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

-- A host file's bytes, or nil if it cannot be opened.
function helper.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

-- The host's sha256sum of a file (64 hex digits).
function helper.sha256_file(path)
  local out, ok = helper.sh("sha256sum " .. helper.shell_quote(path))
  assert(ok, "sha256sum failed: " .. out)
  return out:match("^(%x+)")
end

-- This process's resident set size, in KiB (VmRSS of /proc/self/status).
function helper.rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return C.tointeger(s:match("VmRSS:%s*(%d+)"))
end

-- Every byte value once, 0 to 255.
function helper.all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

return helper
