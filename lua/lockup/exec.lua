-- box:exec: an argv run through the Engine's exec API (no shell involved),
-- its output on a hijacked connection of its own, which is an attach lane.
local core = require "lockup.core"
local compat = require "lockup.compat"
local step = require "lockup.step"
local attach = require "lockup.lane.attach"
local options = require "lockup.options"
local result = require "lockup.result"

local type, ipairs, error, tostring, pcall = type, ipairs, error, tostring, pcall
local string_format, math_max = string.format, math.max
local now = core.monotime

local _M = {}

-- env = { NAME = "value" } as the Engine's list, checked: a bad one raises at
-- the caller's caller (the user's code, for box:exec and docker:start).
function _M.env_list(env, fname)
  if not env then return nil end
  local list = {}
  for _, k in ipairs(options.sorted_keys(env)) do
    local v = env[k]
    if type(k) ~= "string" or k == "" or k:find("[=%z]") or (type(v) ~= "string" and type(v) ~= "number") then
      error(string_format("bad option 'env' to '%s' (a table of NAME = string expected)", fname), 3)
    end
    list[#list + 1] = k .. "=" .. v
  end
  return list
end

-- Sends an exec's stdin (a string, or a function returning the next chunk and
-- nil at the end) while reading its output, so that a process that stops
-- reading (it failed, or exited) cannot stall the sender: once the stream
-- ends, or the daemon refuses more, the rest is not sent and the exit code
-- tells what happened; past the deadline, step.follow handles the timeout.
-- Returns true, or nil, err when the source failed.
local function send_stdin(lane, stream, opts, deadline)
  local source, chunk, i = opts.stdin, "", 1
  if type(source) == "string" then
    local once = source
    source = function() local s = once; once = nil; return s end
  end
  while true do
    if i > #chunk then
      local err
      chunk, err = source()
      if chunk == nil then
        if err then return nil, "reading stdin: " .. tostring(err) end
        -- fails only if the stream is gone, which the exit code then tells; a
        -- cosocket has no shutdown, and there the box's `head -c` ends it (over
        -- TLS it does too when the size is known, and this is a spare)
        if lane.shutdown then lane:shutdown() end
        return true
      end
      if type(chunk) ~= "string" then return nil, "reading stdin: the source returned a " .. type(chunk) end
      i = 1
    end
    local n = lane:send(chunk, i)
    if n == nil then return true end -- the daemon closed the stream: the process ended
    if n then i = i + n end
    local st = step.pump(lane, stream, opts)
    if st == "eof" or st == nil then return true end
    if not n and st == false and not lane:wait("rw", deadline) then return true end
  end
end

-- Follows a started exec: its first bytes (`rest`), its stdin, its output to
-- the end; returns step.follow's status (or stdin's failure) and fills `out`.
local function follow(lane, stream, rest, opts, deadline, out, overrun, meter)
  local st, err = stream:feed(rest)
  if st and opts.stdin then st, err = send_stdin(lane, stream, opts, deadline) end
  if st then st, err = step.follow(lane, stream, opts, deadline, out, overrun, meter) end
  return st, err
end

-- Inside nginx a cosocket cannot shut down its sending side, so the process
-- would never see its stdin end: there it reads exactly `size` bytes through
-- `head -c` in the box instead. Over TLS too when the size is known: a TCP
-- half-close under TLS (what the docker CLI sends) ends the input for dockerd,
-- but a TLS proxy on the way may not pass it on; a source of unknown size
-- still ends that way (the lane shuts down its side). Returns the argv to
-- run, or nil, err.
local function delimited(box, argv, opts)
  local d = box.docker
  if opts.stdin == nil or not (d.cosockets or d.tls) then return argv end
  local size = type(opts.stdin) == "string" and #opts.stdin or opts.stdin_size
  if not size and d.tls then return argv end
  if not size then
    return nil, "inside nginx an exec's stdin needs a known size (a string, or a function with opts.stdin_size): "
      .. "a cosocket cannot end it by shutting down its side"
  end
  local wrapped = { box.shell, "-c", 'head -c "$0" | "$@"', string_format("%d", size) }
  for i = 1, #argv do wrapped[#wrapped + 1] = argv[i] end
  return wrapped
