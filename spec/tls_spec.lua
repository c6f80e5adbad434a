-- TLS to a Docker daemon (issue 14): lockup.connect{ tls = ... } and the docker
-- CLI's DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, against the second
-- dockerd that scripts/tls-daemon.sh starts with --tlsverify on 127.0.0.1
-- (its certificates: $LOCKUP_TLS_DIR/certs). Boxes over TLS (attach, exec,
-- stdin, files), and each way TLS fails: a clear error, never a hang.
--
-- Tagged #tls: the default run leaves it out; `make test-tls` starts the
-- daemon and runs this with the core specs pointed at it.
local lockup = require "lockup"
local helper = require "helper"
local core = require "lockup.core"

local now = core.monotime
local q = string.format

local DIR = os.getenv("LOCKUP_TLS_DIR") or "/var/lib/lockup-tls"
local CERTS = DIR .. "/certs"
local PORT = tonumber(os.getenv("LOCKUP_TLS_PORT") or "2376")
local IMAGE = "busybox:local"

local function good(extra)
  local t = { ca = CERTS .. "/client/ca.pem", cert = CERTS .. "/client/cert.pem", key = CERTS .. "/client/key.pem" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- connect{...} to the TLS daemon with `tls`; returns what connect returned
-- and how long it took. `opts` adds connect options.
local function connect(tls, opts)
  local o = { host = "127.0.0.1", port = PORT, tls = tls, timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local t0 = now()
  local d, err = lockup.connect(o)
  return d, err, now() - t0
end

-- A failed connect: its message, checked to come well within the timeout.
local function refused(tls, opts)
  local d, err, took = connect(tls, opts)
  if d then d:close() end
  assert.is_nil(d, "expected a failure")
  assert.is_true(took < 5, q("took %.1f s", took))
  return err
end

local function matches(s, plain)
  assert.is_truthy(s:find(plain, 1, true), q("%q not in: %s", plain, s))
end

local free_port = helper.free_port

-- A loopback listener (a shell command with PORT in it), started in the
-- background: its pid and port, once it accepts connections.
local function listener(cmd)
  local port = free_port()
  local pid = tonumber((helper.sh(cmd:gsub("PORT", port) .. " </dev/null >/dev/null 2>&1 & echo $!")))
  assert(pid, "the listener did not start")
  assert(helper.eventually(function()
    return helper.sh(q("ss -Hltn 'sport = :%d'", port)):find(tostring(port), 1, true)
  end, 5), "the listener does not listen on " .. port)
  return pid, port
end

describe("#tls TLS to a Docker daemon", function()
  setup(function()
    local _, ok = helper.sh("test -r " .. helper.shell_quote(CERTS .. "/client/key.pem"))
    assert(ok, "no certificates in " .. CERTS .. ": run scripts/tls-daemon.sh start (make test-tls does)")
  end)

  describe("connects", function()
    it("with tls = { ca, cert, key }: verified, on the attach lane (a tcp:// engine cannot share FIFOs)", function()
      local d = assert(connect(good()))
      matches(tostring(d), q("tcp://127.0.0.1:%d, TLS, API", PORT))
      assert.is_true(d:ping())
      local usable, why = d:fifo_usable()
      assert.is_nil(usable)
      matches(why, "reached over TCP")
      d:close()
      local err = refused(good(), { lane = "fifo" })
      matches(err, "lane 'fifo' cannot work with the Engine at tcp://127.0.0.1:" .. PORT)
      matches(err, 'use lane = "attach"')
    end)

    it("from DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker CLI", function()
      local code = [[
        local d, err = require("lockup").connect()
        print(d and ("OK " .. tostring(d) .. " " .. tostring(d:ping())) or ("ERR " .. tostring(err)))]]
      local env = { DOCKER_HOST = "tcp://127.0.0.1:" .. PORT, DOCKER_TLS_VERIFY = "1",
        DOCKER_CERT_PATH = CERTS .. "/client", DOCKER_TLS = false }
      local out = helper.sh(helper.lua_cmd(code, { env = env }) .. " 2>&1")
      matches(out, "OK lockup.docker (tcp://127.0.0.1:" .. PORT .. ", TLS, API")
      matches(out, " true")
      -- the default certificate path is ~/.docker
      local home = helper.tmpdir()
      helper.sh(q("mkdir %s/.docker && cp %s/client/*.pem %s/.docker/", home, CERTS, home))
      env.DOCKER_CERT_PATH, env.HOME = false, home
      out = helper.sh(helper.lua_cmd(code, { env = env }) .. " 2>&1")
      matches(out, "OK lockup.docker (tcp://127.0.0.1:" .. PORT .. ", TLS, API")
      -- a missing file is named, with where it was looked for and what to do
      helper.sh(q("rm %s/.docker/key.pem", home))
      out = helper.sh(helper.lua_cmd(code, { env = env }) .. " 2>&1")
      matches(out, "ERR TLS to the Docker daemon: cannot read " .. home .. "/.docker/key.pem (key.pem) in "
        .. "~/.docker, the default of DOCKER_CERT_PATH: No such file or directory")
      env.DOCKER_CERT_PATH, env.HOME = home .. "/.docker", false
      out = helper.sh(helper.lua_cmd(code, { env = env }) .. " 2>&1")
      matches(out, "ERR TLS to the Docker daemon: cannot read " .. home .. "/.docker/key.pem (key.pem) in "
        .. "DOCKER_CERT_PATH")
      helper.rm_rf(home)
    end)

    it("tls = true takes the CLI's files; an https:// URL asks for TLS", function()
      local code = q([[
        local d, err = require("lockup").connect(%s)
        print(d and ("OK " .. tostring(d)) or ("ERR " .. tostring(err)))]], "...")
      local env = { DOCKER_CERT_PATH = CERTS .. "/client", DOCKER_TLS_VERIFY = false, DOCKER_HOST = false }
      for _, arg in ipairs { q("{ host = '127.0.0.1', port = %d, tls = true }", PORT),
        q("'https://127.0.0.1:%d'", PORT), q("{ url = 'tcp://127.0.0.1:%d', tls = true }", PORT) } do
        local out = helper.sh(helper.lua_cmd(code:gsub("%.%.%.", arg), { env = env }) .. " 2>&1")
        matches(out, "OK lockup.docker (tcp://127.0.0.1:" .. PORT .. ", TLS, API")
      end
    end)
  end)

  describe("a box over TLS", function()
    local d, box
    setup(function()
      d = assert(connect(good()))
      box = assert(d:start { image = IMAGE })
    end)
    teardown(function()
      if box then box:stop() end
      if d then d:close() end
    end)

    it("runs steps on the attach stream, with stdin", function()
      matches(tostring(box), "attach lane")
      local r = assert(box:run("echo out; echo err >&2; false"))
      assert.same({ "out\n", "err\n", 1 }, { r.stdout, r.stderr, r.code })
      r = assert(box:run("wc -c", { stdin = helper.all_bytes():rep(1000) }))
      assert.equal("256000\n", r.stdout)
      for i = 1, 50 do assert.equal(i .. "\n", assert(box:run("echo " .. i)).stdout) end
    end)

    it("ends a step whose output passed its cap, without waiting on bytes the TLS layer holds", function()
      local t0 = now()
      local r = assert(box:run("head -c 3000000 /dev/zero; echo done >&2", { max_output = 1000 }))
      assert.is_true(r.truncated)
      assert.equal(1000, #r.stdout)
      assert.is_true(now() - t0 < 5)
      assert.equal("still\n", assert(box:run("echo still")).stdout)
    end)

    it("execs with stdin: a string, a source of known size, a source of unknown size", function()
      local data = helper.all_bytes():rep(4096) -- 1 MiB
      local r = assert(box:exec({ "wc", "-c" }, { stdin = data }))
      assert.same({ "1048576\n", 0 }, { r.stdout, r.code })
      local function source()
        local i = 0
        return function()
          i = i + 1
          if i <= 16 then return data:sub(1, 65536) end
        end
      end
      r = assert(box:exec({ "wc", "-c" }, { stdin = source(), stdin_size = 16 * 65536 }))
      assert.same({ "1048576\n", 0 }, { r.stdout, r.code })
      -- without a size the input ends with a TCP half-close under TLS, as the docker CLI ends it
      r = assert(box:exec({ "wc", "-c" }, { stdin = source(), timeout = 10 }))
      assert.same({ "1048576\n", 0, nil }, { r.stdout, r.code, r.timed_out })
      r = assert(box:exec({ "sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x; echo e >&2; exit 4" }))
      assert.same({ 5000000, "e\n", 4 }, { #r.stdout, r.stderr, r.code })
    end)

    it("puts and gets files", function()
      local data = helper.all_bytes():rep(8192) -- 2 MiB
      assert.is_true(box:put("in/data.bin", data))
      assert.equal(data, box:get("in/data.bin"))
      local dir = helper.tmpdir()
      helper.write(dir .. "/f", "hello over TLS\n")
      assert.is_true(box:put_file(dir .. "/f", "f.txt"))
      assert.equal(15, box:get_file("f.txt", dir .. "/back"))
      assert.equal("hello over TLS\n", helper.read(dir .. "/back"))
      helper.rm_rf(dir)
    end)

    it("reads what the TLS layer holds before it polls the socket (conn:pending)", function()
      local c = assert(d:open(now() + 5))
      assert.is_true(c:tls())
      assert.is_true(c:pending()) -- nothing read yet: it may hold bytes
      local r = core.response(false)
      assert.is_false(r:pump(c)) -- nothing sent, nothing to read
      assert.is_false(c:pending())
      c:close()
    end)
  end)

  describe("fails clearly, and in time", function()
    it("when the daemon's certificate is not signed by the CA given", function()
      local err = refused(good { ca = CERTS .. "/other-ca/ca.pem" })
      matches(err, q("TLS to the Docker daemon at tcp://127.0.0.1:%d failed: the daemon's certificate is not "
        .. "signed by the CA in %s/other-ca/ca.pem (tls.ca)", PORT, CERTS))
      matches(err, "unable to get local issuer certificate")
      matches(err, "give the CA that signed it")
    end)

    it("when no client certificate is given", function()
      local err = refused { ca = CERTS .. "/client/ca.pem" }
      matches(err, q("the Docker daemon at tcp://127.0.0.1:%d wants a client certificate and got none", PORT))
      matches(err, "give tls.cert and tls.key")
    end)

    it("when the client certificate has expired", function()
      local err = refused(good { cert = CERTS .. "/expired-client/cert.pem", key = CERTS .. "/expired-client/key.pem" })
      matches(err, q("the Docker daemon at tcp://127.0.0.1:%d refused this client's certificate %s/expired-client/"
        .. "cert.pem", PORT, CERTS))
      matches(err, "be within its dates")
    end)

    it("when the daemon's certificate has expired", function()
      local pid, port = listener(q("openssl s_server -quiet -www -accept 127.0.0.1:PORT -cert %s -key %s",
        CERTS .. "/expired-server/cert.pem", CERTS .. "/expired-server/key.pem"))
      finally(function() os.execute("kill " .. pid) end)
      local err = refused(good(), { port = port })
      matches(err, q("TLS to the Docker daemon at tcp://127.0.0.1:%d failed: the daemon's certificate is out of "
        .. "its dates", port))
      matches(err, "certificate has expired")
    end)

    it("when nothing answers the handshake: at the timeout", function()
      local pid, port = listener("socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr SYSTEM:'sleep 10'")
      finally(function() os.execute("kill " .. pid) end)
      local d, err, took = connect(good(), { port = port, timeout = 1 })
      assert.is_nil(d)
      assert.is_true(took >= 0.9 and took < 3, q("took %.1f s", took))
      matches(err, q("timed out in the TLS handshake with tcp://127.0.0.1:%d", port))
    end)

    it("when plain HTTP meets the TLS port, or TLS a plain server", function()
      local err = refused(false)
      matches(err, q("the Docker daemon at tcp://127.0.0.1:%d speaks TLS: set DOCKER_TLS_VERIFY=1", PORT))
      local pid, port = listener("socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork "
        .. "SYSTEM:'printf \"HTTP/1.1 200 OK\\r\\n\\r\\n\"; sleep 5'")
      finally(function() os.execute("kill " .. pid) end)
      -- OpenSSL reads the answer as a bad record ("wrong version number"), or
      -- sometimes sees the connection end first (SSL_ERROR_SYSCALL): both say so
      err = refused(good(), { port = port })
      matches(err, q("the Docker daemon at tcp://127.0.0.1:%d ", port))
      matches(err, "not speak TLS there")
    end)

    it("when a file is missing: names it", function()
      matches(refused(good { ca = "/nonexistent/ca.pem" }),
        "TLS to the Docker daemon: cannot read the CA certificate /nonexistent/ca.pem (tls.ca): No such file")
      matches(refused(good { key = "/nonexistent/key.pem" }),
        "cannot read the client key /nonexistent/key.pem (tls.key): No such file")
    end)

    it("when options are wrong: raises at the call", function()
      matches(helper.raised(function() connect(good { cert = false }) end),
        "bad option 'cert' to 'connect (option tls)' (string expected, got boolean)")
      matches(helper.raised(function() connect { ca = CERTS .. "/client/ca.pem", cert = CERTS .. "/client/cert.pem" } end),
        "bad option 'tls' to 'connect' (cert and key go together: give both, or neither)")
      matches(helper.raised(function() connect(good { verfiy = false }) end), "unknown option 'verfiy'")
      matches(helper.raised(function() lockup.connect { socket = "/var/run/docker.sock", tls = good() } end),
        "bad option 'tls' to 'connect' (TLS is for tcp:// endpoints, not a unix socket)")
    end)
  end)

  describe("verify = false", function()
    it("is refused unless unsafe = { \"tls_noverify\" } names it", function()
      local err = helper.raised(function() connect(good { verify = false }) end)
      matches(err, "bad option 'tls.verify' to 'connect' (verify = false lets anyone on the way to the daemon "
        .. "pose as it")
      matches(err, 'if it must be so, give unsafe = { "tls_noverify" })')
      matches(helper.raised(function() connect(good { verify = false }, { unsafe = { "tls_no_verify" } }) end),
        "bad option 'unsafe' to 'connect' (a list of names out of tls_noverify expected, got 'tls_no_verify')")
      -- named: the daemon is not checked (a CA that signed nothing of it), the client certificate still goes
      local d = assert(connect(good { verify = false, ca = CERTS .. "/other-ca/ca.pem" }, { unsafe = { "tls_noverify" } }))
      assert.is_true(d:ping())
      d:close()
    end)
  end)
end)
