-- The in-jail half of the inmate protocol (docs/inmate-protocol.md).
--
-- As a script, in the jail:
--   lua5.4 runner.lua [INMATE_DIR]     3 = protocol out, 1 and 2 = logs, 0 = request
-- sends H, reads one C frame from stdin (the function's name, then its
-- arguments), loads the module "inmate" from INMATE_DIR (default /inmate), runs
-- the function in a coroutine, sends a Y frame per coroutine.yield, ends with R
-- (the return values) or E (an error), and exits 0.
--
-- As a module (require "lockup.inmate.runner"), the same work without a process
-- of its own: serve{dir, request, write [, isolated]} (the host's local mode).
-- Requiring it does nothing else: no fd is opened, nothing exits.
--
-- Plain lua5.4 and codec.lua, which must sit next to this file; nothing from
-- lockup.core or lockup.compat (they are not in the jail). Required on the
-- host, it runs on LuaJIT 2.1 too. The inmate's prints go to fd 1 and 2,
-- never into the protocol on fd 3. That keeps an honest inmate from breaking the
-- protocol by accident; it is no defence against a hostile one, which can write
-- to fd 3 itself: the host treats all of it as untrusted data anyway.
local RUNTIME = "lockup 0.2 runner (" .. _VERSION .. ")"

-- Taken before the inmate loads: a module that reassigns a global by mistake
-- must not break the runner's side of the protocol.
local type, tostring, pcall, xpcall, rawget, require, error = type, tostring, pcall, xpcall, rawget, require, error
local setmetatable, loadfile, select = setmetatable, loadfile, select
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local debug_traceback = debug.traceback
-- Lua 5.4 and LuaJIT spell these two differently; lockup.compat has them, but
-- the jail has no lockup.compat.
local table_unpack = table.unpack or unpack -- luacheck: ignore 113 (LuaJIT's global)
local function table_pack(...) return { n = select("#", ...), ... } end
local string_format, io_stderr, os_exit = string.format, io.stderr, os.exit
local package, G = package, _G

-- Run as a script (lua5.4 runner.lua), as opposed to required.
local MAIN = arg ~= nil and arg[0] ~= nil and debug.getinfo(1, "S").source == "@" .. arg[0]

local function die(code, message)
  io_stderr:write("lockup runner: ", message, "\n")
  os_exit(code)
end

-- In the jail the codec comes from the runner's own directory, loaded before
-- the inmate's directory is on package.path, so no inmate file can stand in for
-- it. Required on the host, it is the host's own module.
local codec
if MAIN then
  local load_codec, why = loadfile((arg[0]:match("^(.*)/") or ".") .. "/codec.lua")
  if not load_codec then die(2, "cannot load the codec: " .. why) end
  codec = load_codec()
else
  codec = require "lockup.inmate.codec"
end

local _M = { RUNTIME = RUNTIME }

-- An error value as text. tostring can itself fail (a __tostring that raises
-- or returns a non-string); then the type has to do.
local function message_of(e)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  return "(an error value of type " .. type(e) .. " that tostring could not convert)"
end

-- A name as it appears in a message: quoted, control bytes escaped, cut short.
local function quote(s)
  return (string_format("%q", #s > 80 and s:sub(1, 80) .. "..." or s):gsub("\\\n", "\\n"))
end

-- The final E frame's type and payload.
local function E(kind, message, traceback)
  return codec.ERROR, codec.encode_value({ kind = kind, message = message, traceback = traceback })
end

--- loading the inmate ----------------------------------------------------------

-- The jail's way: the inmate's directory goes first on package.path and the
-- module is required like any other. The process is the inmate's.
local function load_shared(dir)
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  return require("inmate")
end

-- The host's local mode: the inmate's files load into an environment of their
-- own (globals they set stay there) with a require of their own (their modules
-- are cached there, fresh for each call); the host's package.path,
-- package.loaded and globals are left alone. This is tidiness, not a sandbox:
-- the inmate's code runs in the host's process.
local function load_isolated(dir)
  local env, loaded = setmetatable({}, { __index = G }), {}
  local search = dir .. "/?.lua;" .. dir .. "/?/init.lua"
  function env.require(name)
    if loaded[name] ~= nil then return loaded[name] end
    local path = type(name) == "string" and package.searchpath(name, search)
    if not path then return require(name) end -- not the inmate's: a library of the host's
    local chunk, err = loadfile(path, "t", env)
    if not chunk then error(err, 2) end
    local v = chunk(name, path)
    if v == nil then v = true end
    loaded[name] = v
    return v
  end
  -- Never the host's: a module "inmate" elsewhere on package.path is not this one.
  if not package.searchpath("inmate", search) then
    error(string_format("module 'inmate' not found in %s (no inmate.lua, no inmate/init.lua)", dir), 0)
  end
  return env.require("inmate")
end

--- one call ------------------------------------------------------------------

-- Checks the request, loads the inmate, runs the function; sends each yield with
-- send(type, payload) and returns the final frame's type and payload.
local function call(opts, send)
  local raw = opts.request
  if type(raw) == "function" then raw = raw() end
  local kind, payload = codec.unframe(raw or "")
  if not kind then return E("bad_request", "request: " .. payload) end
  if kind ~= codec.CALL then return E("bad_request", "request: a C frame expected, got " .. kind) end
  local request, err = codec.decode_values(payload)
  if not request then return E("bad_request", "request: " .. err) end
  local name = request[1]
  if type(name) ~= "string" then
    return E("bad_request", "request: the first value must be the function's name (a string), got " .. type(name))
  end

  local loaded, module = xpcall(opts.isolated and load_isolated or load_shared, function(e)
    local msg = message_of(e)
    return { message = msg, traceback = debug_traceback(msg, 2) }
  end, opts.dir)
  if not loaded then return E("error", module.message, module.traceback) end
  if type(module) ~= "table" then
    return E("error", "the inmate module must return a table of functions, it returned " .. type(module))
  end

  -- The name is data: a raw lookup in the module's own table, never a path, a
  -- global, an __index or anything loaded.
  local fn = rawget(module, name)
  if type(fn) ~= "function" then
    return E("unknown_function", "the inmate module has no function " .. quote(name))
  end

  -- Only the yields that reach this resume are the function's: a coroutine the
  -- inmate makes itself catches its own.
  local co = co_create(fn)
  local started, res = pcall(function()
    return table_pack(co_resume(co, table_unpack(request, 2, request.n)))
  end)
  if not started then return E("bad_request", "request: too many arguments (" .. message_of(res) .. ")") end
  while true do
    if not res[1] then
      local msg = message_of(res[2])
      return E("error", msg, debug_traceback(co, msg))
    end
    local final = co_status(co) == "dead"
    local ok, bytes = pcall(codec.encode_list, table_pack(table_unpack(res, 2, res.n)), final and "return" or "yield")
    if not ok then
      -- A yield can still say where it happened; a finished call cannot.
      local msg = message_of(bytes)
      return E("error", msg, not final and debug_traceback(co, msg) or nil)
    end
    if final then return codec.RETURN, bytes end
    send(codec.YIELD, bytes)
    res = table_pack(co_resume(co))
  end
end

-- serve{dir = inmate directory, request = the C frame's bytes (or a function
-- returning them, called after H is sent), write = function(bytes) [, isolated
-- = true]} -> true. Passes each frame's bytes to write: H, the yields, then R or
-- E. isolated: load the inmate apart from this process's globals and modules
-- (see load_isolated); without it, the inmate's directory goes on package.path.
function _M.serve(opts)
  if type(opts) ~= "table" or type(opts.dir) ~= "string" or type(opts.write) ~= "function"
    or (type(opts.request) ~= "string" and type(opts.request) ~= "function") then
    error("bad argument to 'serve' ({dir = string, request = string or function, write = function} expected)", 2)
  end
  local write = opts.write
  -- The protocol reaches the host as a step's output, whose stream holds back
  -- a last byte 0x01 (it could begin the session's sentinel) until more comes:
  -- a yield that ends in one is followed by an empty P frame, so that the host
  -- has it at once, not with the next frame. (A final frame is followed by
  -- the sentinel itself.)
  local function send(kind, payload)
    local bytes = codec.frame(kind, payload)
    write(bytes)
    if kind == codec.YIELD and bytes:byte(-1) == 1 then write(codec.frame(codec.PAD, "")) end
  end
  send(codec.HELLO, codec.encode_value({ protocol = codec.PROTOCOL, runtime = RUNTIME }))
  send(call(opts, send))
  return true
end

if MAIN then
  local out = io.open("/dev/fd/3", "wb")
  if not out then die(2, "fd 3 (the protocol output) is not open") end
  _M.serve({
    dir = arg[1] or "/inmate",
    request = function() return io.stdin:read("*a") end, -- "*a": LuaJIT reads no "a"
    write = function(bytes)
      local ok, err = out:write(bytes)
      if ok then ok, err = out:flush() end
      if not ok then die(1, "cannot write to fd 3: " .. tostring(err)) end
    end,
  })
  os_exit(0)
end

return _M
