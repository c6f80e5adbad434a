-- Byte-level specs for the inmate protocol's frame parser (src/frame.c), through
-- core.frames([max_bytes]): f:feed(bytes) -> {{type =, payload =}, ...} | nil,
-- err, frames_before; f:buffered() -> bytes of an incomplete frame held.
local core = require "lockup.core"
local B = require "support.bytes"
local C = require "support.compat"

local bytes, splits = B.bytes, B.splits

local function frame(kind, payload)
	return kind .. C.bin_pack(">I4", #payload) .. payload
end

-- Feeds `pieces` in order to a fresh parser; returns the frames as {type,
-- payload} pairs, then the failure (err) if any, and the parser.
local function run(pieces, max)
	local f = core.frames(max)
	local got = {}
	for _, p in ipairs(pieces) do
		local list, err, before = f:feed(p)
		for _, fr in ipairs(list or before) do got[#got + 1] = { fr.type, fr.payload } end
		if not list then return got, err, f end
	end
	return got, nil, f
end

local ERR_TYPE = "unknown frame type in the inmate protocol stream (not C, H, Y, P, R or E)"
local ERR_SIZE = "inmate protocol frame larger than the limit (see core.frames(max_bytes))"
local ERR_AFTER = "bytes after the final frame (R or E) of the inmate protocol stream"

local every_byte = {}
for b = 0, 255 do every_byte[#every_byte + 1] = string.char(b) end
every_byte = table.concat(every_byte)

local good = {
	{ name = "a call", wire = frame("C", "\0\0\0\1S\0\0\0\3abc"), want = { { "C", "\0\0\0\1S\0\0\0\3abc" } } },
	{
		name = "hello, yields, return",
		wire = frame("H", "hello") .. frame("Y", "1") .. frame("Y", "22") .. frame("R", "done"),
		want = { { "H", "hello" }, { "Y", "1" }, { "Y", "22" }, { "R", "done" } },
	},
	{ name = "an error at the end", wire = frame("H", "h") .. frame("E", "boom"), want = { { "H", "h" }, { "E", "boom" } } },
	{ name = "a zero-length payload", wire = frame("H", "") .. frame("Y", "") .. frame("R", ""),
		want = { { "H", "" }, { "Y", "" }, { "R", "" } } },
	{ name = "every byte value in a payload", wire = frame("Y", every_byte) .. frame("E", ""),
		want = { { "Y", every_byte }, { "E", "" } } },
	{
		name = "payloads that look like frames",
		wire = frame("Y", frame("R", "x")) .. frame("Y", "Z\255\255\255\255") .. frame("R", ""),
		want = { { "Y", frame("R", "x") }, { "Y", "Z\255\255\255\255" }, { "R", "" } },
	},
	{ name = "nothing at all", wire = "", want = {} },
}

describe("frames", function()
	for _, case in ipairs(good) do
		describe(case.name, function()
			it("fed whole: several frames in one feed, in order", function()
				local got, err, f = run({ case.wire })
				assert.is_nil(err)
				assert.same(case.want, got)
				assert.equal(0, f:buffered())
			end)
			it("fed one byte at a time", function()
				local got, err, f = run(bytes(case.wire))
				assert.is_nil(err)
				assert.same(case.want, got)
				assert.equal(0, f:buffered())
			end)
			it("cut in two at every offset", function()
				for i, pieces in splits(case.wire) do
					local got, err = run(pieces)
					assert.is_nil(err, "cut at " .. i)
					assert.same(case.want, got, "cut at " .. i)
				end
			end)
		end)
	end

	it("hands a frame out as soon as its last byte is in, and not before", function()
		local f = core.frames()
		local wire = frame("Y", "0123456789")
		assert.same({}, f:feed(wire:sub(1, 3)))
		assert.equal(3, f:buffered())
		assert.same({}, f:feed(wire:sub(4, 14)))
		assert.equal(14, f:buffered())
		assert.same({ { type = "Y", payload = "0123456789" } }, f:feed(wire:sub(15)))
		assert.equal(0, f:buffered())
	end)

	it("completes a zero-length frame with its header", function()
		local f = core.frames()
		assert.same({}, f:feed("H\0\0\0"))
		assert.same({ { type = "H", payload = "" } }, f:feed("\0"))
	end)

	it("accepts an empty feed anywhere", function()
		local wire = frame("H", "ab") .. frame("R", "")
		for i, pieces in splits(wire) do
			local got, err = run({ "", pieces[1], "", pieces[2], "" })
			assert.is_nil(err, "cut at " .. i)
			assert.same({ { "H", "ab" }, { "R", "" } }, got)
		end
	end)

	it("cuts a 1 MiB frame at every 4099th byte", function()
		local payload = every_byte:rep(4096)
		local wire = frame("H", "") .. frame("Y", payload) .. frame("R", "")
		local pieces = {}
		for i = 1, #wire, 4099 do pieces[#pieces + 1] = wire:sub(i, i + 4098) end
		local got, err = run(pieces)
		assert.is_nil(err)
		assert.equal(3, #got)
		assert.is_true(got[2][2] == payload)
	end)

	describe("limit", function()
		it("accepts a payload of exactly max_bytes", function()
			local got, err = run({ frame("Y", ("x"):rep(16)) }, 16)
			assert.is_nil(err)
			assert.same({ { "Y", ("x"):rep(16) } }, got)
		end)
		it("refuses max_bytes + 1 as soon as the length is in, keeping the frames before", function()
			local wire = frame("Y", "ok") .. frame("Y", ("x"):rep(17))
			for i, pieces in splits(wire) do
				local got, err = run(pieces, 16)
				assert.equal(ERR_SIZE, err, "cut at " .. i)
				assert.same({ { "Y", "ok" } }, got, "cut at " .. i)
			end
			local f = core.frames(16)
			assert.same({ nil, ERR_SIZE, {} }, { f:feed("Y\0\0\0\17") }) -- no payload needed to know
		end)
		it("of 0 takes zero-length frames only", function()
			local got, err = run({ frame("H", "") .. frame("Y", "x") }, 0)
			assert.equal(ERR_SIZE, err)
			assert.same({ { "H", "" } }, got)
		end)
		it("defaults to 4 MiB", function()
			assert.same({}, core.frames():feed("Y\0\64\0\0"))
			assert.same({ nil, ERR_SIZE, {} }, { core.frames():feed("Y\0\64\0\1") })
		end)
		it("can be 2^32 - 1 (the largest a frame can claim)", function()
			local f = core.frames(0xffffffff)
			assert.same({}, f:feed("Y\255\255\255\255abc"))
			assert.equal(8, f:buffered()) -- what came, not what was claimed
		end)
		it("must be a size (a programmer error otherwise)", function()
			assert.has_error(function() core.frames(-1) end)
			assert.has_error(function() core.frames(2 ^ 32) end)
			assert.has_error(function() core.frames("big") end)
		end)
	end)

	describe("refuses", function()
		local bad = {
			{ name = "an unknown type byte", wire = frame("H", "h") .. "Z\0\0\0\0", err = ERR_TYPE },
			{ name = "a lowercase type", wire = frame("H", "h") .. frame("y", "x"), err = ERR_TYPE },
			{ name = "a NUL type byte", wire = frame("H", "h") .. "\0", err = ERR_TYPE },
			{ name = "a Docker stream header", wire = frame("H", "h") .. "\1\0\0\0\0\0\0\1x", err = ERR_TYPE },
			{ name = "a frame after R", wire = frame("H", "h") .. frame("R", "") .. frame("Y", ""), err = ERR_AFTER,
				before = { { "H", "h" }, { "R", "" } } },
			{ name = "one byte after E", wire = frame("H", "h") .. frame("E", "e") .. "\n", err = ERR_AFTER,
				before = { { "H", "h" }, { "E", "e" } } },
			{ name = "an R after R", wire = frame("H", "h") .. frame("R", "") .. frame("R", ""), err = ERR_AFTER,
				before = { { "H", "h" }, { "R", "" } } },
		}
		for _, case in ipairs(bad) do
			describe(case.name, function()
				local before = case.before or { { "H", "h" } }
				it("with the frames before it, whatever the cut", function()
					for i, pieces in splits(case.wire) do
						local got, err = run(pieces)
						assert.equal(case.err, err, "cut at " .. i)
						assert.same(before, got, "cut at " .. i)
					end
				end)
				it("for good: later feeds fail too", function()
					local f = core.frames()
					assert.is_nil(f:feed(case.wire))
					local list, err, frames_before = f:feed(frame("Y", "fine"))
					assert.is_nil(list)
					assert.equal(case.err, err)
					assert.same({}, frames_before)
					assert.equal(0, f:buffered()) -- nothing held for a stream that is over
				end)
			end)
		end

		it("an unknown type at its first byte, without waiting for the length", function()
			assert.same({ nil, ERR_TYPE, {} }, { core.frames():feed("X") })
		end)

		it("a non-string feed (a programmer error)", function()
			assert.has_error(function() core.frames():feed({}) end)
		end)
	end)

	it("accepts empty feeds after the final frame", function()
		local f = core.frames()
		assert.equal(1, #f:feed(frame("R", "")))
		assert.same({}, f:feed(""))
		assert.equal(0, f:buffered())
	end)

	it("tells a stream cut short by what it holds", function()
		local _, err, f = run({ frame("H", "") .. frame("R", "abc"):sub(1, 6) })
		assert.is_nil(err)
		assert.equal(6, f:buffered())
	end)

	it("is a named class", function()
		local f = core.frames()
		assert.matches("^lockup.frames", tostring(f))
	end)
end)
