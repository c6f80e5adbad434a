-- lockup.connect against the real Engine: every way of naming it, version
-- negotiation, and the errors a user meets (each saying what to do).
local lockup = require "lockup"
local helper = require "helper"

local SOCK = "/var/run/docker.sock"
local q = string.format

local function api_number(v)
  local major, minor = tostring(v):match("^(%d+)%.(%d+)$")
  assert(major, "not an API version: " .. tostring(v))
  return tonumber(major) * 1000 + tonumber(minor)
end

-- Runs `code` in a fresh Lua (the interpreter running the specs) (opts as helper.lua_cmd; opts.prefix is put in
-- front, e.g. setpriv): its output with stderr, and whether it exited 0.
local function lua(code, opts)
  local cmd = helper.lua_cmd(code, opts)
  if opts and opts.prefix then cmd = opts.prefix .. " " .. cmd end
  return helper.sh(cmd .. " 2>&1")
end

-- Lua code that connects with `arg` (Lua source text, may be empty) and prints
-- "OK <tostring(docker)> <ping>" or "ERR <message>".
local function connect_code(arg)
  return q([[
    local d, err = require("lockup").connect(%s)
    if d then print("OK " .. tostring(d) .. " ping=" .. tostring(d:ping())) else print("ERR " .. tostring(err)) end
  ]], arg or "")
end

local function tmpdir()
  local dir = helper.sh("mktemp -d /tmp/lockup-spec-XXXXXX"):gsub("%s+$", "")
  assert(dir:match("^/tmp/lockup%-spec%-"), dir)
  return dir
end

-- A loopback TCP relay to the daemon's socket: socat on 127.0.0.1 only.
local free_port = helper.free_port

local function start_relay()
  for _ = 1, 5 do
    local port = free_port()
    local pid = tonumber((helper.sh(q(
      "socat TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:%s </dev/null >/dev/null 2>&1 & echo $!",
      port, SOCK))))
    assert(pid, "socat did not start")
    local up = helper.eventually(function()
      local d = lockup.connect("tcp://127.0.0.1:" .. port)
      if d then d:close() end
      return d ~= nil
    end, 5)
    if up then return { port = port, pid = pid } end
    os.execute("kill " .. pid .. " 2>/dev/null") -- lost the port to someone else: next one
  end
  error("could not start a socat relay on 127.0.0.1")
end

