-- Specs for the in-jail runner (lua/lockup/inmate/runner.lua), run here on the
-- host as a plain `lua5.4` subprocess with a temporary inmate directory: the
-- request goes in on stdin, fd 3 comes back through a pipe and is read with the
-- host's own parser (core.frames) and codec. No Docker involved.
local core = require "lockup.core"
local codec = require "lockup.inmate.codec"
local C = require "support.compat"

local RUNNER = "lua/lockup/inmate/runner.lua"

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read_file(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("a")
	f:close()
	return s
end

local function write_file(path, s)
	local f = assert(io.open(path, "wb"))
	f:write(s)
	f:close()
end

local scratch -- a directory for this file's runs, removed at the end

-- A fresh inmate directory holding `files` ({name = source}).
local dirs = 0
local function inmate(files)
	dirs = dirs + 1
	local dir = scratch .. "/inmate" .. dirs
	assert(C.execute("mkdir -p " .. sh_quote(dir)))
	for name, src in pairs(files) do write_file(dir .. "/" .. name, src) end
	return dir
end

-- The request frame for calling `name` with the given arguments.
local function call(name, ...)
	return codec.frame("C", codec.encode_values(select("#", ...) + 1, name, ...))
end

-- The frames in a runner's output, decoded: {type =, value =} with the values
-- list for Y and R, the table for H and E. An empty P frame must follow each
-- Y frame that ends in byte 1, and nothing else; it is checked and left out.
local function decode_stream(raw)
	local parser = core.frames()
	local list = assert(parser:feed(raw))
	assert.equal(0, parser:buffered(), "fd 3 ended in the middle of a frame")
	local frames = {}
	for i, fr in ipairs(list) do
		local prev = list[i - 1]
		local padded = prev ~= nil and prev.type == "Y" and (prev.payload:byte(-1) or 0) == 1
		assert.equal(padded, fr.type == "P", "a P frame follows exactly the yields that end in byte 1")
	end
	for _, fr in ipairs(list) do
		local v, err
		if fr.type == "P" then
			assert.equal("", fr.payload)
		elseif fr.type == "Y" or fr.type == "R" then
			v, err = codec.decode_values(fr.payload)
		else
			v, err = codec.decode_value(fr.payload)
		end
		if fr.type ~= "P" then
			assert(v ~= nil, err)
			frames[#frames + 1] = { type = fr.type, value = v }
		end
	end
	return frames
end

-- Runs the runner on `dir` with `request` on stdin. Returns the decoded frames,
-- what the inmate wrote to fd 1 and 2, the exit code, and fd 3's raw bytes.
-- `fd3` replaces the redirection of fd 3 (e.g. "3>&-").
local function run(dir, request, fd3)
	write_file(scratch .. "/request", request)
	-- lua5.4 also under `make test-luajit`: a jail's image runs the runner with lua5.4
	local cmd = string.format("lua5.4 %s %s %s 1>%s 2>&1 <%s", RUNNER, sh_quote(dir), fd3 or "3>&1",
		sh_quote(scratch .. "/log"), sh_quote(scratch .. "/request"))
	local raw, code = C.popen_read(cmd)
	return decode_stream(raw), read_file(scratch .. "/log"), code, raw
end

local function types(frames)
	local t = {}
	for i, fr in ipairs(frames) do t[i] = fr.type end
	return table.concat(t)
end

-- Runs a call that must end with an E frame; returns that frame's table.
local function failing(dir, request)
	local frames, log, code = run(dir, request)
	assert.equal(0, code, log)
	assert.equal("HE", types(frames), log)
	return frames[2].value, log
end

local SAMPLE = [[
local M = {}

function M.reverse(s) return s:reverse() end

function M.holes(...) return nil, 2, nil, nil end

function M.count(...) return select("#", ...), ... end

function M.gen(n)
  for i = 1, n do coroutine.yield(i) end
  coroutine.yield(nil, "b", nil)
  coroutine.yield()
  return "done"
end

function M.own_coroutines()
  local gen = coroutine.wrap(function() coroutine.yield("inner 1"); coroutine.yield("inner 2") end)
  local a, b = gen(), gen()
  coroutine.yield("outer")
  return a, b
end

function M.yield_in_pcall()
  local ok = pcall(function() coroutine.yield("from pcall") end)
  return ok
end

function M.boom() local x = nil; return x.field end

function M.raise(msg) error(msg) end

function M.raise_table()
  error(setmetatable({}, { __tostring = function() return "a custom error" end }))
end

function M.raise_plain_table() error({ code = 7 }) end

function M.raise_bad_tostring()
  error(setmetatable({}, { __tostring = function() error("no") end }))
end

function M.return_function() return 1, print end

function M.yield_function() coroutine.yield({ cb = print }) end

function M.noisy()
  local function frame(k, p) return k .. string.pack(">I4", #p) .. p end
  print(frame("R", "\0\0\0\1S\0\0\0\6forged"))
  io.write(frame("E", "M\0\0\0\0"))
  io.stdout:write("H\0\0\0\0")
  io.stderr:write(frame("Y", ""))
  io.stdout:flush()
  return "clean"
end

M.not_a_function = "just a string"

return setmetatable(M, { __index = function(_, k) return function() return "via __index " .. k end end })
]]

describe("the inmate runner", function()
	local sample

	setup(function()
		local p = assert(io.popen("mktemp -d"))
		scratch = p:read("l")
		p:close()
		sample = inmate({ ["inmate.lua"] = SAMPLE })
	end)

	teardown(function()
		if scratch and scratch:match("^/tmp/") then os.execute("rm -rf " .. sh_quote(scratch)) end
	end)

	it("says hello first, then returns: reverse", function()
		local frames, log, code = run(sample, call("reverse", "foobar"))
		assert.equal(0, code, log)
		assert.equal("HR", types(frames))
		assert.equal(1, frames[1].value.protocol)
		assert.matches("^lockup .* runner", frames[1].value.runtime)
		assert.same({ n = 1, "raboof" }, frames[2].value)
	end)

	it("returns several values with nil holes", function()
		local frames = run(sample, call("holes"))
		assert.same({ n = 4, [2] = 2 }, frames[2].value)
	end)

	it("passes arguments with nil holes and their count", function()
		local frames = run(sample, call("count", nil, "x", nil, { 1.0, -0.0 }, nil))
		local r = frames[2].value
		assert.equal(6, r.n)
		assert.equal(5, r[1])
		assert.same({ nil, "x", nil, { 1.0, -0.0 } }, { r[2], r[3], r[4], r[5] })
		assert.is_nil(r[6])
		-- the float stays a float: a subtype Lua 5.4 has and LuaJIT does not
		if C.INTEGERS then assert.equal("float", math.type(r[5][1])) end
	end)

	it("passes binary strings byte for byte", function()
		local all = {}
		for b = 0, 255 do all[#all + 1] = string.char(b) end
		all = table.concat(all):rep(300)
		local frames = run(sample, call("reverse", all))
		assert.is_true(frames[2].value[1] == all:reverse())
	end)

	it("sends each yield as a Y frame, in order, then the return", function()
		local frames = run(sample, call("gen", 3))
		assert.equal("HYYYYYR", types(frames))
		assert.same({ n = 1, 1 }, frames[2].value)
		assert.same({ n = 1, 2 }, frames[3].value)
		assert.same({ n = 1, 3 }, frames[4].value)
		assert.same({ n = 3, [2] = "b" }, frames[5].value)
		assert.same({ n = 0 }, frames[6].value)
		assert.same({ n = 1, "done" }, frames[7].value)
	end)

	it("leaves the yields of the inmate's own coroutines to them", function()
		local frames = run(sample, call("own_coroutines"))
		assert.equal("HYR", types(frames))
		assert.same({ n = 1, "outer" }, frames[2].value)
		assert.same({ n = 2, "inner 1", "inner 2" }, frames[3].value)
	end)

	it("sends a yield from inside a pcall", function()
		local frames = run(sample, call("yield_in_pcall"))
		assert.equal("HYR", types(frames))
		assert.same({ n = 1, "from pcall" }, frames[2].value)
		assert.same({ n = 1, true }, frames[3].value)
	end)

	describe("sends an error", function()
		it("with message and traceback", function()
			local e = failing(sample, call("boom"))
			assert.equal("error", e.kind)
			assert.matches("inmate%.lua:%d+: attempt to index a nil value", e.message)
			assert.matches("stack traceback:", e.traceback, 1, true)
			assert.matches("inmate%.lua:%d+: in function", e.traceback)
			assert.equal(e.message, e.traceback:sub(1, #e.message)) -- as xpcall(f, debug.traceback) gives
		end)
		it("with the position error() added", function()
			local e = failing(sample, call("raise", "custom text"))
			assert.matches("inmate%.lua:%d+: custom text$", e.message)
		end)
		it("for a table error value, through its __tostring", function()
			assert.equal("a custom error", failing(sample, call("raise_table")).message)
		end)
		it("for a plain table error value, through tostring", function()
			assert.matches("^table: ", failing(sample, call("raise_plain_table")).message)
		end)
		it("for an error value that tostring cannot convert", function()
			assert.matches("error value of type table", failing(sample, call("raise_bad_tostring")).message)
		end)
		it("for a return value that cannot be sent", function()
			local e = failing(sample, call("return_function"))
			assert.equal("error", e.kind)
			assert.equal("cannot send a function (at return[2])", e.message)
		end)
		it("for a yielded value that cannot be sent, with where it yielded", function()
			local e = failing(sample, call("yield_function"))
			assert.equal("cannot send a function (at yield[1].cb)", e.message)
			assert.matches("inmate%.lua:%d+: in function", e.traceback)
		end)
	end)

	describe("treats the name as data", function()
		local names = { "nope", "os.exit", "__index", "../x", "print", "require", "", "reverse\0", "not_a_function",
			"M.reverse", "inmate.reverse", ("x"):rep(1000) }
		for _, name in ipairs(names) do
			it(("unknown function %q"):format(#name > 20 and name:sub(1, 20) .. "..." or name), function()
				local e = failing(sample, call(name, "arg"))
				assert.equal("unknown_function", e.kind)
				assert.matches("the inmate module has no function ", e.message, 1, true)
				assert.is_true(#e.message < 200)
			end)
		end
	end)

	it("keeps what the inmate prints, even frame-like bytes, off fd 3", function()
		local frames, log, code, raw = run(sample, call("noisy"))
		assert.equal(0, code)
		assert.equal("HR", types(frames))
		assert.same({ n = 1, "clean" }, frames[2].value)
		assert.is_nil(raw:find("forged", 1, true))
		assert.matches("forged", log, 1, true) -- it went to fd 1, i.e. the container's stderr
		assert.matches("Y\0\0\0\0", log, 1, true)
	end)

	describe("reports a module that does not load", function()
		it("a syntax error", function()
			local e = failing(inmate({ ["inmate.lua"] = "local M = {\nreturn M" }), call("f"))
			assert.equal("error", e.kind)
			assert.matches("inmate%.lua:%d+:", e.message)
			assert.matches("stack traceback:", e.traceback, 1, true)
		end)
		it("a runtime error while loading", function()
			local e = failing(inmate({ ["inmate.lua"] = "error('cannot start')" }), call("f"))
			assert.equal("error", e.kind)
			assert.matches("cannot start", e.message, 1, true)
			assert.is_string(e.traceback)
		end)
		it("a missing module", function()
			local e = failing(inmate({ ["other.lua"] = "return {}" }), call("f"))
			assert.equal("error", e.kind)
			assert.matches("module 'inmate' not found", e.message, 1, true)
		end)
		it("a module that returns no table", function()
			local e = failing(inmate({ ["inmate.lua"] = "function f() end" }), call("f"))
			assert.equal("the inmate module must return a table of functions, it returned boolean", e.message)
		end)
	end)

	it("finds inmate/init.lua and the inmate's own modules", function()
		local dir = inmate({
			["helper.lua"] = "return { twice = function(s) return s .. s end }",
		})
		assert(C.execute("mkdir " .. sh_quote(dir .. "/inmate")))
		write_file(dir .. "/inmate/init.lua", "local h = require 'helper'\nreturn { f = function(s) return h.twice(s) end }")
		local frames = run(dir, call("f", "ab"))
		assert.same({ n = 1, "abab" }, frames[2].value)
	end)

	describe("refuses a bad request", function()
		local bad = {
			{ "nothing on stdin", "", "shorter than a header" },
			{ "half a header", "C\0\0", "shorter than a header" },
			{ "a frame of another type", codec.frame("Y", codec.encode_values(1, "reverse")), "a C frame expected, got Y" },
			{ "a truncated frame", call("reverse", "foobar"):sub(1, -2), "malformed frame" },
			{ "bytes after the frame", call("reverse", "foobar") .. "\0", "malformed frame" },
			{ "two requests", call("reverse", "a") .. call("reverse", "b"), "malformed frame" },
			{ "a payload that does not decode", codec.frame("C", "\0\0\0\1Q"), "malformed value: unknown tag" },
			{ "no function name", codec.frame("C", codec.encode_values(0)), "got nil" },
			{ "a name that is not a string", codec.frame("C", codec.encode_values(2, 42, "x")), "got number" },
			{ "an unknown type byte", "Z\0\0\0\0", "unknown type" },
		}
		for _, case in ipairs(bad) do
			it("with " .. case[1], function()
				local e = failing(sample, case[2])
				assert.equal("bad_request", e.kind)
				assert.matches("^request: ", e.message)
				assert.matches(case[3], e.message, 1, true)
			end)
		end
	end)

	it("exits non-zero, saying why, when fd 3 is not open", function()
		local _, log, code, raw = run(sample, call("reverse", "x"), "3>&-")
		assert.equal(2, code)
		assert.equal("", raw)
		assert.matches("fd 3", log, 1, true)
	end)

	-- The host's local mode: the same runner required as a module (requiring it
	-- opens nothing and exits nothing: this process is still here).
	describe("served in this process, isolated", function()
		local runner = require "lockup.inmate.runner"

		-- serve's output, decoded, and the writes one by one.
		local function serve(dir, request)
			local writes = {}
			assert.is_true(runner.serve({ dir = dir, request = request, isolated = true,
				write = function(b) writes[#writes + 1] = b end }))
			return decode_stream(table.concat(writes)), writes
		end

		it("answers like the script, one whole frame per write", function()
			local frames, writes = serve(sample, call("gen", 1))
			assert.equal("HYYYR", types(frames))
			assert.same({ n = 1, "done" }, frames[5].value)
			for i, w in ipairs(writes) do
				assert.equal(#w - 5, (C.bin_unpack(">I4", w, 2)), "write " .. i)
			end
		end)

		it("sends H before it asks for the request", function()
			local writes = {}
			runner.serve({ dir = sample, isolated = true, write = function(b) writes[#writes + 1] = b end,
				request = function()
					assert.equal(1, #writes)
					return call("reverse", "ab")
				end })
			assert.same({ n = 1, "ba" }, decode_stream(table.concat(writes))[2].value)
		end)

		it("sends errors, unknown functions and bad requests as E frames", function()
			assert.equal("error", serve(sample, call("boom"))[2].value.kind)
			assert.equal("unknown_function", serve(sample, call("os.exit"))[2].value.kind)
			assert.equal("bad_request", serve(sample, "nonsense")[2].value.kind)
		end)

		it("keeps the inmate's globals and modules out of this process, and loads it afresh", function()
			local dir = inmate({
				["inmate.lua"] = "LEAKED = true\nlocal h = require 'helper'\nlocal n = 0\n"
					.. "return { count = function() n = n + 1; return n, h.name end }",
				["helper.lua"] = "return { name = 'helper' }",
			})
			local path = package.path
			for _ = 1, 2 do
				local frames = serve(dir, call("count"))
				assert.same({ n = 2, 1, "helper" }, frames[2].value)
			end
			assert.is_nil(rawget(_G, "LEAKED"))
			assert.equal(path, package.path)
			assert.is_nil(package.loaded.inmate)
			assert.is_nil(package.loaded.helper)
		end)

		it("still finds the host's libraries", function()
			local dir = inmate({ ["inmate.lua"] = "local c = require 'lockup.inmate.codec'\n"
				.. "return { f = function() return c.PROTOCOL end }" })
			assert.same({ n = 1, 1 }, serve(dir, call("f"))[2].value)
		end)

		it("reports a missing inmate module", function()
			local e = serve(inmate({}), call("f"))[2].value
			assert.equal("error", e.kind)
			assert.matches("module 'inmate' not found", e.message, 1, true)
		end)

		it("refuses bad options (a programmer error)", function()
			assert.has_error(function() runner.serve({ dir = sample, request = "" }) end)
			assert.has_error(function() runner.serve({ request = "", write = print }) end)
			assert.has_error(function() runner.serve() end)
		end)
	end)
end)
