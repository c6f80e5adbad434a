-- Byte-level specs for the sentinel scanner (src/sentinel.c), through
-- core.stream() armed with a per-command token: the shell ends each command by
-- printing TOKEN " " CODE "\n" on stdout and on stderr, CODE being the exit
-- code (1 to 10 digits, at most 2^31 - 1).
local core = require "lockup.core"
local B = require "support.bytes"
local C = require "support.compat"

local frame, bytes, splits = B.frame, B.bytes, B.splits

local function wire_of(frames)
	local t = {}
	for i, f in ipairs(frames) do t[i] = frame(f[1], f[2]) end
	return table.concat(t)
end

local function new_token() return "\1" .. core.random_hex(16) end

local T = "\1" .. "0f1e2d3c4b5a69788796a5b4c3d2e1f0"   -- this command's token
local OLD = "\1" .. "a1b2c3d4e5f60718293a4b5c6d7e8f90" -- a previous command's
local MALFORMED = "malformed sentinel in the shell's output (the session is out of step)"

-- A fresh stream armed with `tok` (default T).
local function armed(tok)
	local s = core.stream()
	s:arm(tok or T)
	return s
end

-- Feeds `wire` to `s` in one read, which must fail with `why` (default MALFORMED).
local function feed_fails(s, wire, why)
	local st, err = s:feed(wire)
	assert.is_nil(st)
	assert.equal(why or MALFORMED, err)
end