local function stop_relay(relay)
  if not relay then return end
  -- the relay and the children it forked for connections still open
  local children = {}
  for pid in helper.sh("ls /proc"):gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/stat")
    local stat = f and f:read("a") or ""
    if f then f:close() end
    if stat:match("^%d+ %b() %a (%d+)") == tostring(relay.pid) then children[#children + 1] = pid end
  end
  os.execute("kill " .. relay.pid .. " 2>/dev/null")
  for _, child in ipairs(children) do os.execute("kill " .. child .. " 2>/dev/null") end
end

describe("lockup.connect", function()
  local daemon_api

  lazy_setup(function()
    local v = assert(helper.docker():version())
    daemon_api = v.ApiVersion
  end)

  local function check_docker(d, endpoint)
    assert.equal("lockup.docker", getmetatable(d).__name)
    assert.is_true(d:ping())
    local v = assert(d:version())
    assert.is_string(v.ApiVersion)
    assert.equal(daemon_api, v.ApiVersion)
    -- a versioned call works too (the negotiated prefix is accepted by the daemon)
    local status, list = d:request("GET", "/containers/json", { query = { all = 1 } })
    assert.equal(200, status, list)
    assert.is_table(list)
    local s = tostring(d)
    assert.matches("lockup.docker", s, 1, true)
    assert.matches(endpoint, s, 1, true)
    assert.matches(d.api_version, s, 1, true)
  end

  it("connects by default (DOCKER_HOST, else the standard socket)", function()
    local d, err = lockup.connect()
    assert.is_not_nil(d, err)
    check_docker(d, os.getenv("DOCKER_HOST") or ("unix://" .. SOCK))
    d:close()
    -- and with DOCKER_HOST unset, in a fresh process: the standard socket
    local out = lua(connect_code(), { env = { DOCKER_HOST = false } })
    assert.matches("^OK lockup%.docker %(unix:///var/run/docker%.sock, API 1%.%d+%) ping=true\n$", out)
  end)

  it("connects to unix:///var/run/docker.sock", function()
    local d, err = lockup.connect("unix://" .. SOCK)
    assert.is_not_nil(d, err)
    check_docker(d, "unix://" .. SOCK)
    d:close()
  end)

  it("connects to {socket = path}", function()
    local d, err = lockup.connect({ socket = SOCK })
    assert.is_not_nil(d, err)
    check_docker(d, "unix://" .. SOCK)
    d:close()
  end)

  it("honours DOCKER_HOST, and an explicit endpoint overrides it", function()
    local bad = "unix:///tmp/lockup-spec-no-such-dir/docker.sock"
    local out = lua(connect_code(), { env = { DOCKER_HOST = bad } })
    assert.matches("^ERR ", out)
    assert.matches(bad, out, 1, true)
    out = lua(connect_code(q("%q", "unix://" .. SOCK)), { env = { DOCKER_HOST = bad } })
    assert.matches("^OK lockup%.docker %(unix:///var/run/docker%.sock, API 1%.%d+%) ping=true\n$", out)
    out = lua(connect_code(q("{socket = %q}", SOCK)), { env = { DOCKER_HOST = bad } })
    assert.matches("^OK lockup%.docker %(unix:///var/run/docker%.sock, API 1%.%d+%) ping=true\n$", out)
  end)

  it("negotiates the API version: the daemon's, at most the newest lockup knows", function()
    local d = helper.docker()
    assert.matches("^1%.%d+$", d.api_version)
    assert.is_true(api_number(d.api_version) <= api_number(daemon_api),
      d.api_version .. " > daemon's " .. daemon_api)
    assert.is_true(api_number(d.api_version) >= api_number("1.30"))
    local docker_api = require "lockup.docker"
    local expect = api_number(daemon_api) > api_number(docker_api.MAX_API) and docker_api.MAX_API or daemon_api
    assert.equal(expect, d.api_version)
  end)

  it("ping() is true and version() has the daemon's ApiVersion", function()
    local d = helper.docker()
    assert.is_true(d:ping())
    local v = assert(d:version())
    assert.matches("^1%.%d+$", v.ApiVersion)
    assert.is_string(v.Version)
    -- the same answer the daemon gives anyone (docker CLI's view)
    local cli = helper.sh("docker version --format '{{.Server.APIVersion}}' 2>/dev/null"):gsub("%s+$", "")
    if cli ~= "" then assert.equal(cli, v.ApiVersion) end
  end)

  describe("over TCP (a socat relay on 127.0.0.1)", function()
    local relay

    lazy_setup(function() relay = start_relay() end)
    lazy_teardown(function() stop_relay(relay) end)

    it("connects to tcp://127.0.0.1:PORT", function()
      local url = "tcp://127.0.0.1:" .. relay.port
      local d, err = lockup.connect(url)
      assert.is_not_nil(d, err)
      check_docker(d, url)
      assert.equal(helper.docker().api_version, d.api_version)
      d:close()
    end)

    it("connects to {host = '127.0.0.1', port = PORT}", function()
      local d, err = lockup.connect({ host = "127.0.0.1", port = relay.port })
      assert.is_not_nil(d, err)
      check_docker(d, "tcp://127.0.0.1:" .. relay.port)
      d:close()
    end)

    it("runs a box through it (attach over TCP)", function()
      local d = assert(lockup.connect("tcp://127.0.0.1:" .. relay.port))
      local box, err = d:start({ image = helper.IMAGE })
      finally(function() if box then box:stop() end end)
      assert.is_not_nil(box, err)
      assert.equal("attach", box.lane_name) -- a remote engine cannot see this host's FIFOs
      local r = assert(box:run("echo over-tcp; echo oops >&2; exit_code=4; (exit $exit_code)"))
      assert.equal("over-tcp\n", r.stdout)
      assert.equal("oops\n", r.stderr)
      assert.equal(4, r.code)
      assert.is_true(box:stop())
      assert.is_false(helper.exists(box.id))
      d:close()
    end)

    it("refuses the fifo lane, saying why, at connect and at start", function()
      local url = "tcp://127.0.0.1:" .. relay.port
      local d, err = lockup.connect { url = url, lane = "fifo" }
      assert.is_nil(d)
      assert.matches("lane 'fifo' cannot work with the Engine at " .. url, err, 1, true)
      assert.matches("over TCP", err, 1, true)
      d = assert(lockup.connect { url = url, lane = "attach" })
      local box
      box, err = d:start { image = helper.IMAGE, lane = "fifo" }
      assert.is_nil(box)
      assert.matches("use lane = \"attach\"", err, 1, true)
      d:close()
    end)

    it("takes DOCKER_HOST=tcp://127.0.0.1:PORT", function()
      local url = "tcp://127.0.0.1:" .. relay.port
      local out = lua(connect_code(), { env = { DOCKER_HOST = url } })
      assert.equal(q("OK lockup.docker (%s, API %s) ping=true\n", url, helper.docker().api_version), out)
    end)
  end)
end)

describe("lockup.connect errors", function()
  local dir

  before_each(function() dir = tmpdir() end)
  after_each(function() helper.sh("rm -rf " .. helper.shell_quote(dir)) end)

  -- what went wrong (and where), and what to do about it
  local function check_no_daemon(err, endpoint, why)
    assert.is_string(err)
    assert.matches("cannot connect to the Docker daemon", err, 1, true)
    assert.matches(endpoint, err, 1, true)
    assert.matches(why, err, 1, true)
    assert.matches("dockerd", err, 1, true) -- start it...
    assert.matches("DOCKER_HOST", err, 1, true) -- ...or point elsewhere
  end

  it("says there is no daemon when the socket path does not exist", function()
    local path = dir .. "/missing/docker.sock"
    local d, err = lockup.connect("unix://" .. path)
    assert.is_nil(d)
    check_no_daemon(err, "unix://" .. path, "no such socket")
    d, err = lockup.connect({ socket = path })
    assert.is_nil(d)
    check_no_daemon(err, "unix://" .. path, "no such socket")
  end)

  it("says there is no daemon when a socket file is left with no listener", function()
    local path = dir .. "/stale.sock"
    local out, ok = helper.sh(q(
      [[python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' %s 2>&1]],
      helper.shell_quote(path)))
    assert(ok, "python3 could not make the socket: " .. out)
    assert.is_true(helper.sh("test -S " .. helper.shell_quote(path) .. " && echo yes") == "yes\n")
    local d, err = lockup.connect("unix://" .. path)
    assert.is_nil(d)
    check_no_daemon(err, "unix://" .. path, "connection refused")
  end)

  it("says permission denied, and how to get access, for a user outside the docker group", function()
    local uid = helper.sh("id -u"):gsub("%s+$", "")
    if uid ~= "0" then
      pending("needs root to run a subprocess as uid 65534")
      return
    end
    local as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"
    -- nobody must be able to read lockup: else run a world-readable copy
    local so = assert(package.searchpath("lockup.core", package.cpath))
    local _, readable = helper.sh(q("%s sh -c %s 2>&1", as_nobody, helper.shell_quote(
      "cat lua/lockup/*.lua " .. so .. " >/dev/null")))
    local opts = { prefix = as_nobody }
    if not readable then
      local cpath_dir = helper.cpath():gsub("^%./", ""):match("^(.*)/%?%.so$")
      assert(cpath_dir and so:sub(1, 1) ~= "/", "cannot copy the core from " .. so)
      local out, copied = helper.sh(q("mkdir -p %s/%s/lockup && cp -r lua %s/ && cp %s %s/%s/lockup/ && chmod -R a+rX %s 2>&1",
        dir, cpath_dir, dir, so, dir, cpath_dir, dir))
      assert(copied, out)
      opts.root = dir
    end
    assert.equal("srw-rw----", helper.sh("stat -c %A " .. SOCK):sub(1, 10))
    local code = [[
      local f = io.open("/proc/self/status"); local uid = f:read("a"):match("\nUid:%s+(%d+)"); f:close()
      print("uid " .. uid)
    ]] .. connect_code(q("%q", "unix://" .. SOCK))
    local out = lua(code, opts)
    assert.matches("^uid 65534\nERR ", out)
    local err = out:match("\nERR (.*)\n$")
    assert.matches("permission denied", err, 1, true)
    assert.matches("unix://" .. SOCK, err, 1, true)
    assert.matches("docker group", err, 1, true) -- what to do
    -- the default endpoint says the same
    out = lua(connect_code(), { prefix = opts.prefix, root = opts.root, env = { DOCKER_HOST = false } })
    assert.matches("^ERR permission denied on unix://" .. SOCK, out)
  end)

  it("rejects an unsupported URL scheme, naming the forms it takes", function()
    for _, url in ipairs({ "npipe:////./pipe/docker_engine", "http://x", "ssh://me@host", "/var/run/docker.sock" }) do
      local d, err = lockup.connect(url)
      assert.is_nil(d, url)
      assert.is_string(err)
      assert.matches(url, err, 1, true)
      assert.matches("unix:///", err, 1, true)
      assert.matches("tcp://host:port", err, 1, true)
    end
  end)

  it("rejects socket and host given together, a relative socket and unknown options (programmer errors throw)", function()
    assert.has_error(function() lockup.connect({ socket = SOCK, host = "127.0.0.1", port = 2375 }) end,
      "bad argument to 'connect' (give socket or host/port, not both)")
    assert.has_error(function() lockup.connect({ socket = "relative.sock" }) end,
      "bad option 'socket' to 'connect' (an absolute path expected, got relative.sock)")
    local ok, err = pcall(lockup.connect, { sokcet = SOCK })
    assert.is_false(ok)
    assert.matches("unknown option 'sokcet'", err, 1, true)
    ok, err = pcall(lockup.connect, { api_version = "garbage" })
    assert.is_false(ok)
    assert.matches("api_version", err, 1, true)
  end)

  it("refuses an api_version newer than the daemon's, and caps none below it", function()
    local info = assert(helper.docker():version())
    local major, minor = info.ApiVersion:match("^(%d+)%.(%d+)$")
    local d, err = lockup.connect({ socket = SOCK, api_version = major .. "." .. (tonumber(minor) + 1) })
    assert.is_nil(d)
    assert.matches("newer than the daemon", err, 1, true)
    d = assert(lockup.connect({ socket = SOCK, api_version = "1.30" }))
    assert.equal("1.30", d.api_version)
    assert.is_true(d:ping())
  end)
end)
