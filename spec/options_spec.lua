-- start's options that would quietly remove a limit, or hand the box part of
-- the host (issue 11, item 5): refused with an error naming the option, why,
-- and what to give instead; `unsafe = { ... }` lets the dangerous kinds
-- through. Errors are raised before anything is created, so most cases need
-- no container; the last describe starts real boxes.
local helper = require "helper"
local hardening = require "lockup.hardening"

local MiB = 1024 * 1024

-- The error start raises for `opts` (with the test image), checked to be
-- blamed on the caller's line and to leave no container behind.
local function start_error(opts)
  opts.image = helper.IMAGE
  local d, owner = helper.docker(), helper.owner()
  local before = helper.boxes(owner)
  local err = helper.raised(function() d:start(opts) end)
  assert.matches("options_spec.lua:%d+:", err)
  assert.same(before, helper.boxes(owner))
  return err
end

local function matches_all(err, parts)
  for _, part in ipairs(parts) do assert.matches(part, err, 1, true) end
end

describe("a limit that would reach the container as 0", function()
  local NO_LIMIT = "which the container's config would get as 0: no limit at all to Docker"
  local NEGATIVE = "which the container's config would get as a negative number: no limit at all to Docker"
  for _, case in ipairs {
    { { memory = "0m" }, { "bad option 'memory' to 'start'", "at least 6m expected, got \"0m\"", NO_LIMIT } },
    { { memory = "0" }, { "bad option 'memory'", "at least 6m expected, got \"0\"", NO_LIMIT } },
    { { memory = -1 }, { "bad option 'memory'", "at least 6m expected, got -1", NEGATIVE } },
    { { memory = "1k" }, { "bad option 'memory'", "at least 6m expected, got \"1k\")" } },
    { { memory = math.huge }, { "bad option 'memory'", "at least 6m expected, got inf" } },
    { { memory = 0 / 0 }, { "bad option 'memory'", "at least 6m expected, got" } },
    { { memory = 0.5 }, { "bad option 'memory'", "a whole number of bytes, expected, got 0.5" } },
    { { cpus = 1e-10 }, { "bad option 'cpus' to 'start'", "at least 0.01 expected, got 1e-10", NO_LIMIT } },
    { { cpus = 0 }, { "bad option 'cpus'", "at least 0.01 expected, got 0", NO_LIMIT } },
    { { cpus = -1 }, { "bad option 'cpus'", "at least 0.01 expected, got -1", NEGATIVE } },
    { { cpus = 0.001 }, { "bad option 'cpus'", "at least 0.01 expected, got 0.001)" } },
    { { cpus = 0 / 0 }, { "bad option 'cpus'", "at least 0.01 expected, got" } },
    { { cpus = math.huge }, { "bad option 'cpus'", "at least 0.01 expected, got inf" } },
    { { pids = 0.5 }, { "bad option 'pids' to 'start'", "a whole number, at least 1, expected, got 0.5" } },
    { { pids = 0 }, { "bad option 'pids'", "at least 1 expected, got 0", NO_LIMIT } },
    { { pids = -1 }, { "bad option 'pids'", "at least 1 expected, got -1", NEGATIVE } },
    { { pids = math.huge }, { "bad option 'pids'", "at least 1 expected, got inf" } },
    { { disk = "0" }, { "bad option 'disk' to 'start'", "at least 1 byte expected, got \"0\"", NO_LIMIT } },
    { { disk = "0m" }, { "bad option 'disk'", "at least 1 byte expected, got \"0m\"", NO_LIMIT } },
    { { disk = math.huge }, { "bad option 'disk'", "at least 1 byte expected, got inf" } },
    { { ulimits = { nofile = 0 / 0 } }, { "bad option 'ulimits.nofile' to 'start'", "at least 1 expected, got" } },
    { { ulimits = { nofile = math.huge } }, { "bad option 'ulimits.nofile'", "at least 1 expected, got inf" } },
    { { ulimits = { nofile = 1.5 } }, { "bad option 'ulimits.nofile'", "a whole number, at least 1, expected" } },
    { { ulimits = { nofile = 0 } }, { "bad option 'ulimits.nofile'", "at least 1 expected, got 0" } },
    { { ulimits = { fsize = "0" } }, { "bad option 'ulimits.fsize' to 'start'", "at least 1 byte expected, got \"0\"" } },
    { { ulimits = { fsize = math.huge } }, { "bad option 'ulimits.fsize'", "at least 1 byte expected, got inf" } },
    { { max_output = 0 }, { "bad option 'max_output' to 'start'", "a whole number of bytes, at least 1, expected, got 0" } },
    { { max_output = 0.5 }, { "bad option 'max_output'", "at least 1, expected, got 0.5" } },
    { { max_output = math.huge }, { "bad option 'max_output'", "at least 1, expected, got inf" } },
    { { timeout = math.huge }, { "bad option 'timeout' to 'start'", "positive, finite number of seconds expected, got inf" } },
  } do
    local opts, parts = case[1], case[2]
    local shown = parts[2]:gsub("expected, ", "")
    it("is refused: " .. shown, function()
      matches_all(start_error(opts), parts)
    end)
  end

  it("the smallest values that work reach the container's config as given", function()
    local _, host = hardening.container {
      memory = "6m", cpus = 0.01, pids = 1, disk = 1, ulimits = { nofile = 1, fsize = "1" },
    }
    assert.equal(6 * MiB, host.Memory)
    assert.equal(6 * MiB, host.MemorySwap)
    assert.equal(10000000, host.NanoCpus)
    assert.equal(1, host.PidsLimit)
    assert.matches(",size=1,", host.Tmpfs["/tmp"], 1, true)
    assert.same({ { Name = "nofile", Soft = 1, Hard = 1 }, { Name = "fsize", Soft = 1, Hard = 1 } }, host.Ulimits)
  end)

  it("cpus are rounded to the nearest NanoCpu, not down", function()
    local _, host = hardening.container { cpus = 2.01 } -- 2.01 * 1e9 is 2009999999.9999998
    assert.equal(2010000000, host.NanoCpus)
    _, host = hardening.container { cpus = 1.5 }
    assert.equal(1500000000, host.NanoCpus)
  end)

  it("the defaults are all limits", function()
    local _, host = hardening.container {}
    assert.equal(512 * MiB, host.Memory)
    assert.equal(1e9, host.NanoCpus)
    assert.equal(256, host.PidsLimit)
    assert.matches(",size=268435456,", host.Tmpfs["/work"], 1, true)
  end)
end)