-- Feeds `pieces` to a stream armed with `tok`. Returns the outcomes other than
-- "more" joined by "," (a repeated "exit" counted once), stdout, stderr, the
-- stream, and the error of a failed feed.
local function run(pieces, tok)
	local s = armed(tok)
	local seen, out, err = {}, {}, {}
	for _, p in ipairs(pieces) do
		local st, why = s:feed(p)
		out[#out + 1], err[#err + 1] = s:take(1), s:take(2)
		if st == nil then
			return table.concat(seen, ","), table.concat(out), table.concat(err), s, why
		end
		assert.is_true(st == "more" or st == "exit", st)
		if st ~= "more" and not (st == "exit" and seen[#seen] == "exit") then seen[#seen + 1] = st end
	end
	return table.concat(seen, ","), table.concat(out), table.concat(err), s
end

local function partials(tok)
	local t = {}
	for k = 1, #tok - 1 do t[#t + 1] = tok:sub(1, k) .. "|" end
	return table.concat(t)
end

local cases = {
	{
		name = "output then a sentinel on each stream",
		frames = { { 1, "hello\n" .. T .. " 0\n" }, { 2, "warning\n" .. T .. " 0\n" } },
		seen = "exit", out = "hello\n", err = "warning\n", code = 0,
	},
	{
		name = "an exit code",
		frames = { { 1, "x" .. T .. " 17\n" }, { 2, T .. " 17\n" } },
		seen = "exit", out = "x", err = "", code = 17,
	},
	{
		name = "the largest exit code",
		frames = { { 1, T .. " 255\n" }, { 2, T .. " 255\n" } },
		seen = "exit", out = "", err = "", code = 255,
	},
	{
		name = "stderr's sentinel first",
		frames = { { 2, "e" .. T .. " 3\n" }, { 1, "o" }, { 1, T .. " 3\n" } },
		seen = "exit", out = "o", err = "e", code = 3,
	},
	{
		name = "stdout's sentinel alone does not end the command",
		frames = { { 1, "o" .. T .. " 0\n" }, { 2, "still running" } },
		seen = "", out = "o", err = "still running",
	},
	{
		name = "stderr's sentinel alone does not end the command",
		frames = { { 2, T .. " 0\n" }, { 1, "still running" } },
		seen = "", out = "still running", err = "",
	},
	{
		name = "the largest code the scanner takes (2^31 - 1)",
		frames = { { 1, T .. " 2147483647\n" }, { 2, T .. " 0\n" } },
		seen = "exit", out = "", err = "", code = 2147483647,
	},
	{
		name = "ten digits with leading zeros",
		frames = { { 1, T .. " 0000000042\n" }, { 2, T .. " 0\n" } },
		seen = "exit", out = "", err = "", code = 42,
	},
	{
		name = "every partial token in the output",
		frames = { { 1, partials(T) }, { 2, partials(T) }, { 1, T .. " 0\n" }, { 2, T .. " 0\n" } },
		seen = "exit", out = partials(T), err = partials(T), code = 0,
	},
	{
		name = "look-alike tokens in the output",
		frames = {
			{ 1, T:sub(1, -2) .. "g 0\n" .. T:upper() .. " 0\n" .. T:sub(2) .. " 0\n" .. "\1\1\1 0\n" },
			{ 1, T .. " 4\n" }, { 2, T .. " 4\n" },
		},
		seen = "exit", code = 4, err = "",
		out = T:sub(1, -2) .. "g 0\n" .. T:upper() .. " 0\n" .. T:sub(2) .. " 0\n" .. "\1\1\1 0\n",
	},
	{
		name = "a previous command's token in the output",
		frames = { { 1, OLD .. " 0\n" .. OLD .. " -\n" }, { 2, OLD .. " 5\n" } },
		seen = "", out = OLD .. " 0\n" .. OLD .. " -\n", err = OLD .. " 5\n",
	},
	{
		name = "bytes after the sentinel are dropped",
		frames = { { 1, "o" .. T .. " 0\nJUNK" }, { 2, T .. " 0\nMORE" }, { 1, "late" }, { 2, "late" } },
		seen = "exit", out = "o", err = "", code = 0,
	},
	{
		name = "NUL bytes and invalid UTF-8 around the token",
		frames = { { 1, "\0\xff\xc3(" .. T .. " 2\n" }, { 2, "\xed\xa0\x80\0" .. T .. " 2\n" } },
		seen = "exit", out = "\0\xff\xc3(", err = "\xed\xa0\x80\0", code = 2,
	},
	{
		name = "daemon error text (stream 3) goes to stderr unscanned",
		frames = { { 3, "exec failed: " .. T .. " 0\n" }, { 1, T .. " 126\n" } },
		seen = "", out = "", err = "exec failed: " .. T .. " 0\n",
	},
	{
		name = "zero-length frames around the sentinel",
		frames = { { 1, "" }, { 1, T }, { 1, "" }, { 1, " 9\n" }, { 2, "" }, { 2, T .. " 9\n" } },
		seen = "exit", out = "", err = "", code = 9,
	},
}

describe("sentinel", function()
	for _, case in ipairs(cases) do
		local wire = wire_of(case.frames)
		describe(case.name, function()
			local function check(seen, out, err, s, why, where)
				assert.is_nil(why, where)
				assert.equal(case.seen, seen, where)
				assert.equal(case.out, out, where)
				assert.equal(case.err, err, where)
				if case.code then assert.equal(case.code, s:code(), where) end
			end
			it("fed whole", function() check(run({ wire })) end)
			it("fed one byte at a time", function() check(run(bytes(wire))) end)
			it("cut in two at every offset", function()
				for i, pieces in splits(wire) do
					local seen, out, err, s, why = run(pieces)
					check(seen, out, err, s, why, "cut at " .. i)
				end
			end)
		end)
	end

	describe("a token split across frames", function()
		local sentinel = T .. " 17\n"
		it("at every offset, on stdout", function()
			for k = 0, #sentinel do
				local seen, out, err, s = run({ wire_of({
					{ 1, "out" .. sentinel:sub(1, k) }, { 1, sentinel:sub(k + 1) }, { 2, sentinel },
				}) })
				assert.equal("exit", seen, "split at " .. k)
				assert.equal("out", out, "split at " .. k)
				assert.equal("", err)
				assert.equal(17, s:code())
			end
		end)
		it("at every offset, interleaved with stderr's", function()
			for k = 0, #sentinel do
				local frames = {
					{ 1, sentinel:sub(1, k) }, { 2, "e" .. sentinel:sub(1, k) },
					{ 1, sentinel:sub(k + 1) }, { 2, sentinel:sub(k + 1) },
				}
				local seen, out, err, s = run({ wire_of(frames) })
				assert.equal("exit", seen, "split at " .. k)
				assert.equal("", out, "split at " .. k)
				assert.equal("e", err, "split at " .. k)
				assert.equal(17, s:code())
			end
		end)
		it("in one-byte frames", function()
			local frames = {}
			for c in sentinel:gmatch(".") do frames[#frames + 1] = { 1, c } end
			frames[#frames + 1] = { 2, sentinel }
			local seen, out = run({ wire_of(frames) })
			assert.equal("exit", seen)
			assert.equal("", out)
		end)
	end)

	it("holds back a possible token start until the next bytes decide", function()
		local s = armed()
		assert.equal("more", s:feed(frame(1, "out" .. T:sub(1, 10))))
		assert.equal("out", s:take(1))
		assert.equal("", s:take(1))
		assert.equal("more", s:feed(frame(1, T:sub(11, 20) .. "X")))
		assert.equal(T:sub(1, 20) .. "X", s:take(1))
	end)

	local bad_trailers = {
		{ "no value", "\n" },
		{ "a space and nothing", " \n" },
		{ "no space", "0\n" },
		{ "a tab", "\t0\n" },
		{ "two spaces", "  0\n" },
		{ "a sign", " -1\n" },
		{ "a dash (once a ready-for-stdin mark)", " -\n" },
		{ "two dashes", " --\n" },
		{ "a letter", " 1x\n" },
		{ "a trailing space", " 1 \n" },
		{ "CRLF", " 0\r\n" },
		{ "ten digits above 2^31 - 1", " 2147483648\n" },
		{ "the largest ten digits", " 9999999999\n" },
		{ "eleven digits", " 12345678901\n" },
		{ "eleven digits with leading zeros", " 00000000001\n" },
		{ "no newline in sight", " 0000000000000000000" },
	}
	describe("a malformed trailer", function()
		for _, case in ipairs(bad_trailers) do
			it("with " .. case[1] .. " fails", function()
				local wire = wire_of({ { 1, "out" .. T .. case[2] }, { 2, T .. " 0\n" } })
				for _, pieces in ipairs({ { wire }, bytes(wire) }) do
					local seen, out, _, _, why = run(pieces)
					assert.equal(MALFORMED, why)
					assert.equal("", seen)
					assert.equal("out", out)
				end
			end)
		end
		it("fails for good", function()
			local s = armed()
			feed_fails(s, frame(1, T .. " x\n"))
			feed_fails(s, frame(1, T .. " 0\n") .. frame(2, T .. " 0\n"))
		end)
	end)

	it("take(1) and take(2) return the output gathered since the last take", function()
		local s = armed()
		assert.equal("more", s:feed(frame(1, "a") .. frame(2, "b") .. frame(1, "c")))
		assert.equal("ac", s:take(1))
		assert.equal("", s:take(1))
		assert.equal("more", s:feed(frame(2, "d")))
		assert.equal("bd", s:take(2))
		assert.equal("", s:take(2))
		assert.has_error(function() s:take(3) end)
	end)

	it("ends one command and starts the next with a new token", function()
		local T2 = new_token()
		local s = armed()
		assert.equal("exit", s:feed(frame(1, "one" .. T .. " 0\n") .. frame(2, T .. " 0\n")))
		assert.equal("one", s:take(1))
		assert.equal(0, s:code())
		s:arm(T2)
		assert.equal("more", s:feed(frame(1, "two" .. T .. " 0\n") .. frame(2, T .. " 0\n")))
		assert.equal("exit", s:feed(frame(1, T2 .. " 42\n") .. frame(2, T2 .. " 42\n")))
		assert.equal("two" .. T .. " 0\n", s:take(1))
		assert.equal(T .. " 0\n", s:take(2))
		assert.equal(42, s:code())
	end)

	describe('" -" after the token (no longer a ready-for-stdin mark)', function()
		it("is a malformed trailer on stderr too", function()
			local s = armed()
			assert.equal("more", s:feed(frame(1, "o" .. T .. " 0\n")))
			feed_fails(s, frame(2, T .. " -\n"))
		end)
		it("fails even when the exit follows in the same read", function()
			feed_fails(armed(), frame(1, T .. " -\n" .. T .. " 0\n") .. frame(2, T .. " 0\n"))
		end)
	end)

	it("reports a bad frame header even after the exit in the same read", function()
		feed_fails(armed(), frame(1, T .. " 0\n") .. frame(2, T .. " 0\n") .. C.bin_pack(">BBBBI4", 9, 0, 0, 0, 0),
			"malformed frame header in Docker's multiplexed stream")
	end)

	describe("unarmed (s:arm() with no token)", function()
		it("passes everything through", function()
			local s = armed()
			s:arm()
			local wire = wire_of({ { 1, "a" .. T .. " 0\n" }, { 2, T .. " 0\n" }, { 1, T .. " -\n" } })
			for i = 1, #wire do assert.equal("more", s:feed(wire:sub(i, i))) end
			assert.equal("a" .. T .. " 0\n" .. T .. " -\n", s:take(1))
			assert.equal(T .. " 0\n", s:take(2))
		end)
		it("is how a fresh stream starts", function()
			local s = core.stream()
			assert.equal("more", s:feed(frame(1, T .. " 0\n") .. frame(2, T .. " 0\n")))
			assert.equal(T .. " 0\n", s:take(1))
		end)
	end)

	describe("s:arm(token)", function()
		local refused = {
			{ "an empty token", "" },
			{ "a first byte that recurs", "abca" },
			{ "a real-shaped token with \\1 inside", "\1" .. ("ab"):rep(8) .. "\1" .. ("cd"):rep(7) },
			{ "65 bytes", "\1" .. ("a"):rep(64) },
		}
		for _, case in ipairs(refused) do
			it("refuses " .. case[1], function()
				local s = core.stream()
				assert.has_error(function() s:arm(case[2]) end)
				-- and the stream is left unarmed
				assert.equal("more", s:feed(frame(1, "x") .. frame(2, "y")))
				assert.equal("x", s:take(1))
			end)
		end
		it("takes 64 bytes", function()
			local tok = "\1" .. ("a"):rep(63)
			local seen, out = run({ wire_of({ { 1, "o" .. tok .. " 0\n" }, { 2, tok .. " 0\n" } }) }, tok)
			assert.equal("exit", seen)
			assert.equal("o", out)
		end)
		it("takes a one-byte token", function()
			local seen, out, _, s = run({ wire_of({ { 1, "o" }, { 2, "# 5\n" }, { 1, "# 5\n" } }) }, "#")
			assert.equal("exit", seen)
			assert.equal("o", out)
			assert.equal(5, s:code())
		end)
	end)
end)
