-- Byte-level helpers for the parser specs (demux, sentinel, http):
-- `local B = require "support.bytes"` (.busted puts spec/ on the path).
local C = require "support.compat"

local B = {}

-- One frame of Docker's multiplexed stream: an 8-byte header (stream id, three
-- reserved bytes, big-endian payload length), then the payload. r1..r3 set the
-- reserved bytes (default 0).
function B.frame(stream, payload, r1, r2, r3)
  return C.bin_pack(">BBBBI4", stream, r1 or 0, r2 or 0, r3 or 0, #payload) .. payload
end

-- `str` as a list of one-byte pieces, to feed one byte at a time.
function B.bytes(str)
  local t = {}
  for i = 1, #str do t[i] = str:sub(i, i) end
  return t
end

-- Every way of cutting `str` in two (including the empty first and last piece),
-- or every `step`th: for i, pieces in splits(str) do ... end, with pieces =
-- { str:sub(1, i), str:sub(i + 1) } for i = 0, step, 2 * step, ... <= #str.
function B.splits(str, step)
  step = step or 1
  local i = -step
  return function()
    i = i + step
    if i <= #str then return i, { str:sub(1, i), str:sub(i + 1) } end
  end
end

return B