describe("a per-call limit that would be no limit", function()
  local box
  setup(function() box = assert(helper.docker():start { image = helper.IMAGE }) end)
  teardown(function() assert(box:stop()) end)

  for _, method in ipairs { "run", "exec" } do
    it(method .. ": max_output = 0 (the core's 'no cap'), a fraction or inf, and timeout = inf are refused", function()
      local cmd = method == "run" and "echo hi" or { "echo", "hi" }
      for _, opts in ipairs { { max_output = 0 }, { max_output = 0.5 }, { max_output = math.huge },
        { max_output = -1 } } do
        local err = helper.raised(function() box[method](box, cmd, opts) end)
        matches_all(err, { "bad option 'max_output' to '" .. method .. "'", "a whole number of bytes, at least 1" })
        assert.matches("options_spec.lua:%d+:", err)
      end
      local err = helper.raised(function() box[method](box, cmd, { timeout = math.huge }) end)
      matches_all(err, { "bad option 'timeout' to '" .. method .. "'", "positive, finite number of seconds" })
      -- and the box is fine: the smallest cap works as a cap
      local r = assert(box[method](box, cmd, { max_output = 1 }))
      assert.equal("h", r.stdout)
      assert.is_true(r.truncated)
    end)
  end
end)

describe("options that hand the box part of the host", function()
  local dir
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rm_rf(dir) end)

  local SOCKETS = 'if the box must have it, give unsafe = { "sockets" }'
  local HOST_PATHS = 'if the box must have it, give unsafe = { "host_paths" }'

  -- volumes: host path -> what the error says
  for _, case in ipairs {
    { "/var/run/docker.sock", { "/var/run/docker.sock is a unix socket", "read-only mount", SOCKETS } },
    { "/run/docker.sock", { "/run/docker.sock is a unix socket", SOCKETS } },
    { "/var/run", { "/var/run holds the engine socket /var/run/docker.sock", SOCKETS } },
    { "/run", { "/run holds the engine socket /run/docker.sock", SOCKETS } },
    { "/run/", { "/run/ (/run) holds the engine socket /run/docker.sock", SOCKETS } },
    { "/", { "/ holds the engine socket /run/docker.sock", SOCKETS } },
    { "/proc", { "/proc is the host's /proc", HOST_PATHS } },
    { "/proc/1/", { "/proc/1/ (/proc/1) is inside the host's /proc", HOST_PATHS } },
    { "/sys", { "/sys is the host's /sys", HOST_PATHS } },
    { "/dev", { "/dev is the host's /dev", HOST_PATHS } },
    { "/boot", { "/boot is the host's /boot", HOST_PATHS } },
    { "/etc", { "/etc is the host's /etc", HOST_PATHS } },
    { "//etc//", { "//etc// (/etc) is the host's /etc", HOST_PATHS } },
    { "/tmp/../etc/ssh", { "/tmp/../etc/ssh (/etc/ssh) is inside the host's /etc", HOST_PATHS } },
    { "/root", { "/root is the host's /root", HOST_PATHS } },
    { "/usr/share", { "/usr/share is inside the host's /usr", HOST_PATHS } },
    { "/var/lib/docker", { "/var/lib/docker is the host's /var/lib/docker", HOST_PATHS } },
    { "/var/lib/docker/volumes", { "is inside the host's /var/lib/docker", HOST_PATHS } },
    { "/var", { "/var holds the engine socket /var/run/docker.sock", SOCKETS } },
    { "/var/lib", { "/var/lib holds the host's /var/lib/", HOST_PATHS } },
    { require("lockup.lane.fifo").parent(), { "the host's " .. require("lockup.lane.fifo").parent(), HOST_PATHS } },
  } do
    local host_path, parts = case[1], case[2]
    it("volumes: " .. host_path .. " is refused", function()
      local err = start_error { volumes = { [host_path] = "/h" } }
      assert.matches("bad option 'volumes' to 'start' (", err, 1, true)
      matches_all(err, parts)
    end)
  end

  it("volumes: a socket anywhere, a symlink to one, a symlink to /etc are refused as what they really are", function()
    local sock = dir .. "/app.sock"
    local _, ok = helper.sh("perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => $ARGV[0], Listen => 1) "
      .. "or die $!' " .. helper.shell_quote(sock))
    assert(ok, "could not make a unix socket with perl")
    matches_all(start_error { volumes = { [sock] = "/s" } }, { sock .. " is a unix socket", SOCKETS })
    assert(helper.sh("ln -s /var/run/docker.sock " .. dir .. "/d && ln -s /etc " .. dir .. "/e"))
    matches_all(start_error { volumes = { [dir .. "/d"] = "/d" } },
      { dir .. "/d is a unix socket", SOCKETS })
    matches_all(start_error { volumes = { [dir .. "/e/ssh"] = "/e" } },
      { dir .. "/e/ssh (/etc/ssh) is inside the host's /etc", HOST_PATHS })
    -- a path through a symlink that does not exist yet (Docker would create it)
    matches_all(start_error { volumes = { [dir .. "/e/new/dir"] = "/e" } }, { "(/etc/new/dir)", HOST_PATHS })
  end)

  it("volumes: names that only look alike, and a private directory, are fine", function()
    for _, host_path in ipairs { dir, dir .. "/new", "/etcetera", "/usr2/x", "/devices", "/var/lib/dockerx",
      "/runx", "/var/runx/y" } do
      local _, host = hardening.container { volumes = { [host_path] = "/h" } }
      assert.same({ host_path .. ":/h:ro" }, host.Binds)
    end
  end)

  local CAPS = 'if the box must have it, give unsafe = { "capabilities" }'
  for _, case in ipairs {
    { "ALL", "ALL (every capability: a root box with them is as good as --privileged)" },
    { "all", "all (every capability" },
    { "SYS_ADMIN", "SYS_ADMIN (mount, namespaces and many kernel controls" },
    { "CAP_SYS_ADMIN", "CAP_SYS_ADMIN (mount, namespaces" },
    { "sys_ptrace", "sys_ptrace (tracing the processes it sees" },
    { "SYS_MODULE", "SYS_MODULE (loading code into the host's kernel)" },
    { "NET_ADMIN", "NET_ADMIN (control of network interfaces" },
    { "DAC_READ_SEARCH", "DAC_READ_SEARCH (open_by_handle_at" },
    { "SYS_RESOURCE", "SYS_RESOURCE (raising its own limits" },
    { "SYS_NICE", "SYS_NICE (a power Docker withholds from containers)" },
  } do
    it("cap_add: " .. case[1] .. " is refused", function()
      local err = start_error { cap_add = { "CHOWN", case[1] } }
      matches_all(err, { "bad option 'cap_add' to 'start' (", case[2],
        "is not in Docker's default set (AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, "
          .. "NET_BIND_SERVICE, NET_RAW, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT)", CAPS })
    end)
  end

  it("cap_add: Docker's default set is fine, by any spelling", function()
    local _, host = hardening.container { cap_add = { "CHOWN", "cap_kill", "Net_Bind_Service" } }
    assert.same({ "CHOWN", "cap_kill", "Net_Bind_Service" }, host.CapAdd)
  end)

  local UNCONFINED = 'if the box must have it, give unsafe = { "unconfined" })'
  for _, case in ipairs {
    { "seccomp=unconfined", "turns off the seccomp filter" },
    { "seccomp:unconfined", "turns off the seccomp filter" },
    { "apparmor=unconfined", "turns off AppArmor confinement" },
    { "apparmor:unconfined", "turns off AppArmor confinement" },
    { "label=disable", "turns off SELinux separation" },
    { "label:disable", "turns off SELinux separation" },
    { "systempaths=unconfined", "turns off the masks Docker puts on /proc and /sys paths" },
    { "no-new-privileges=false", "turns off no-new-privileges, which lockup sets" },
    { "no-new-privileges:0", "turns off no-new-privileges" },
    { "writable-cgroups=true", "turns off read-only cgroups" },
  } do
    it("security_opt: " .. case[1] .. " is refused", function()
      local err = start_error { security_opt = { "no-new-privileges", case[1] } }
      matches_all(err, { "bad option 'security_opt' to 'start' (\"" .. case[1] .. "\" " .. case[2], UNCONFINED })
    end)
  end

  it("security_opt: a profile of one's own, labels and no-new-privileges=true are fine", function()
    local given = { "seccomp={\"defaultAction\":\"SCMP_ACT_ERRNO\"}", "apparmor=docker-default", "label=type:x_t",
      "no-new-privileges=true" }
    local _, host = hardening.container { security_opt = given }
    assert.same({ "no-new-privileges", given[1], given[2], given[3], given[4] }, host.SecurityOpt)
  end)

  it("unsafe: an unknown name, or a table that is not a list of names, is refused, listing the names", function()
    for _, unsafe in ipairs { { "docker_socket" }, { "sockets", "all" }, { sockets = true }, { 1 } } do
      matches_all(start_error { unsafe = unsafe }, { "bad option 'unsafe' to 'start' (a list of names out of "
        .. "capabilities, host_paths, sockets, unconfined expected, got " })
    end
    matches_all(start_error { unsafe = "sockets" }, { "bad option 'unsafe' to 'start' (table expected, got string)" })
  end)

  it("unsafe: each name lets its kind through, and only its kind", function()
    local _, host = hardening.container { unsafe = { "sockets" }, volumes = { ["/var/run/docker.sock"] = "/d" } }
    assert.same({ "/var/run/docker.sock:/d:ro" }, host.Binds)
    _, host = hardening.container { unsafe = { "host_paths" }, volumes = { ["/etc"] = "/e" } }
    assert.same({ "/etc:/e:ro" }, host.Binds)
    _, host = hardening.container { unsafe = { "capabilities" }, cap_add = { "ALL" } }
    assert.same({ "ALL" }, host.CapAdd)
    _, host = hardening.container { unsafe = { "unconfined" }, security_opt = { "seccomp=unconfined" } }
    assert.same({ "no-new-privileges", "seccomp=unconfined" }, host.SecurityOpt)
    -- "/" is both a system directory and the holder of the engine's socket: it needs both names
    matches_all(start_error { unsafe = { "sockets" }, volumes = { ["/"] = "/h" } }, { HOST_PATHS })
    matches_all(start_error { unsafe = { "host_paths" }, volumes = { ["/"] = "/h" } }, { SOCKETS })
    _, host = hardening.container { unsafe = { "host_paths", "sockets" }, volumes = { ["/"] = "/h" } }
    assert.same({ "/:/h:ro" }, host.Binds)
    matches_all(start_error { unsafe = { "capabilities" }, security_opt = { "apparmor=unconfined" } }, { UNCONFINED })
  end)
