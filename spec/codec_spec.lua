-- Specs for the inmate protocol's value codec (lua/lockup/inmate/codec.lua):
-- round trips, the byte layout docs/inmate-protocol.md documents, what cannot
-- be sent, and hand-written hostile input for the decoder, which must answer
-- nil, "malformed ... at byte N" and never throw.
local codec = require "lockup.inmate.codec"
local C = require "support.compat"

local pack = C.bin_pack
-- The smallest 64-bit integer: an integer on Lua 5.4; on LuaJIT, which has no
-- integer subtype, the same value as a double (integral, so it travels as I).
local MININT = math.mininteger or -2 ^ 63
local enc, dec = codec.encode_value, codec.decode_value

-- A value's bytes, spelled out as the docs give them.
local function I(v) return "I" .. pack(">i8", v) end
local function D(v) return "D" .. pack(">d", v) end
local function S(v) return "S" .. pack(">s4", v) end
local function M(count, ...) return "M" .. pack(">I4", count) .. table.concat({ ... }) end
local function L(count, ...) return pack(">I4", count) .. table.concat({ ... }) end

local function round(v)
	local got, err = dec(enc(v))
	assert.is_nil(err)
	return got
end

local every_byte = {}
for b = 0, 255 do every_byte[#every_byte + 1] = string.char(b) end
every_byte = table.concat(every_byte)

describe("codec round trips", function()
	local cases = {
		{ "nil", nil }, { "true", true }, { "false", false },
		{ "0", 0 }, { "1", 1 }, { "-1", -1 },
		{ "the smallest integer", MININT },
		{ "1.0", 1.0 }, { "0.5", 0.5 }, { "-2.25", -2.25 }, { "1e308", 1e308 }, { "smallest subnormal", 4.9e-324 },
		{ "2^63 as a float", 2.0 ^ 63 }, { "inf", math.huge }, { "-inf", -math.huge },
		{ "empty string", "" }, { "text", "hello, jail" }, { "every byte 0..255", every_byte },
		{ "NUL bytes and invalid UTF-8", "\0\xff\xfe\xc3(\0" },
		{ "a string that looks like an encoding", M(1, S("k"), I(1)) },
		{ "empty table", {} },
		{ "array", { 1, "two", 3.0, false } },
		{ "sparse array", { [1] = "a", [3] = "c", [1000000] = "far" } },
		{ "record", { name = "x", nested = { deeper = { deepest = { true } } } } },
		{ "every key type", { [1] = 1, [-7] = 2, [1.5] = 3, [math.huge] = 4, [-math.huge] = 5, [true] = 6, [false] = 7,
			[""] = 8, [every_byte] = 9, [MININT] = 10 } },
	}
	-- Lua 5.4 only: the largest integer (2^63 - 1 has no double on LuaJIT).
	if C.INTEGERS then cases[#cases + 1] = { "math.maxinteger", math.maxinteger } end
	for _, case in ipairs(cases) do
		it(case[1], function()
			local got = round(case[2])
			assert.same(case[2], got)
			-- integer or float: a subtype Lua 5.4 has and LuaJIT does not
			if C.INTEGERS and type(case[2]) == "number" then assert.equal(math.type(case[2]), math.type(got)) end
		end)
	end

	-- Lua 5.4 only: LuaJIT has no integer subtype, so 1 and 1.0 are one value there.
	if C.INTEGERS then
		it("keeps integer and float apart: 1 and 1.0", function()
			assert.equal("integer", math.type(round(1)))
			assert.equal("float", math.type(round(1.0)))
			assert.equal("float", math.type(round({ 1.0 })[1]))
			assert.are_not.equal(enc(1), enc(1.0))
		end)
	end

	it("keeps the sign of -0.0", function()
		local z = round(-0.0)
		if C.INTEGERS then assert.equal("float", math.type(z)) end -- a subtype of 5.4 only
		assert.equal(-math.huge, 1 / z)
		assert.equal(math.huge, 1 / round(0.0))
	end)

	it("keeps NaN", function()
		local nan = round(0 / 0)
		assert.is_true(nan ~= nan)
		if C.INTEGERS then assert.equal("float", math.type(nan)) end -- a subtype of 5.4 only
	end)

	it("moves a 16 MiB string byte for byte", function()
		local big = every_byte:rep(16 * 4096)
		assert.equal(16 * 1024 * 1024, #big)
		assert.is_true(big == round(big))
	end)

	it("encodes a table that appears twice (no cycle) twice", function()
		local shared = { x = 1 }
		local got = round({ a = shared, b = shared, c = { shared } })
		assert.same({ x = 1 }, got.a)
		assert.same({ x = 1 }, got.c[1])
		assert.are_not.equal(got.a, got.b) -- two copies now: identity does not cross
	end)

	it("sends raw contents: no metatable, no __pairs, no __index", function()
		local t = setmetatable({ own = 1 }, {
			__index = function() return "inherited" end,
			__pairs = function() error("__pairs must not be called") end,
		})
		local got = round(t)
		assert.same({ own = 1 }, got)
		assert.is_nil(getmetatable(got))
	end)

	it("nests tables 100 deep, both ways", function()
		local t = "bottom"
		for _ = 1, 100 do t = { t } end
		local got = round(t)
		for _ = 1, 100 do got = got[1] end
		assert.equal("bottom", got)
	end)

	describe("values lists", function()
		it("keep n, nil holes and trailing nils", function()
			local t = assert(codec.decode_values(codec.encode_values(5, nil, 2, nil, "four", nil)))
			assert.same({ n = 5, [2] = 2, [4] = "four" }, t)
		end)
		it("of zero values", function()
			assert.same({ n = 0 }, codec.decode_values(codec.encode_values(0)))
		end)
		it("of only nils", function()
			assert.same({ n = 3 }, codec.decode_values(codec.encode_values(3, nil, nil, nil)))
		end)
		it("of the first n arguments only", function()
			assert.same({ n = 2, "a", "b" }, codec.decode_values(codec.encode_values(2, "a", "b", "c")))
		end)
		it("from a packed table", function()
			local t = C.pack(1, nil, { 3 })
			assert.same(t, codec.decode_values(codec.encode_list(t)))
		end)
		it("take n = #t when t.n is missing", function()
			assert.same({ n = 2, "a", "b" }, codec.decode_values(codec.encode_list({ "a", "b" })))
		end)
		it("allow 100 nested tables in each item", function()
			local t = {}
			for _ = 2, 100 do t = { t } end
			assert.is_table(codec.decode_values(codec.encode_values(2, "x", t)))
		end)
	end)
end)

describe("codec byte layout", function()
	local cases = {
		{ "nil", nil, "N" }, { "false", false, "F" }, { "true", true, "T" },
		{ "integer 1", 1, "I\0\0\0\0\0\0\0\1" },
		{ "integer -2", -2, "I\xff\xff\xff\xff\xff\xff\xff\xfe" },
		{ "float 0.5", 0.5, "D\x3f\xe0\0\0\0\0\0\0" },
		{ "float -0.0", -0.0, "D\x80\0\0\0\0\0\0\0" },
		{ "string", "ab", "S\0\0\0\2ab" },
		{ "table", { x = false }, "M\0\0\0\1S\0\0\0\1xF" },
		{ "nested table", { { 7 } }, "M\0\0\0\1I\0\0\0\0\0\0\0\1M\0\0\0\1I\0\0\0\0\0\0\0\1I\0\0\0\0\0\0\0\7" },
	}
	-- Lua 5.4 only: 1.0 is a float there; on LuaJIT it is the integer 1.
	if C.INTEGERS then cases[#cases + 1] = { "float 1.0", 1.0, "D\x3f\xf0\0\0\0\0\0\0" } end
	for _, case in ipairs(cases) do
		it(case[1], function() assert.equal(case[3], enc(case[2])) end)
	end

	it("values list: a u32 count, then the values", function()
		assert.equal("\0\0\0\3TNS\0\0\0\1x", codec.encode_values(3, true, nil, "x"))
		assert.equal("\0\0\0\0", codec.encode_values(0))
	end)

	it("frame: type byte, u32 length, payload", function()
		assert.equal("Y\0\0\0\0", codec.frame("Y", ""))
		assert.equal("R\0\0\0\4\0\0\0\0", codec.frame("R", codec.encode_values(0)))
		assert.equal("H\0\0\1\0" .. ("x"):rep(256), codec.frame("H", ("x"):rep(256)))
	end)
end)

describe("codec refuses to send", function()
	local co = coroutine.create(function() end)
	local cyc = {}
	cyc.me = cyc
	local a, b = {}, {}
	a.b, b.a = b, a
	local cases = {
		{ "a function", function() end, "cannot send a function (at value)" },
		{ "a C function", print, "cannot send a function (at value)" },
		{ "userdata", io.stdout, "cannot send a userdata (at value)" },
		{ "a thread", co, "cannot send a thread (at value)" },
		{ "a function deep inside", { args = { 1, { cb = print } } }, "cannot send a function (at value.args[2].cb)" },
		{ "a value under an odd key", { ["a b"] = { [1.5] = print } }, 'cannot send a function (at value["a b"][1.5])' },
		{ "a value under a boolean key", { [true] = print }, "cannot send a function (at value[true])" },
		{ "a table that contains itself", cyc, "cannot send a table that contains itself (at value.me)" },
		{ "a cycle through two tables", { a }, "cannot send a table that contains itself (at value[1].b.a)" },
		{ "a table as a key", { x = { [{}] = 1 } }, "cannot send a table as a table key (at value.x)" },
		{ "a function as a key", { [print] = 1 }, "cannot send a function as a table key (at value)" },
	}
	for _, case in ipairs(cases) do
		it(case[1], function()
			local ok, err = pcall(enc, case[2])
			assert.is_false(ok)
			assert.equal(case[3], err)
		end)
	end

	it("tables nested more than 100 deep, saying where without a 100-key path", function()
		local t = {}
		for _ = 1, 100 do t = { t } end
		local ok, err = pcall(enc, t)
		assert.is_false(ok)
		assert.equal("cannot send tables nested deeper than 100 (at value[1][1][1][1][1]<90 more>[1][1][1][1][1])", err)
	end)

	it("names the list and the position in a values list", function()
		local ok, err = pcall(codec.encode_list, C.pack("x", { cb = print }), "args")
		assert.is_false(ok)
		assert.equal("cannot send a function (at args[2].cb)", err)
		ok, err = pcall(codec.encode_values, 3, nil, nil, co)
		assert.is_false(ok)
		assert.equal("cannot send a thread (at values[3])", err)
	end)

	it("an n that is not a count (a programmer error)", function()
		assert.has_error(function() codec.encode_values(-1) end)
		assert.has_error(function() codec.encode_values(1.5, "x") end)
		assert.has_error(function() codec.encode_list({ n = "2" }) end)
	end)

	it("a frame of an unknown type or a non-string payload (programmer errors)", function()
		assert.has_error(function() codec.frame("Z", "") end)
		assert.has_error(function() codec.frame("YY", "") end)
		assert.has_error(function() codec.frame("Y", 1) end)
	end)
end)

describe("codec decoding hostile input", function()
	local nan = pack(">d", 0 / 0)
	local function nest(k, inner) return M(1, I(1)):rep(k) .. inner end
	local cases = {
		{ "nothing", "", "truncated %(a value expected%) at byte 1$" },
		{ "an unknown tag", "X", "unknown tag 0x58 at byte 1$" },
		{ "a lowercase tag", "t", "unknown tag 0x74 at byte 1$" },
		{ "a NUL tag", "\0", "unknown tag 0x00 at byte 1$" },
		{ "a truncated integer", "I\0\0\0", "truncated number at byte 1$" },
		{ "a truncated float", "D" .. nan:sub(1, 7), "truncated number at byte 1$" },
		{ "a truncated string length", "S\0\0\0", "truncated string length at byte 1$" },
		{ "a string longer than the input", "S\0\0\0\5abcd", "string length 5 larger than the bytes left at byte 1$" },
		{ "a string claiming 4 GiB", "S\xff\xff\xff\xffabc", "string length 4294967295 larger than the bytes left at byte 1$" },
		{ "a truncated table count", "M\0\0", "truncated table count at byte 1$" },
		{ "a table claiming 4 billion pairs", "M\xff\xff\xff\xff" .. ("T"):rep(100),
			"table count 4294967295 larger than the bytes left can hold at byte 1$" },
		{ "a table count one too big", M(2, "TTT"), "table count 2 larger than the bytes left can hold at byte 1$" },
		{ "a table cut after a key", M(1, S("k")), "truncated %(a value expected%) at byte 12$" },
		{ "a nil key", M(1, "N", "T"), "nil table key at byte 6$" },
		{ "a table key", M(1, M(0), "T"), "table as a table key at byte 6$" },
		{ "a NaN key", M(1, "D" .. nan, "T"), "NaN table key at byte 6$" },
		{ "an unknown key tag", M(1, "?", "T"), "unknown tag 0x3f at byte 6$" },
		{ "a nil value", M(1, S("k"), "N"), "nil table value at byte 12$" },
		{ "a bad value in a table", M(1, S("k"), "Z"), "unknown tag 0x5a at byte 12$" },
		{ "a duplicate key", M(2, S("k"), "T", S("k"), "F"), "duplicate table key at byte 13$" },
		{ "1 and 1.0 as two keys", M(2, I(1), "T", D(1.0), "F"), "duplicate table key at byte 16$" },
		{ "0 and -0.0 as two keys", M(2, D(-0.0), "T", I(0), "F"), "duplicate table key at byte 16$" },
		{ "trailing bytes", "TT", "1 trailing bytes at byte 2$" },
		{ "trailing bytes after a table", M(0) .. "\0\0", "2 trailing bytes at byte 6$" },
		{ "101 nested tables", nest(101, "T"), "tables nested deeper than 100 at byte 1401$" },
		{ "a million nested tables", nest(1000000, "T"), "tables nested deeper than 100 at byte 1401$" },
		{ "nesting through keys' values", M(1, S("a"), M(1, S("b"), nest(99, "T"))),
			"tables nested deeper than 100 at byte 1395$" },
	}
	for _, case in ipairs(cases) do
		it("refuses " .. case[1], function()
			local ok, v, err = pcall(dec, case[2])
			assert.is_true(ok, "threw: " .. tostring(v))
			assert.is_nil(v)
			assert.is_string(err)
			assert.matches("^malformed value: ", err)
			assert.matches(case[3], err)
		end)
	end

	it("reads 100 nested tables", function()
		local v = assert(dec(nest(100, "T")))
		for _ = 1, 100 do v = v[1] end
		assert.is_true(v)
	end)

	it("reads a nil as nil with no error", function()
		local v, err = dec("N")
		assert.is_nil(v)
		assert.is_nil(err)
	end)

	it("takes a float key with an integral value as the integer key (Lua's rule)", function()
		local t = assert(dec(M(1, D(2.0), "T")))
		assert.is_true(t[2])
		if C.INTEGERS then assert.equal("integer", math.type(next(t))) end -- a subtype of 5.4 only
	end)

	it("answers a lie about a count at once, without work for it", function()
		local t0 = os.clock()
		for _ = 1, 1000 do
			assert.is_nil(dec("M\xff\xff\xff\xff"))
			assert.is_nil(codec.decode_values("\xff\xff\xff\xff"))
		end
		assert.is_true(os.clock() - t0 < 1)
	end)

	local lists = {
		{ "nothing", "", "truncated count at byte 1$" },
		{ "a truncated count", "\0\0\1", "truncated count at byte 1$" },
		{ "a count larger than the bytes left", L(2, "T"), "count 2 larger than the bytes left at byte 1$" },
		{ "a count of 4 billion", L(0xffffffff, ("N"):rep(64)), "count 4294967295 larger than the bytes left at byte 1$" },
		{ "a bad value", L(2, "T", "?"), "unknown tag 0x3f at byte 6$" },
		{ "a truncated value", L(1, "I\0\0"), "truncated number at byte 5$" },
		{ "trailing bytes", L(1, "T", "N"), "1 trailing bytes at byte 6$" },
	}
	for _, case in ipairs(lists) do
		it("refuses a values list with " .. case[1], function()
			local ok, v, err = pcall(codec.decode_values, case[2])
			assert.is_true(ok, "threw: " .. tostring(v))
			assert.is_nil(v)
			assert.matches("^malformed value", err)
			assert.matches(case[3], err)
		end)
	end

	it("refuses every truncation of a valid encoding, and never throws", function()
		local s = codec.encode_values(4, { a = { 1, 2.5, "three" }, [true] = every_byte }, nil, -1, "end")
		for i = 0, #s - 1 do
			local ok, v, err = pcall(codec.decode_values, s:sub(1, i))
			assert.is_true(ok, "threw at " .. i .. ": " .. tostring(v))
			assert.is_nil(v, "cut at " .. i)
			assert.is_string(err, "cut at " .. i)
		end
		assert.is_table(codec.decode_values(s))
	end)

	it("never throws on random mutations of valid encodings", function()
		math.randomseed(6)
		local seeds = {
			codec.encode_values(3, { 1, { x = 2.5, [false] = "s" } }, nil, "str"),
			enc({ a = { b = { c = { d = {} } } }, [1.5] = -0.0, [MININT] = true }),
			enc(M(3, S("k"), I(1))),
		}
		local alphabet = "NFTIDSM\0\1\2\3\4\127\128\255"
		for round_ = 1, 3000 do
			local s = seeds[round_ % #seeds + 1]
			for _ = 1, math.random(1, 4) do
				local i = math.random(1, #s)
				local r = math.random(1, 3)
				local c = r == 1 and string.char(math.random(0, 255)) or alphabet:sub(math.random(#alphabet)):sub(1, 1)
				if r == 3 then
					s = s:sub(1, i - 1) .. s:sub(i + 1) -- drop a byte
				else
					s = s:sub(1, i - 1) .. c .. s:sub(i + 1)
				end
			end
			for _, f in ipairs({ dec, codec.decode_values }) do
				local ok, v, err = pcall(f, s)
				assert.is_true(ok, "threw on " .. ("%q"):format(s) .. ": " .. tostring(v))
				if v == nil and err ~= nil then assert.matches("^malformed value", err) end
			end
		end
	end)

	it("refuses a non-string argument (a programmer error)", function()
		assert.has_error(function() dec(nil) end)
		assert.has_error(function() codec.decode_values({}) end)
	end)
end)

describe("codec decoding with limits", function()
	-- A list of n trues; n pairs [i] = value; a list of `outer` tables of `inner` trues.
	local function trues(n) return L(n, ("T"):rep(n)) end
	local function pairs_of(n, value)
		local out = {}
		for i = 1, n do out[i] = I(i) .. value end
		return table.concat(out)
	end
	local function rows(outer, inner) return L(1, M(outer, pairs_of(outer, M(inner, pairs_of(inner, "T"))))) end

	it("max_values counts every value: list items, keys, values and the tables themselves", function()
		-- rows(3, 4): 1 outer table + 3 keys + 3 rows + 3 * 8 pairs' halves = 31
		assert.is_table(codec.decode_values(rows(3, 4), { max_values = 31 }))
		local v, err, why = codec.decode_values(rows(3, 4), { max_values = 30 })
		assert.is_nil(v)
		assert.matches("^too many values: more than 30 in one payload %(at byte %d+%)$", err)
		assert.equal("max_values", why)
		assert.same({ n = 3, true, true, true }, codec.decode_values(trues(3), { max_values = 3 }))
		assert.equal(true, codec.decode_value("T", { max_values = 1 }))
		assert.same({ nil, "too many values: more than 0 in one payload (at byte 1)", "max_values" },
			{ codec.decode_value("T", { max_values = 0 }) })
	end)

	it("refuses a count over the limit before any work is done for it", function()
		local paused = 0
		local lim = { max_values = 1000, slice = 1, pause = function() paused = paused + 1 end }
		assert.same({ nil, "too many values: more than 1000 in one payload (at byte 1)", "max_values" },
			{ codec.decode_values(trues(1001), lim) })
		assert.equal(0, paused)
		-- a table of 501 pairs is 1002 values with itself: refused at its count
		local _, err = codec.decode_value(M(501, pairs_of(501, "T")), lim)
		assert.equal("too many values: more than 1000 in one payload (at byte 1)", err)
		assert.equal(1, paused) -- the table itself, counted before its count was read
	end)

	it("a malformed payload is still malformed, not over a limit", function()
		local v, err, why = codec.decode_values(L(2, "T"), { max_values = 1 })
		assert.is_nil(v)
		assert.matches("^malformed values list: count 2 larger than the bytes left", err)
		assert.is_nil(why)
	end)

	it("calls pause after each slice of values, the budget carried from one payload to the next", function()
		local paused = 0
		local lim = { slice = 10, pause = function() paused = paused + 1 end }
		codec.decode_values(trues(25), lim)
		assert.equal(2, paused)
		assert.equal(5, lim.budget)
		for _ = 1, 5 do codec.decode_value("T", lim) end
		assert.equal(3, paused)
		assert.equal(10, lim.budget)
	end)

	it("passes an error raised by pause through: the caller gives up", function()
		local stop = {}
		local lim = { slice = 100, pause = function() error(stop, 0) end }
		local ok, err = pcall(codec.decode_values, trues(1000), lim)
		assert.is_false(ok)
		assert.equal(stop, err)
	end)

	it("pause may yield: a decoding is a coroutine's like any Lua code", function()
		local co = coroutine.wrap(function()
			return codec.decode_values(trues(30), { slice = 10, pause = coroutine.yield })
		end)
		local yields = 0
		local r = co()
		while r == nil do yields = yields + 1; r = co() end
		assert.equal(3, yields)
		assert.equal(30, r.n)
	end)

	it("refuses limits that are not limits (a programmer error)", function()
		assert.has_error(function() dec("T", 5) end)
		assert.has_error(function() dec("T", { max_values = -1 }) end)
		assert.has_error(function() dec("T", { slice = 0 }) end)
		assert.has_error(function() codec.decode_values(trues(1), { pause = "yield" }) end)
	end)
end)

describe("codec.unframe", function()
	it("returns the type and payload of exactly one frame", function()
		assert.same({ "C", "abc" }, { codec.unframe(codec.frame("C", "abc")) })
		assert.same({ "E", "" }, { codec.unframe("E\0\0\0\0") })
	end)
	local bad = {
		{ "nothing", "", "shorter than a header" },
		{ "half a header", "C\0\0", "shorter than a header" },
		{ "an unknown type", "Z\0\0\0\0", "unknown type 0x5a" },
		{ "a truncated payload", "C\0\0\0\5abc", "payload length 5, but 3 bytes follow" },
		{ "bytes after the frame", "C\0\0\0\1abc", "payload length 1, but 3 bytes follow" },
		{ "two frames", "C\0\0\0\0C\0\0\0\0", "payload length 0, but 5 bytes follow" },
	}
	for _, case in ipairs(bad) do
		it("refuses " .. case[1], function()
			local v, err = codec.unframe(case[2])
			assert.is_nil(v)
			assert.matches("^malformed frame: ", err)
			assert.matches(case[3], err, 1, true)
		end)
	end
end)
