-- Byte-level specs for the HTTP/1.1 response parser (src/http.c), through
-- core.response(): r:feed(bytes) -> "more" | "head" | "done" | nil, err. After
-- "head" the bytes past the head wait in r:rest(): the caller feeds them back
-- (or, after a 101 upgrade, keeps them: they are the upgraded stream).
local core = require "lockup.core"
local B = require "support.bytes"

local frame, bytes, splits = B.frame, B.bytes, B.splits

-- Feeds `pieces` to a fresh response the way a caller does. Returns a table with
-- status, headers, keep_alive (as seen at "head"), body (all decoded bytes),
-- done, err, and after (a 101's stream bytes: r:rest() plus later pieces).
local function run(pieces, head_request)
	local r = core.response(head_request)
	local res = { body = {} }
	for i, p in ipairs(pieces) do
		local st, why = r:feed(p)
		if st == "head" then
			assert.is_nil(res.status, "head reported twice")
			res.status, res.headers, res.keep_alive = r:status(), r:headers(), r:keep_alive()
			local rest = r:rest()
			assert.equal("", r:rest()) -- taken
			if res.status == 101 then
				res.after = rest .. table.concat(pieces, "", i + 1)
				res.done = true
				break
			end
			st, why = r:feed(rest)
			assert.are_not.equal("head", st)
		end
		res.body[#res.body + 1] = r:body()
		if st == nil then
			res.err = why
			break
		end
		if st == "done" then
			res.done = true
			break
		end
		assert.equal("more", st)
	end
	res.body = table.concat(res.body)
	return res, r
end

local function crlf(lines) return (table.concat(lines, "\r\n")) end

local PROGRESS = '{"status":"Pulling from library/busybox"}\r\n\n'
local UPGRADED = frame(1, "hello from the container\n") .. frame(2, "\0\xff")

local good = {
	{
		name = "a Content-Length body",
		wire = crlf({ "HTTP/1.1 200 OK", "Content-Type: application/json", "Content-Length: 13", "", '{"ok":true}\r\n' }),
		status = 200, keep_alive = true, done = true, body = '{"ok":true}\r\n',
		headers = { ["content-type"] = "application/json", ["content-length"] = "13" },
	},
	{
		name = "Content-Length: 0",
		wire = crlf({ "HTTP/1.1 201 Created", "Content-Length: 0", "", "" }),
		status = 201, keep_alive = true, done = true, body = "",
		headers = { ["content-length"] = "0" },
	},
	{
		name = "a binary Content-Length body",
		wire = crlf({ "HTTP/1.1 200 OK", "Content-Length: 6", "", "\0\r\n\xff\xfe\0" }),
		status = 200, keep_alive = true, done = true, body = "\0\r\n\xff\xfe\0",
		headers = { ["content-length"] = "6" },
	},
	{
		name = "a chunked body with extensions and trailers",
		wire = crlf({
			"HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "",
			"5;name=value", "hello", '7 ; x="y;z"', ", world", "1\t;a", "!", "0;last", "X-Checksum: abc", "Other: 1", "", "",
		}),
		status = 200, keep_alive = true, done = true, body = "hello, world!",
		headers = { ["transfer-encoding"] = "chunked" },
	},
	{
		name = "chunked: hex sizes in both cases, CRLF and NUL in the data",
		wire = crlf({ "HTTP/1.1 200 OK", "transfer-encoding:  gzip-free, Chunked ", "", "a", "\r\n\0\1\2\3\4\5\6\7", "0000B",
			("x"):rep(11), "0", "", "" }),
		status = 200, keep_alive = true, done = true, body = "\r\n\0\1\2\3\4\5\6\7" .. ("x"):rep(11),
		headers = { ["transfer-encoding"] = "gzip-free, Chunked" },
	},
	{
		name = "Docker's streamed JSON progress",
		wire = crlf({ "HTTP/1.1 200 OK", "Api-Version: 1.43", "Content-Type: application/json",
			"Docker-Experimental: false", "Ostype: linux", "Server: Docker/24.0.5 (linux)",
			"Date: Mon, 01 Jan 2024 00:00:00 GMT", "Transfer-Encoding: chunked", "",
			("%x"):format(#PROGRESS), PROGRESS, "0", "", "" }),
		status = 200, keep_alive = true, done = true, body = PROGRESS,
		headers = {
			["api-version"] = "1.43", ["content-type"] = "application/json", ["docker-experimental"] = "false",
			["ostype"] = "linux", ["server"] = "Docker/24.0.5 (linux)", ["date"] = "Mon, 01 Jan 2024 00:00:00 GMT",
			["transfer-encoding"] = "chunked",
		},
	},
	{
		-- the end of such a body is the end of the connection, which only
		-- r:pump(conn) sees (lk_http_eof): here the body stays "more"
		name = "a body until the connection closes",
		wire = crlf({ "HTTP/1.1 200 OK", "Content-Type: text/plain", "", "no length, no end" }),
		status = 200, keep_alive = false, done = false, body = "no length, no end",
		headers = { ["content-type"] = "text/plain" },
	},
	{
		name = "HTTP/1.0 closes by default",
		wire = crlf({ "HTTP/1.0 200 OK", "Content-Length: 2", "", "ok" }),
		status = 200, keep_alive = false, done = true, body = "ok",
		headers = { ["content-length"] = "2" },
	},
	{
		name = "HTTP/1.0 with Connection: keep-alive",
		wire = crlf({ "HTTP/1.0 200 OK", "Connection: Keep-Alive", "Content-Length: 2", "", "ok" }),
		status = 200, keep_alive = true, done = true, body = "ok",
		headers = { ["connection"] = "Keep-Alive", ["content-length"] = "2" },
	},
	{
		name = "Connection: close",
		wire = crlf({ "HTTP/1.1 404 Not Found", "Connection: upgrade, close", "Content-Length: 4", "", "nope" }),
		status = 404, keep_alive = false, done = true, body = "nope",
		headers = { ["connection"] = "upgrade, close", ["content-length"] = "4" },
	},
	{
		name = "204 has no body, whatever it claims",
		wire = crlf({ "HTTP/1.1 204 No Content", "Content-Length: 10", "", "" }),
		status = 204, keep_alive = true, done = true, body = "",
		headers = { ["content-length"] = "10" },
	},
	{
		name = "304 has no body",
		wire = crlf({ "HTTP/1.1 304 Not Modified", "Transfer-Encoding: chunked", "", "" }),
		status = 304, keep_alive = true, done = true, body = "",
		headers = { ["transfer-encoding"] = "chunked" },
	},
	{
		name = "the answer to a HEAD request has no body",
		head_request = true,
		wire = crlf({ "HTTP/1.1 200 OK", "Content-Length: 1234", "", "" }),
		status = 200, keep_alive = true, done = true, body = "",
		headers = { ["content-length"] = "1234" },
	},
	{
		name = "a 101 upgrade keeps the stream bytes after the head",
		wire = crlf({ "HTTP/1.1 101 UPGRADED", "Content-Type: application/vnd.docker.multiplexed-stream",
			"Connection: Upgrade", "Upgrade: tcp", "", UPGRADED }),
		status = 101, keep_alive = false, done = true, body = "", after = UPGRADED,
		headers = { ["content-type"] = "application/vnd.docker.multiplexed-stream", ["connection"] = "Upgrade",
			["upgrade"] = "tcp" },
	},
	{
		name = "header names in lower case, values trimmed, repeats joined",
		wire = crlf({ "HTTP/1.1 200", "X-MiXeD-Case:value", "Set-Cookie: a=1", "set-cookie:\t b=2 \t",
			"Empty:", "Spaces:   ", "Inner:  a  b  ", "Content-Length: 1", "", "." }),
		status = 200, keep_alive = true, done = true, body = ".",
		headers = { ["x-mixed-case"] = "value", ["set-cookie"] = "a=1, b=2", ["empty"] = "", ["spaces"] = "",
			["inner"] = "a  b", ["content-length"] = "1" },
	},
}

local function check(case, res, where)
	assert.is_nil(res.err, where)
	assert.equal(case.status, res.status, where)
	assert.same(case.headers, res.headers, where)
	assert.equal(case.keep_alive, res.keep_alive, where)
	assert.equal(case.body, res.body, where)
	assert.equal(case.done, res.done or false, where)
	assert.equal(case.after, res.after, where)
end

describe("http response", function()
	for _, case in ipairs(good) do
		describe(case.name, function()
			it("fed whole", function() check(case, (run({ case.wire }, case.head_request))) end)
			it("fed one byte at a time", function() check(case, (run(bytes(case.wire), case.head_request))) end)
			it("cut in two at every offset", function()
				for i, pieces in splits(case.wire) do
					check(case, (run(pieces, case.head_request)), "cut at " .. i)
				end
			end)
			it("cut in three: every second cut after a sample of first cuts", function()
				local w = case.wire
				for i = 0, #w, math.max(3, math.floor(#w / 24)) do
					for j = i, #w do
						local res = run({ w:sub(1, i), w:sub(i + 1, j), w:sub(j + 1) }, case.head_request)
						check(case, res, "cut at " .. i .. " and " .. j)
					end
				end
			end)
		end)
	end

	it("passes body bytes on as they are decoded", function()
		local r = core.response()
		assert.equal("head", r:feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"))
		assert.equal("more", r:feed(r:rest()))
		assert.equal("ab", r:body())
		assert.equal("", r:body()) -- taken
		assert.equal("more", r:feed("c"))
		assert.equal("c", r:body())
		assert.equal("done", r:feed("de\r\n0\r\n\r\n"))
		assert.equal("de", r:body())
	end)

	it("says done for a bodiless response when its rest is fed back, even empty", function()
		local r = core.response()
		assert.equal("head", r:feed("HTTP/1.1 204 No Content\r\n\r\n"))
		assert.equal("", r:rest())
		assert.equal("done", r:feed(""))
		assert.equal("done", r:feed(""))
	end)

	it("does not read past the head: a 101's stream stays in r:rest()", function()
		local r = core.response()
		local head = "HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n"
		assert.equal("more", r:feed(head:sub(1, 10)))
		assert.equal("head", r:feed(head:sub(11) .. UPGRADED))
		assert.equal(101, r:status())
		assert.is_false(r:keep_alive())
		assert.equal(UPGRADED, r:rest())
		assert.equal("", r:body())
	end)

	local too_large = { "HTTP/1.1 200 OK" }
	for i = 1, 170 do too_large[#too_large + 1] = ("X-Pad-%03d: %s"):format(i, ("a"):rep(90)) end
	too_large = crlf(too_large) .. "\r\n\r\n"

	local too_many = { "HTTP/1.1 200 OK" }
	for i = 1, 65 do too_many[#too_many + 1] = "H" .. i .. ": v" end
	too_many = crlf(too_many) .. "\r\n\r\n"

	local long_ext = "5;" .. ("e"):rep(260)

	local bad = {
		{ "a head over 16 KiB", too_large, "HTTP response head too large" },
		{ "a head of 16 KiB with no end", ("x"):rep(16384), "HTTP response head too large" },
		{ "a status line that is not HTTP", "ICY 200 OK\r\n\r\n", "malformed HTTP status line" },
		{ "HTTP/2", "HTTP/2 200 OK\r\n\r\n", "malformed HTTP status line" },
		{ "HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", "malformed HTTP status line" },
		{ "a lower-case protocol", "http/1.1 200 OK\r\n\r\n", "malformed HTTP status line" },
		{ "a status line ending in a bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "malformed HTTP status line" },
		{ "a four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", "malformed HTTP status line" },
		{ "a two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "malformed HTTP status code" },
		{ "a status with a letter", "HTTP/1.1 2x0 OK\r\n\r\n", "malformed HTTP status code" },
		{ "two spaces before the status", "HTTP/1.1  200 OK\r\n\r\n", "malformed HTTP status code" },
		{ "a space in a header name", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed HTTP header name" },
		{ "a header with no colon", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "malformed HTTP header line" },
		{ "a header with no name", "HTTP/1.1 200 OK\r\n: v\r\n\r\n", "malformed HTTP header line" },
		{ "a header ending in a bare LF", "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", "malformed HTTP header line" },
		{ "a folded header", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "folded HTTP header line" },
		{ "65 headers", too_many, "too many HTTP headers" },
		{ "an unknown transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported HTTP transfer coding" },
		{ "a Content-Length that is no number", "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", "malformed HTTP Content-Length" },
		{ "a negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed HTTP Content-Length" },
		{ "an empty Content-Length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "malformed HTTP Content-Length" },
		{ "two different Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			"malformed HTTP Content-Length" },
		{ "a Content-Length past 2^64", "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
			"malformed HTTP Content-Length" },
	}
	local CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	local bad_body = {
		{ "a chunk size that is not hex", "zz\r\n", "malformed HTTP chunk size", "" },
		{ "a chunk size with a sign", "+5\r\nhello\r\n", "malformed HTTP chunk size", "" },
		{ "an empty chunk size", "\r\n", "malformed HTTP chunk size", "" },
		{ "a chunk size of extensions only", ";x=1\r\n", "malformed HTTP chunk size", "" },
		{ "a chunk size of 17 digits", "00000000000000001\r\nx\r\n0\r\n\r\n", "malformed HTTP chunk size", "" },
		{ "a chunk size line ending in a bare LF", "5\nhello\r\n", "malformed HTTP chunk framing", "" },
		{ "chunk data longer than its size", "3\r\nabcd\r\n", "malformed HTTP chunk framing", "abc" },
		{ "chunk data ending in a bare LF", "3\r\nabc\n0\r\n\r\n", "malformed HTTP chunk framing", "abc" },
		{ "a chunk line over 256 bytes", long_ext .. "\r\nhello\r\n", "HTTP chunk line too long", "" },
		{ "a trailer line ending in a bare LF", "1\r\na\r\n0\r\nX: y\n\r\n", "malformed HTTP chunk framing", "a" },
	}
	for _, case in ipairs(bad_body) do
		bad[#bad + 1] = { case[1], CHUNKED .. case[2], case[3], case[4] }
	end

	for _, case in ipairs(bad) do
		local name, wire, why, body = case[1], case[2], case[3], case[4] or ""
		describe("refuses " .. name, function()
			it("fed whole", function()
				local res = run({ wire })
				assert.equal(why, res.err)
				assert.equal(body, res.body)
			end)
			it("fed one byte at a time", function()
				local res = run(bytes(wire))
				assert.equal(why, res.err)
				assert.equal(body, res.body)
			end)
			it("cut in two at every offset", function()
				for i, pieces in splits(wire, #wire > 1000 and 97 or 1) do
					local res = run(pieces)
					assert.equal(why, res.err, "cut at " .. i)
					assert.equal(body, res.body, "cut at " .. i)
				end
			end)
			it("for good", function()
				local res, r = run({ wire })
				assert.equal(why, res.err)
				local st, again = r:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n0\r\n\r\n")
				assert.is_nil(st)
				assert.equal(why, again)
			end)
		end)
	end

	it("takes a head of exactly 16 KiB", function()
		local head = "HTTP/1.1 200 OK\r\nX-Pad: "
		head = head .. ("p"):rep(16384 - #head - 4) .. "\r\n\r\n"
		assert.equal(16384, #head)
		local res = run({ head .. "body" })
		assert.is_nil(res.err)
		assert.equal(200, res.status)
		assert.equal(("p"):rep(16384 - 4 - #"HTTP/1.1 200 OK\r\nX-Pad: "), res.headers["x-pad"])
		assert.equal("body", res.body)
		local over = run({ head:sub(1, 25) .. "q" .. head:sub(26) })
		assert.equal("HTTP response head too large", over.err)
	end)

	it("takes a chunk line of 256 bytes (CR included), not 257", function()
		local line = "5;" .. ("e"):rep(253) .. "\r"
		assert.equal(256, #line)
		local wire = CHUNKED .. line .. "\nhello\r\n0\r\n" .. ("t"):rep(255) .. "\r\n\r\n"
		for _, pieces in ipairs({ { wire }, bytes(wire) }) do
			local res = run(pieces)
			assert.is_nil(res.err)
			assert.is_true(res.done)
			assert.equal("hello", res.body)
		end
		local res = run({ CHUNKED .. "5;" .. ("e"):rep(254) .. "\r\nhello\r\n0\r\n\r\n" })
		assert.equal("HTTP chunk line too long", res.err)
		res = run({ CHUNKED .. "0\r\n" .. ("t"):rep(256) .. "\r\n\r\n" })
		assert.equal("HTTP chunk line too long", res.err)
	end)

	it("takes 64 headers", function()
		local lines = { "HTTP/1.1 200 OK" }
		for i = 1, 63 do lines[#lines + 1] = "H" .. i .. ": v" .. i end
		lines[#lines + 1] = "Content-Length: 0"
		local res = run({ crlf(lines) .. "\r\n\r\n" })
		assert.is_nil(res.err)
		assert.equal("v63", res.headers.h63)
		assert.equal("0", res.headers["content-length"])
	end)
end)