end)

describe("boxes that start", function()
  local docker = helper.docker()

  -- /proc/self/status fields of the box's shell.
  local function status(box)
    local r = assert(box:run("cat /proc/self/status"))
    local fields = {}
    for k, v in r.stdout:gmatch("([%w_]+):%s*([^\n]*)") do fields[k] = v end
    return fields
  end

  it("with the safe defaults: no capability, seccomp on, every limit set", function()
    local box = assert(docker:start { image = helper.IMAGE })
    local s = status(box)
    assert.equal("0000000000000000", s.CapBnd)
    assert.equal("2", s.Seccomp) -- a filter
    local host = assert(helper.inspect(box.id)).HostConfig
    assert.equal(512 * MiB, host.Memory)
    assert.equal(1e9, host.NanoCpus)
    assert.equal(256, host.PidsLimit)
    assert(box:stop())
  end)

  -- (cpus = 0.01 starts too, but takes seconds: its config is checked above)
  it("with the smallest memory and disk that work", function()
    local box = assert(docker:start { image = helper.IMAGE, memory = "6m", disk = 4096 })
    local r = assert(box:run("echo ok"))
    assert.equal("ok\n", r.stdout)
    local host = assert(helper.inspect(box.id)).HostConfig
    assert.equal(6 * MiB, host.Memory)
    assert(box:stop())
  end)

  it("with what unsafe lets through: a socket, a capability, no seccomp", function()
    local box = assert(docker:start {
      image = helper.IMAGE, unsafe = { "sockets", "capabilities", "unconfined" },
      volumes = { ["/var/run/docker.sock"] = "/engine.sock" }, -- the default user cannot connect to it (0660 root:docker)
      cap_add = { "SYS_PTRACE" }, security_opt = { "seccomp=unconfined" },
    })
    local s = status(box)
    assert.equal("0000000000080000", s.CapBnd) -- CAP_SYS_PTRACE is bit 19, in the bounding set only
    assert.equal("0000000000000000", s.CapEff)
    assert.equal("0", s.Seccomp)
    local r = assert(box:run("test -S /engine.sock && echo socket"))
    assert.equal("socket\n", r.stdout)
    assert(box:stop())
  end)
end)
