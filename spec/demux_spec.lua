-- Byte-level specs for the Docker stream demultiplexer (src/demux.c), through
-- core.stream() with no sentinel armed: every payload byte is output.
local core = require "lockup.core"
local B = require "support.bytes"
local C = require "support.compat"

local frame, bytes, splits = B.frame, B.bytes, B.splits

-- Feeds `pieces` in order to a fresh stream; returns stdout, stderr, and the
-- first failure (nil, err) if any. Asserts every successful feed says "more".
local function run(pieces)
	local s = core.stream()
	local out, err = {}, {}
	for _, p in ipairs(pieces) do
		local st, why = s:feed(p)
		out[#out + 1], err[#err + 1] = s:take(1), s:take(2)
		if st == nil then
			return table.concat(out), table.concat(err), why
		end
		assert.equal("more", st)
	end
	return table.concat(out), table.concat(err)
end

local hex = string.rep("\xde\xad\xbe\xef", 4)
local good = {
	{ name = "one stdout frame", wire = frame(1, "hello\n"), out = "hello\n", err = "" },
	{ name = "one stderr frame", wire = frame(2, "oops\n"), out = "", err = "oops\n" },
	{
		name = "interleaved stdout and stderr",
		wire = frame(1, "a") .. frame(2, "b") .. frame(1, "cd") .. frame(2, "ef"),
		out = "acd", err = "bef",
	},
	{
		name = "zero-length frames anywhere",
		wire = frame(1, "") .. frame(2, "") .. frame(1, "x") .. frame(1, "") .. frame(2, "y") .. frame(2, ""),
		out = "x", err = "y",
	},
	{ name = "only zero-length frames", wire = frame(1, "") .. frame(2, ""), out = "", err = "" },
	{
		name = "stream 3 (daemon error text) is reported as stderr",
		wire = frame(1, "out") .. frame(3, "OCI runtime exec failed: exec: \"nope\": not found\r\n"),
		out = "out", err = "OCI runtime exec failed: exec: \"nope\": not found\r\n",
	},
	{ name = "stream 0 (stdin) carries nothing for the caller", wire = frame(0, "in") .. frame(1, "o"), out = "o", err = "" },
	{
		name = "NUL bytes and invalid UTF-8 kept byte for byte",
		wire = frame(1, "\0\xff\xfe\xc3(\xe2\x82\0") .. frame(2, "\xed\xa0\x80\0\0" .. hex),
		out = "\0\xff\xfe\xc3(\xe2\x82\0", err = "\xed\xa0\x80\0\0" .. hex,
	},
	{
		name = "payload that looks like a header",
		wire = frame(1, frame(2, "inner")) .. frame(2, C.bin_pack(">I4I4", 0x09000000, 0xffffffff)),
		out = frame(2, "inner"), err = C.bin_pack(">I4I4", 0x09000000, 0xffffffff),
	},
	{
		name = "a frame longer than a read",
		wire = frame(1, string.rep("0123456789abcdef", 4500)) .. frame(2, "end"),
		out = string.rep("0123456789abcdef", 4500), err = "end",
		big = true,
	},
}

describe("demux", function()
	for _, case in ipairs(good) do
		describe(case.name, function()
			it("fed whole", function()
				local out, err, why = run({ case.wire })
				assert.is_nil(why)
				assert.equal(case.out, out)
				assert.equal(case.err, err)
			end)
			if not case.big then
				it("fed one byte at a time", function()
					local out, err, why = run(bytes(case.wire))
					assert.is_nil(why)
					assert.equal(case.out, out)
					assert.equal(case.err, err)
				end)
				it("cut in two at every offset", function()
					for i, pieces in splits(case.wire) do
						local out, err, why = run(pieces)
						assert.is_nil(why, "cut at " .. i)
						assert.equal(case.out, out, "stdout, cut at " .. i)
						assert.equal(case.err, err, "stderr, cut at " .. i)
					end
				end)
			end
		end)
	end

	it("cuts a big frame at every 4099th byte", function()
		local payload = {}
		for i = 1, 70000 do payload[i] = string.char(i % 251) end
		payload = table.concat(payload)
		local wire = frame(2, "e") .. frame(1, payload) .. frame(2, "f")
		local pieces = {}
		for i = 1, #wire, 4099 do pieces[#pieces + 1] = wire:sub(i, i + 4098) end
		local out, err, why = run(pieces)
		assert.is_nil(why)
		assert.equal(payload, out)
		assert.equal("ef", err)
	end)

	it("passes payload on as it arrives, before the frame is complete", function()
		local s = core.stream()
		local wire = frame(1, "0123456789")
		assert.equal("more", s:feed(wire:sub(1, 3)))   -- half a header
		assert.equal("", s:take(1))
		assert.equal("more", s:feed(wire:sub(4, 12)))  -- rest of header, 4 payload bytes
		assert.equal("0123", s:take(1))
		assert.equal("", s:take(1))                    -- taken
		assert.equal("more", s:feed(wire:sub(13)))
		assert.equal("456789", s:take(1))
	end)

	it("reads a header split across three reads", function()
		local s = core.stream()
		local wire = frame(2, "split header")
		assert.equal("more", s:feed(wire:sub(1, 1)))
		assert.equal("more", s:feed(wire:sub(2, 5)))
		assert.equal("more", s:feed(wire:sub(6, 8)))
		assert.equal("", s:take(2))
		assert.equal("more", s:feed(wire:sub(9)))
		assert.equal("split header", s:take(2))
		assert.equal("", s:take(1))
	end)

	it("accepts an empty feed anywhere", function()
		local wire = frame(1, "ab")
		for i, pieces in splits(wire) do
			local out, err, why = run({ "", pieces[1], "", pieces[2], "" })
			assert.is_nil(why, "cut at " .. i)
			assert.equal("ab", out)
			assert.equal("", err)
		end
	end)

	local bad = {
		{ name = "stream id 4", head = C.bin_pack(">BBBBI4", 4, 0, 0, 0, 1) },
		{ name = "stream id 255", head = C.bin_pack(">BBBBI4", 255, 0, 0, 0, 1) },
		{ name = "reserved byte 1 set", head = C.bin_pack(">BBBBI4", 1, 1, 0, 0, 1) },
		{ name = "reserved byte 2 set", head = C.bin_pack(">BBBBI4", 1, 0, 0x80, 0, 1) },
		{ name = "reserved byte 3 set", head = C.bin_pack(">BBBBI4", 2, 0, 0, 0xff, 1) },
		{ name = "a TTY stream's plain text", head = "total 4\ndrwxr" },
	}
	for _, case in ipairs(bad) do
		describe("refuses " .. case.name, function()
			local before = frame(1, "kept") .. frame(2, "kept too")
			local wire = before .. case.head .. "x" .. frame(1, "never")
			it("with a clear message, keeping the output before it", function()
				local out, err, why = run({ wire })
				assert.equal("malformed frame header in Docker's multiplexed stream", why)
				assert.equal("kept", out)
				assert.equal("kept too", err)
			end)
			it("whatever the cut", function()
				for i, pieces in splits(wire) do
					local out, err, why = run(pieces)
					assert.equal("malformed frame header in Docker's multiplexed stream", why, "cut at " .. i)
					assert.equal("kept", out, "cut at " .. i)
					assert.equal("kept too", err, "cut at " .. i)
				end
			end)
			it("and for good: later feeds fail too", function()
				local s = core.stream()
				assert.is_nil(s:feed(wire))
				local st, why = s:feed(frame(1, "fine"))
				assert.is_nil(st)
				assert.matches("malformed frame header", why)
				assert.equal("kept", s:take(1))
			end)
		end)
	end
end)

describe("stream caps", function()

	it("keeps at most the cap per stream, says so once, and keeps counting the sentinel", function()
		local s = core.stream()
		local tok = "\1" .. ("a"):rep(32)
		s:arm(tok, 5, 0)
		assert.equal("truncated", s:feed(frame(1, "0123456789")))
		assert.equal("more", s:feed(frame(1, "more") .. frame(2, ("e"):rep(100))))
		assert.equal("exit", s:feed(frame(1, tok .. " 0\n") .. frame(2, tok .. " 0\n")))
		assert.equal("01234", s:take(1))
		assert.equal(("e"):rep(100), s:take(2))
		assert.same({ true, false }, { s:truncated() })
		s:arm(tok, 5, 5)
		assert.same({ false, false }, { s:truncated() })
	end)
end)
