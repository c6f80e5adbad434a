-- Following one step's output to its end, over any lane: what `box:run` and
-- `box:exec` share. The lane moves bytes (lockup.lane.*); the stream
-- (lockup.core) holds the output policy: the sentinel per stream, the caps.
local scheduler = require "lockup.scheduler"
local core = require "lockup.core"

local math_min, math_max = math.min, math.max
local now = core.monotime
local NCPUS = core.ncpus()

local _M = {}

-- Seconds a step gets to end once its processes were asked to die: the kill
-- is one word to PID 1 or one step in the session shell, done in
-- milliseconds, and a call must return within its timeout plus one second.
_M.GRACE = 0.75
-- Within it, the kill is done again this often while the step goes on: a
-- sweep finds only the processes that exist when it runs, and a step's
-- shell may start the next one just after (`echo first; yes` cut at "first").
_M.KILL_AGAIN = 0.1

-- Arms `stream` for one step (token nil: no sentinel): output beyond
-- max_output per stream is dropped; a stream given to a callback has no cap
-- of its own, and is handed over in slices as it comes.
function _M.arm(box, stream, token, opts)
  local cap = opts.max_output or box.max_output
  local out, err = opts.on_stdout ~= nil, opts.on_stderr ~= nil
  stream:arm(token, not out and cap or 0, not err and cap or 0, out, err)
end

-- Hands stream k's new bytes to its callback, if any. A callback that
-- returns false wants no more: the stream is cut there, as at a cap, and the
-- step is stopped the same way ("truncated").
local function hand_over(stream, k, callback)
  if not callback then return nil end
  local chunk = stream:take(k)
  if #chunk > 0 and callback(chunk) == false then
    stream:cut(k)
    return "truncated"
  end
  return nil
end

-- Reads what the lane has for the stream and hands it to the callbacks, if
-- any; returns the lane's pump status, or "truncated" when a callback said
-- it wants no more.
function _M.pump(lane, stream, opts)
  local st, err = lane:pump(stream)
  local cut = hand_over(stream, 1, opts.on_stdout)
  cut = hand_over(stream, 2, opts.on_stderr) or cut
  if cut and (st == false or st == "more") then return cut end
  return st, err
end

-- Reads until the stream says how the step ended: "exit", "eof", "truncated"
-- (a cap was reached), "timeout", or nil, err. Callbacks get output as it
-- arrives; without them it stays in C until the end (no copies on the way).
-- It waits before the first read: a step just sent cannot have answered yet,
-- and the wait returns at once when bytes are there. The deadline holds
-- however fast the box writes: it is checked between reads too.
local function collect(lane, stream, opts, deadline)
  local st, err = false, nil
  while true do
    if st == false then
      if not lane:wait("r", deadline) then return "timeout" end
    elseif st == "more" then -- a budget or a slice read: the box may never stop writing
      if now() >= deadline then return "timeout" end
      scheduler.yield()
    else
      return st, err
    end
    st, err = _M.pump(lane, stream, opts)
  end
end

-- Sends `data` on the lane while reading the step's output meanwhile, so that
-- a box that writes without reading cannot stall the sender. Returns true,
-- "timeout", "eof" (the box's end closed first), or nil, err.
function _M.send(lane, stream, data, opts, deadline)
  local i = 1
  while i <= #data do
    local n, err = lane:send(data, i)
    if n == nil then return nil, err end
    if n then
      i = i + n
    else
      local st, perr = _M.pump(lane, stream, opts)
      if st == nil or st == "eof" then return st, perr end
      if (st == false and not lane:wait("rw", deadline)) or now() >= deadline then return "timeout" end
    end
  end
  return true
end

-- When to look again at a step's CPU time against `limit` (seconds): the
-- soonest the box could have spent the rest, on every CPU of the host.
local function cpu_check_at(meter, limit, deadline)
  local left = limit - (meter:used() or 0)
  return math_min(deadline, now() + math_max(meter.every, left / NCPUS))
end

-- Did the step overrun: its timeout, a cap, or its CPU limit?
function _M.overran(out)
  return out.timed_out or out.truncated or out.cpu_limited
end

-- Follows a step to its end. Past its deadline, its output cap or its
-- opts.cpu_limit (CPU seconds, read from `meter`: lockup.meter), `overrun()`
-- is called once: it has the step's processes killed (how depends on the
-- lane and on who holds the session: see lockup.session), and the step then
-- gets GRACE seconds to end (the kill done again every KILL_AGAIN), so that
-- a call returns within its timeout plus one second whatever the box does. If it does not end (the shell itself is
-- looping, or the kill could not be had), "timeout" says the box must go.
-- Fills out.stdout, out.stderr, out.truncated, out.timed_out,
-- out.cpu_limited; returns the status ("exit", "eof", "timeout") or nil, err.
function _M.follow(lane, stream, opts, deadline, out, overrun, meter)
  local killed, st, err = false, nil, nil
  local limit = meter and opts.cpu_limit
  local t1, t2 = stream:truncated()
  if t1 or t2 then st = "truncated" end -- a cap was reached while the command was sent
  while true do
    if not st then
      local until_ = deadline
      if killed then
        until_ = math_min(killed, now() + _M.KILL_AGAIN)
      elseif limit then
        until_ = cpu_check_at(meter, limit, deadline)
      end
      st, err = collect(lane, stream, opts, until_)
      if st == "timeout" and until_ < (killed or deadline) then
        if killed then -- a process the kill missed (one the step started after it): again
          if overrun then overrun(killed) end
          st = "running"
        elseif (meter:used() or 0) < limit then -- woken to look at the CPU time
          st = "running"
        else
          out.cpu_limited = true
        end
      end
    end
    if st == "timeout" and not killed and not out.cpu_limited then out.timed_out = true end
    if (st == "timeout" or st == "truncated") and not killed then
      killed = (out.timed_out or out.cpu_limited) and now() + _M.GRACE or math_min(deadline, now() + _M.GRACE)
      if overrun then overrun(killed) end
    elseif st ~= "truncated" and st ~= "running" then
      t1, t2 = stream:truncated()
      out.stdout = opts.on_stdout and "" or stream:take(1)
      out.stderr = opts.on_stderr and "" or stream:take(2)
      out.truncated = (t1 or t2) or nil
      return st, err
    end
    st = nil
  end
end

return _M
