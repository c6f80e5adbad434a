-- The host's side of one inmate call: the jail's frames followed as they
-- come (lockup.core's frame parser, payloads decoded by the codec), with the
-- limits a hostile jail meets there (its max_frame and max_values, a pause
-- between slices of a big frame, the call's deadline). See
-- docs/inmate-protocol.md (3.1, 3.2).
local core = require "lockup.core"
local compat = require "lockup.compat"
local codec = require "lockup.inmate.codec"
local scheduler = require "lockup.scheduler"

local setmetatable, type, tostring, error, ipairs = setmetatable, type, tostring, error, ipairs
local string_format, table_unpack = string.format, compat.unpack
local now = core.monotime

local _M = {}

-- Values decoded between two looks at the clock and the loop: a few ms.
local SLICE = 10000

-- Raised from inside the frame reader to end a call at the first protocol
-- violation (the reader's state says which).
local VIOLATION = setmetatable({}, { __tostring = function() return "inmate protocol violation" end })
_M.VIOLATION = VIOLATION

-- How a frame over the jail's max_frame is reported (core.frames says only
-- that it is over the limit).
local function frame_too_big(self)
  return string_format("the jail sent a frame larger than %d bytes, the jail's max_frame (raise it with "
    .. "lockup.inmate{ max_frame = bytes } if its answers can be that big)", self.max_frame)
end

-- The decoding limits of one call: the jail's max_values, and a pause between
-- slices of a big frame that lets the loop's other tasks run and ends the call
-- (VIOLATION, with state.timed_out) once its deadline has passed, or once the
-- jail was closed (the box is gone: the rest is not worth decoding). Local
-- mode has no deadline.
local function limits(self, state, deadline)
  return { max_values = self.max_values, slice = SLICE, pause = function()
    if deadline and (self.closed or now() >= deadline) then
      state.timed_out = not self.closed
      error(VIOLATION, 0)
    end
    scheduler.yield()
  end }
end

-- reader.new(jail, on_yield, deadline): follows the frames of one call of
-- `jail` (its max_frame, max_values and closed are read): hello first,
-- yields (each to on_yield), then one R or E. Returns the call's state table, whose feed(bytes) raises VIOLATION, with
-- state.bad (the protocol broken), state.limit (a limit reached) or
-- state.timed_out (past the deadline) saying why, at anything else.
function _M.new(self, on_yield, deadline)
  local frames, state = core.frames(self.max_frame), { hello = false }
  local lim = limits(self, state, deadline)
  local feed
  function state.feed(bytes)
    if state.bad or state.limit then error(VIOLATION, 0) end
    -- A jail past its timeout is not read any further, however fast it writes.
    if deadline and now() >= deadline then
      state.timed_out = true
      error(VIOLATION, 0)
    end
    feed(bytes)
    if state.bad or state.limit then error(VIOLATION, 0) end
  end
  -- Decodes a payload, or notes why not and returns nil.
  local function decode(f, list)
    local v, err, reached = (list and codec.decode_values or codec.decode_value)(f.payload, lim)
    if reached then
      state.limit = "the jail sent " .. err .. ", over the jail's max_values (raise it with lockup.inmate{ "
        .. "max_values = n } if its answers can hold that many)"
    elseif err then
      state.bad = err
    end
    return v
  end
  function feed(bytes)
    local list, err = frames:feed(bytes)
    if not list then
      if err:find("larger than the limit", 1, true) then state.limit = frame_too_big(self) else state.bad = err end
      return
    end
    for _, f in ipairs(list) do
      if state.final then state.bad = "a frame after the end of the call" return end
      if not state.hello then
        local hello = f.type == codec.HELLO and decode(f, false)
        if state.limit then return end
        if type(hello) ~= "table" or hello.protocol ~= codec.PROTOCOL then
          state.bad = string_format("the jail's runtime speaks protocol %s (%s), this lockup speaks %d: "
            .. "rebuild the image with this lockup (jail:build())", tostring(type(hello) == "table" and
            hello.protocol or "?"), tostring(type(hello) == "table" and hello.runtime or "no hello"), codec.PROTOCOL)
          return
        end
        state.hello = true
      elseif f.type == codec.PAD then
        if #f.payload > 0 then state.bad = "a P frame that is not empty" return end
      elseif f.type == codec.YIELD then
        local v = decode(f, true)
        if not v then return end
        if on_yield then on_yield(table_unpack(v, 1, v.n)) end
      elseif f.type == codec.RETURN then
        local v = decode(f, true)
        if not v then return end
        state.final, state.results = true, v
      elseif f.type == codec.ERROR then
        local e = decode(f, false)
        if state.limit then return end
        if type(e) ~= "table" or type(e.message) ~= "string" then state.bad = "a malformed error frame" return end
        state.final, state.error = true, e
      else
        state.bad = "an unexpected " .. f.type .. " frame"
      end
    end
  end
  return state
end

return _M