end

-- Podman (4.3) loses an exec's output when the process ends with some of its
-- stdin unread (conmon closes the attach socket on unread bytes: the reset
-- ends the stream with "Error: read unixpacket ...: connection reset by
-- peer" in place of the output, or cuts the connection). There a shell in
-- the box reads the rest of stdin after the process ends, and exits with
-- its code: the output and code are exact, but all of stdin is sent even
-- when the process stops reading early. Returns the argv to run.
local function drained(box, argv, opts)
  if opts.stdin == nil or box.docker.engine ~= "podman" then return argv end
  local wrapped = { box.shell, "-c", '"$@"; c=$?; cat >/dev/null; exit $c', "lockup-stdin" }
  for i = 1, #argv do wrapped[#wrapped + 1] = argv[i] end
  return wrapped
end

-- The exec's request body.
local function exec_body(box, argv, opts)
  return {
    AttachStdin = opts.stdin ~= nil, AttachStdout = true, AttachStderr = true, Tty = false,
    Cmd = argv, Env = _M.env_list(opts.env, "exec"), WorkingDir = opts.workdir, User = opts.user or box.user,
  }
end

-- Creates and starts an exec, hijacked: { path, conn, rest } or nil, err
-- (lockup.process's too: a body with Tty gets a terminal).
function _M.open(box, body, fail, deadline)
  local d = box.docker
  local status, created = d:request("POST", "/containers/" .. box.id .. "/exec", { body = body, deadline = deadline })
  if not status then return nil, fail .. created end
  local path = "/exec/" .. created.Id
  local conn, rest
  status, conn, rest = d:request("POST", path .. "/start", { body = { Detach = false, Tty = body.Tty }, hijack = true,
    deadline = deadline })
  if not status then return nil, fail .. conn end
  return { path = path, conn = conn, rest = rest }
end

-- Runs argv in the box (its lock held) and returns a result, or nil, err.
-- `overrun`: what step.follow does past the deadline or a cap (nil: nothing,
-- for the exec that sweeps). The Engine's calls share the call's deadline: a
-- daemon that stops answering cannot hold the call past it.
function _M.run(box, argv, opts, overrun)
  local started = now()
  local wrapped, why = delimited(box, argv, opts)
  if not wrapped then return nil, why end
  wrapped = drained(box, wrapped, opts)
  local deadline = started + (opts.timeout or box.timeout)
  local fail = "exec in box " .. box.id:sub(1, 12) .. ": "
  local ex, err = _M.open(box, exec_body(box, wrapped, opts), fail, deadline)
  if not ex then return nil, err end
  local stream = core.stream()
  step.arm(box, stream, nil, opts)
  local lane = attach.wrap(ex.conn)
  local out = {}
  -- The lane is closed even when a callback raised: left open, it would hold
  -- up the box's removal while dockerd waits to copy the rest of a busy
  -- exec's output into it (20 s and more for a jail that floods its frames).
  local ok, st, ferr = pcall(follow, lane, stream, ex.rest, opts, deadline, out, overrun, box.meter)
  lane:close()
  if not ok then error(st, 0) end
  out.duration = now() - started
  -- The kill (in the session) could not be had in time: the box was stopped.
  if box.dead and step.overran(out) then out.box_stopped = true end
  if st == "timeout" or out.box_stopped then -- killed and still not ended, or the box is gone
    out.timed_out = out.timed_out or st == "timeout"
    return result.new(out)
  elseif st ~= "eof" then
    return nil, fail .. tostring(ferr)
  end
  -- the exit code: within the second past the deadline that a call may take
  local status, info = box.docker:request("GET", ex.path .. "/json",
    { deadline = math_max(deadline + 0.9, now() + 0.05) })
  if status then
    out.code = compat.tointeger(info.ExitCode)
  elseif not step.overran(out) then -- a process killed by lockup: its code says nothing more
    return nil, fail .. info
  end
  return result.new(out)
end

return _M
