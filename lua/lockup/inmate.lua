-- Inmates: Lua functions defined in a directory, run inside a container, called
-- from the host as if they were local (Hoosegow's idea, for Lua).
--
--   local jail = lockup.inmate{ dir = "inmate" }   -- builds lockup-inmate:<hash> if missing
--   print(jail:reverse("foobar"))                  --> raboof
--
-- Each call takes a fresh box from the jail's image (started for it, or
-- from a warm pool with `pool = n`, reset boxes with `reset = true`), runs
-- the runtime (lockup/inmate/runner.lua) on the call's request, reads
-- its frames (parsed by lockup.core's frame parser, payloads decoded by the
-- codec) and destroys the box. docs/inmate-protocol.md has the protocol. Everything that comes out of
-- the jail is data: values, never code or names to load.
local core = require "lockup.core"
local compat = require "lockup.compat"
local codec = require "lockup.inmate.codec"
local runner = require "lockup.inmate.runner"
local image = require "lockup.image"
local docker_api = require "lockup.docker"
local options = require "lockup.options"
local pool_api = require "lockup.pool"
local reader = require "lockup.inmate.reader"

local setmetatable, type, tostring, tonumber, error, pcall, pairs =
  setmetatable, type, tostring, tonumber, error, pcall, pairs
local string_format, table_pack, table_unpack = string.format, compat.pack, compat.unpack
local math_floor = math.floor
local now = core.monotime

local _M = {}

local DEFAULT_BASE = "debian-lua:local" -- made by scripts/setup.sh
local DEFAULT_TIMEOUT = 60 -- seconds per call
local KEEP_STDERR = 16 * 1024 -- bytes of the jail's stderr kept for a crash report
-- What one frame from a jail may cost the host. A decoded value takes up to
-- about 80 bytes (an empty table: 5 bytes on the wire, a 56-byte Lua table
-- and its slot), so 16 times its size; the garbage of the frames before
-- lingers until the collector's next cycle, about as much again. These
-- defaults keep a jail that floods frames to a few tens of MB (measured in
-- spec/inmate_limits_spec.lua); the values limit bites only on frames of
-- small values (a 4 MiB frame holds 466033 integers).
local DEFAULT_MAX_FRAME = codec.MAX_FRAME -- bytes of one frame's payload
local DEFAULT_MAX_VALUES = 250000 -- values one frame may create
local RUNTIME_DIR = package.searchpath("lockup.inmate.runner", package.path):match("^(.*)/[^/]+$")

-- What each call runs in its box, a step of the box's shell: the protocol on
-- fd 3 (the step's stdout), the inmate's own prints on stderr, the request as
-- the step's stdin. A step costs the shell a fork; an exec (the Engine's API)
-- costs dockerd and runc some 40 ms each. (A step's stdout holds back a last
-- byte 0x01, which could begin its sentinel: the runner follows a yield that
-- ends in one with an empty P frame.)
local COMMAND = "lua5.4 /lockup/runtime/runner.lua /inmate 3>&1 1>&2"

-- Errors --------------------------------------------------------------------

