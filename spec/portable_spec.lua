-- Specs for lockup.compat (lua/lockup/compat.lua): its pure-Lua big-endian
-- packing, which LuaJIT uses, must give string.pack's bytes. On Lua 5.4 each
-- case is checked against string.pack (compat.native); on LuaJIT, by a round
-- trip and the bytes docs/inmate-protocol.md spells out.
local compat = require "lockup.compat"

local P, N = compat.portable, compat.native
local NATIVE = N.f64 ~= nil

local floats = {
	0.0, -0.0, 1.0, -1.0, 0.5, -2.25, 1 / 3, math.pi, 1e308, -1e308, 1.7976931348623157e308,
	2.2250738585072014e-308, 2.225073858507201e-308, 4.9e-324, -4.9e-324, 2.0 ^ 53 + 2, 2.0 ^ 63, -2.0 ^ 63,
	math.huge, -math.huge,
}
local integers = { 0, 1, -1, 255, 256, -256, 2 ^ 31 - 1, -2 ^ 31, 2 ^ 32, 2 ^ 53, -2 ^ 53, -2 ^ 63, 2 ^ 62 }

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- A seeded spread over every exponent, subnormals included.
local function random_floats(n)
	local out = {}
	math.randomseed(12)
	for i = 1, n do out[i] = (math.random() - 0.5) * 2 ^ math.random(-1074, 1023) end
	return out
end

describe("lockup.compat's portable packing", function()
	it("spells the documented bytes", function()
		assert.equal("3ff0000000000000", hex(P.f64(1.0)))
		assert.equal("8000000000000000", hex(P.f64(-0.0)))
		assert.equal("7ff0000000000000", hex(P.f64(math.huge)))
		assert.equal("0000000000000001", hex(P.f64(4.9e-324)))
		assert.equal("fffffffffffffffe", hex(P.i64(-2)))
		assert.equal("8000000000000000", hex(P.i64(-2 ^ 63)))
		assert.equal("00000002", hex(P.u32(2)))
		assert.equal("0020000000000000", hex(P.u64(2 ^ 53)))
	end)

	it("round-trips floats, the sign of zero and NaN", function()
		for _, x in ipairs(floats) do assert.equal(x, (P.read_f64(P.f64(x), 1))) end
		for _, x in ipairs(random_floats(2000)) do assert.equal(x, (P.read_f64(P.f64(x), 1))) end
		assert.equal(-math.huge, 1 / P.read_f64(P.f64(-0.0), 1))
		local nan = P.read_f64(P.f64(0 / 0), 1)
		assert.is_true(nan ~= nan)
	end)

	it("round-trips integers, and reads the position after them", function()
		for _, n in ipairs(integers) do
			local v, at = P.read_i64("x" .. P.i64(n), 2)
			assert.equal(n, v)
			assert.equal(10, at)
		end
		assert.same({ 0xfffffffe, 5 }, { P.read_u32(P.u32(0xfffffffe), 1) })
	end)

	it("refuses what does not fit, saying what fits", function()
		assert.has_error(function() P.u32(2 ^ 32) end, "u32: an integer from 0 to 2^32 - 1 expected")
		assert.has_error(function() P.u8(1.5) end, "u8: an integer from 0 to 2^8 - 1 expected")
		assert.has_error(function() P.i64(2 ^ 63) end, "i64: an integer in the int64 range expected")
	end)

	-- string.pack exists on 5.3+ only: there, the bytes must be its bytes.
	if NATIVE then describe("gives string.pack's bytes", function()
		local function check(name, values, convert)
			for _, v in ipairs(values) do
				local want = N[name](convert and convert(v) or v)
				if P[name](v) ~= want then error(name .. "(" .. tostring(v) .. "): " .. hex(P[name](v)) .. ", not " .. hex(want)) end
			end
		end
		local tointeger = compat.tointeger
		it("for floats", function()
			check("f64", floats)
			check("f64", random_floats(20000))
		end)
		it("for integers", function()
			check("i64", integers, tointeger)
			check("u32", { 0, 1, 255, 65536, 2 ^ 32 - 1 }, tointeger)
			check("u64", { 0, 1, 2 ^ 32, 2 ^ 53 }, tointeger)
		end)
	end) end
end)

describe("lockup.compat's numbers", function()
	it("call an integral number an integer, but not -0.0, NaN or inf", function()
		assert.is_true(compat.is_integer(3))
		assert.is_false(compat.is_integer(1.5))
		assert.is_false(compat.is_integer(0 / 0))
		assert.is_false(compat.is_integer(math.huge))
		assert.is_false(compat.is_integer("3"))
		if not NATIVE then assert.is_false(compat.is_integer(-0.0)) end
	end)
	it("convert with tointeger as math.tointeger does", function()
		assert.equal(3, compat.tointeger(3.0))
		assert.is_nil(compat.tointeger(3.5))
		assert.is_nil(compat.tointeger(math.huge))
	end)
	it("pack and unpack every value, nils included", function()
		local t = compat.pack(nil, 2, nil)
		assert.equal(3, t.n)
		assert.same({ n = 3, [2] = 2 }, t)
		assert.equal(3, select("#", compat.unpack(t, 1, t.n)))
	end)
end)