-- An error raised by a call: a table with `kind`, `message`, `traceback` (the
-- jail's, for kind "error") and `fn`, and, when the call ran in a box that
-- could be metered, what it cost there (`cpu_user`, `cpu_sys`, `memory_peak`:
-- lockup.meter); tostring gives the whole story.
--   kind: "error" (raised inside the jail), "unknown_function", "argument"
--   (cannot be sent), "timeout", "oom", "crashed" (the jail's Lua ended without
--   an answer), "died" (the container went away), "protocol" (the jail sent
--   something that is not the protocol, or a frame over max_frame or
--   max_values), "build", "closed".
local error_mt = { __name = "lockup.inmate.error" } -- no methods: fields and tostring

function error_mt.__tostring(self)
  local head = string_format("[jail %s] %s%s: %s", self.jail, self.fn and (self.fn .. "(): ") or "",
    self.kind, self.message)
  if not self.traceback then return head end
  -- the jail's traceback starts with the message, already said
  local tb = self.traceback:sub(1, #self.message) == self.message and self.traceback:sub(#self.message + 2)
    or self.traceback
  return head .. "\n(in the jail) " .. tb
end

local function raise(self, kind, fn, message, traceback, cost)
  cost = cost or {}
  error(setmetatable({ kind = kind, fn = fn, message = message, traceback = traceback,
    jail = self.local_mode and "local mode" or self.image or "not built",
    cpu_user = cost.cpu_user, cpu_sys = cost.cpu_sys, memory_peak = cost.memory_peak }, error_mt), 0)
end

-- The jail ------------------------------------------------------------------

local Jail = {}

-- jail:<name>(...) calls the inmate's function <name>, except for the names of
-- the jail's own methods (use jail:call("build", ...) for an inmate's build).
local jail_mt = { __name = "lockup.inmate" }
function jail_mt.__index(_, key)
  local method = Jail[key]
  if method ~= nil or type(key) ~= "string" then return method end
  return function(self, ...) return self:call(key, ...) end
end

function jail_mt.__tostring(self)
  return string_format("lockup.inmate %s (%s%s)", self.dir or "?", self.local_mode and "local mode" or
    (self.image or "not built"), self.closed and ", closed" or "")
end

local INMATE_OPTIONS = {
  dir = "string", image = "string", base = "string", docker = "table", start = "table", timeout = "number",
  on_output = "function", on_progress = "function", local_mode = "boolean", max_frame = "number",
  max_values = "number", pool = "number", reset = "boolean",
}

-- A whole number from 1 to `top`, or a programmer error naming the option.
local function check_count(opts, name, top, what)
  local v = opts[name]
  if v ~= nil and (v ~= math_floor(v) or v < 1 or v > top) then
    error(string_format("bad option '%s' to 'inmate' (%s: a whole number from 1 to %.0f expected)", name, what, top), 3)
  end
end

-- The build context of a jail's image: the inmate's directory, the runtime and
-- a generated Dockerfile. Its content tag changes with any of them.
local function image_context(self)
  local dockerfile = table.concat({
    "FROM " .. self.base,
    "COPY lockup /lockup",
    "COPY inmate /inmate",
    string_format("RUN command -v lua5.4 >/dev/null 2>&1 || { echo 'lockup: the base image %s has no lua5.4 on its "
      .. "PATH: inmates need Lua 5.4 (debian-lua:local from scripts/setup.sh has it)'; exit 1; }; "
      .. "chmod -R a+rX /lockup /inmate", self.base),
    "LABEL lockup.inmate.protocol=" .. codec.PROTOCOL,
  }, "\n") .. "\n"
  return {
    Dockerfile = dockerfile,
    inmate = { dir = self.dir },
    ["lockup/runtime/runner.lua"] = { file = RUNTIME_DIR .. "/runner.lua" },
    ["lockup/runtime/codec.lua"] = { file = RUNTIME_DIR .. "/codec.lua" },
  }
end

-- jail:build() -> image name: the image for this inmate directory and this
-- lockup runtime, built unless the Engine has it; raises on failure, with the
-- build's own output in the error.
function Jail:build()
  if self.local_mode then return nil end
  if self.prebuilt then
    local exists, err = self.docker:image_exists(self.image)
    if exists == nil then raise(self, "build", nil, err) end
    if not exists then
      raise(self, "build", nil, "image " .. self.image .. " (the image option) is not on the Engine: build it first "
        .. "(jail:build() without image = ... does)")
    end
    return self.image
  end
  local ctx = image_context(self)
  local tag, err = image.content_tag(ctx, "lockup-inmate")
  if not tag then raise(self, "build", nil, "the inmate directory: " .. err) end
  local exists
  exists, err = self.docker:image_exists(tag)
  if exists == nil then raise(self, "build", nil, err) end
  if not exists then
    local id
    id, err = self.docker:build { context = ctx, tag = tag, on_progress = self.on_progress or nil }
    if not id then raise(self, "build", nil, err) end
  end
  self.image = tag
  return tag
end

-- lockup.inmate{ dir, image, base, docker, start, timeout, on_output,
--   on_progress, local_mode, max_frame, max_values, pool, reset } -> jail
function _M.new(opts)
  opts = options.check(opts, INMATE_OPTIONS, "inmate", 2)
  if not opts.dir and not opts.image then
    error("bad argument to 'inmate' (give dir, the inmate's directory, or image, a prebuilt one)", 2)
  end
  if opts.local_mode and not opts.dir then error("bad argument to 'inmate' (local_mode needs dir)", 2) end
  check_count(opts, "max_frame", 0xffffffff, "the bytes one frame from the jail may hold")
  check_count(opts, "max_values", 2 ^ 53, "the values one frame from the jail may hold")
  check_count(opts, "pool", 1000, "how many boxes to keep ready")
  if opts.pool and opts.local_mode then error("bad argument to 'inmate' (pool needs boxes: not with local_mode)", 2) end
  if opts.reset and not opts.pool then
    error("bad argument to 'inmate' (reset is for a pool's boxes: give pool = n too)", 2)
  end
  if opts.start and opts.start.image then
    error("bad option 'start' to 'inmate' (the jail chooses the image: give image = ... to inmate itself)", 2)
  end
  -- Every field is set (false for none): a missing one would read as a call.
  local self = setmetatable({
    dir = opts.dir and opts.dir:gsub("/+$", "") or false, base = opts.base or DEFAULT_BASE,
    image = opts.image or false, prebuilt = opts.image ~= nil, start = opts.start or {},
    timeout = opts.timeout or DEFAULT_TIMEOUT, on_output = opts.on_output or false,
    on_progress = opts.on_progress or false, local_mode = opts.local_mode or false, active = {},
    docker = false, closed = false, max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    max_values = opts.max_values or DEFAULT_MAX_VALUES, pool = false,
  }, jail_mt)
  if self.dir and not self.prebuilt then
    local st = core.lstat(self.dir .. "/inmate.lua", true)
    if not st or st.type ~= "file" then
      error(string_format("bad option 'dir' to 'inmate' (%s/inmate.lua not found: the directory must hold "
        .. "inmate.lua, returning a table of functions)", self.dir), 2)
    end
  end
  if not self.local_mode then
    local d, err = opts.docker
    if not d then
      d, err = docker_api.connect()
      if not d then raise(self, "build", nil, "cannot check or build the jail's image: " .. err) end
    end
    self.docker = d
    self:build()
    if opts.pool then
      self.pool = pool_api.new { docker = d, image = self.image, size = opts.pool, start = self.start,
        reset = opts.reset }
    end
  end
  return self
end

-- Calls -----------------------------------------------------------------------

-- The request frame for fn(args...), or raises kind "argument".
local function request_frame(self, fn, args)
  local ok, bytes = pcall(codec.encode_list, { n = args.n + 1, fn, table_unpack(args, 1, args.n) }, "args")
  if not ok then -- item 1 is the name: renumber the path's root to the caller's arguments
    raise(self, "argument", fn, (tostring(bytes):gsub("%(at args%[(%d+)%]", function(i)
      return "(at args[" .. (tonumber(i) - 1) .. "]"
    end, 1)))
  end
  return codec.frame(codec.CALL, bytes)
end

-- What a call's end means for its caller: its results, or a raised error.
-- `cost`: the step's result, for what the call cost (nil in local mode).
local function conclude(self, fn, state, cost)
  if state.bad then raise(self, "protocol", fn, "the jail broke the protocol: " .. state.bad, nil, cost) end
  if state.limit then raise(self, "protocol", fn, state.limit, nil, cost) end
  if state.results then return table_unpack(state.results, 1, state.results.n) end
  if state.error then
    local e = state.error
    local kind = (e.kind == "unknown_function" or e.kind == "bad_request") and e.kind or "error"
    raise(self, kind, fn, e.message, type(e.traceback) == "string" and e.traceback or nil, cost)
  end
  return raise(self, "crashed", fn, "the jail's Lua ended without an answer", nil, cost)
end

-- The tail of the jail's stderr, for a crash report.
local function tail_of(parts)
  local text = table.concat(parts):sub(-KEEP_STDERR):gsub("%s+$", "")
  return text ~= "" and (":\n" .. text) or ""
end

-- Is the box's container gone (killed or removed from outside)?
local function gone(self, box)
  local status, info = self.docker:request("GET", "/containers/" .. box.id .. "/json")
  return not status or type(info) ~= "table" or type(info.State) ~= "table" or not info.State.Running
end

-- The call in its box, once started (box_call stops it).
local function call_in_box(self, box, fn, request, on_yield, timeout)
  local errs = {}
  if self.closed then raise(self, "closed", fn, "the jail was closed during the call") end -- while starting
  self.active[box] = true
  local on_output = self.on_output
  -- The step's own deadline: a jail whose frames keep the host decoding is
  -- stopped there too.
  local state = reader.new(self, on_yield, now() + timeout)
  local ok, r, rerr = pcall(box.run, box, COMMAND, {
    stdin = request, timeout = timeout,
    on_stdout = state.feed,
    on_stderr = function(chunk)
      errs[#errs + 1] = chunk
      if #errs > 64 then errs = { table.concat(errs):sub(-KEEP_STDERR) } end
      if on_output then on_output(chunk) end
    end,
  })
  self.active[box] = nil
  -- An error from a callback stopped the box: a protocol violation, or the
  -- user's own on_yield / on_output raising (passed on as it is).
  if not ok and r ~= reader.VIOLATION then error(r, 0) end
  if self.closed then raise(self, "closed", fn, "the jail was closed during the call") end
  if state.timed_out then raise(self, "timeout", fn, string_format("no answer within %gs", timeout), nil, r) end
  if state.bad or state.limit then return conclude(self, fn, state, r) end
  if not r or (r.code == 137 and not r.timed_out and not r.oom and gone(self, box)) then
    raise(self, "died", fn, "the jail's container went away during the call"
      .. (rerr and (": " .. tostring(rerr)) or " (killed or removed from outside)") .. tail_of(errs))
  end
  if r.timed_out then raise(self, "timeout", fn, string_format("no answer within %gs", timeout), nil, r) end
  if r.oom then
    raise(self, "oom", fn, "the jail ran out of memory (raise it with start = { memory = ... })", nil, r)
  end
  if not state.final then
    local how = r.code == 139 and "a segmentation fault" or r.code > 128 and ("signal " .. (r.code - 128))
      or ("exit code " .. r.code)
    raise(self, "crashed", fn, "the jail's Lua ended without an answer (" .. how .. ")" .. tail_of(errs), nil, r)
  end
  return conclude(self, fn, state, r)
end

local function box_call(self, fn, request, on_yield, timeout)
  local box, err
  if self.pool then
    box, err = self.pool:acquire(timeout)
  else
    local start = { image = self.image }
    for k, v in pairs(self.start) do start[k] = v end
    box, err = self.docker:start(start)
  end
  if not box then raise(self, "died", fn, "starting the jail's box: " .. err) end
  -- Destroyed on every way out, results or error, as `<close>` would (which
  -- LuaJIT lacks); a pool's box is removed in the background.
  local out = table_pack(pcall(call_in_box, self, box, fn, request, on_yield, timeout))
  if self.pool then self.pool:release(box) else box:stop() end
  if not out[1] then error(out[2], 0) end
  return table_unpack(out, 2, out.n)
end

-- The same call in this process: the runner's own code, the same frames,
-- parsers and codec; only the container is missing.
local function local_call(self, fn, request, on_yield)
  local state, user_error = reader.new(self, on_yield, nil), nil
  -- An error of the user's on_yield passes on as it is, as from a box.
  local function write(bytes)
    local ok, err = pcall(state.feed, bytes)
    if not ok then
      if err ~= reader.VIOLATION then user_error = { err } end
      error(reader.VIOLATION, 0)
    end
  end
  local ok, err = pcall(runner.serve, { dir = self.dir, request = request, write = write, isolated = true })
  if user_error then error(user_error[1], 0) end
  if not ok and err ~= reader.VIOLATION then
    raise(self, "crashed", fn, "the inmate's Lua failed: " .. tostring(err))
  end
  return conclude(self, fn, state)
end

-- jail:call(name | { name, timeout = s }, args... [, on_yield]) -> the
-- function's results. A last argument that is a function gets each value the
-- inmate function yields, as it yields it.
function Jail:call(what, ...)
  local fn, timeout = what, self.timeout
  if type(what) == "table" then
    local copts = options.check(what, { [1] = "string", timeout = "number" }, "call", 2)
    fn, timeout = copts[1], copts.timeout or timeout
  end
  if type(fn) ~= "string" then
    error("bad argument #1 to 'call' (the inmate function's name expected, got " .. type(fn) .. ")", 2)
  end
  if self.closed then raise(self, "closed", fn, "attempt to use a closed jail") end
  local args = table_pack(...)
  local on_yield
  if args.n > 0 and type(args[args.n]) == "function" then
    on_yield = args[args.n]
    args[args.n], args.n = nil, args.n - 1
  end
  local request = request_frame(self, fn, args)
  if self.local_mode then return local_call(self, fn, request, on_yield) end
  return box_call(self, fn, request, on_yield, timeout)
end

-- jail:close(): stops the boxes of calls in progress (they raise kind
-- "closed") and those of its pool; later calls raise. Idempotent.
function Jail:close()
  self.closed = true
  for box in pairs(self.active) do box:stop() end
  self.active = {}
  if self.pool then self.pool:close() end
end
jail_mt.__close = Jail.close

return _M
