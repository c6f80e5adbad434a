-- The quickstart: a box, a few steps in its shell, and the results.
-- Run from the repository root with `make example` (which sets everything up).
local lockup = require "lockup"

local docker = assert(lockup.connect()) -- DOCKER_HOST, else unix:///var/run/docker.sock
print(docker)

lockup.run(function()
  local box <close> = assert(docker:start { image = "busybox:local" })
  print(box)

  -- Steps share the shell: the directory, variables and files persist.
  local r = assert(box:run("mkdir -p /tmp/w && cd /tmp/w && echo hello > a.txt"))
  assert(r.ok)
  r = assert(box:run("cat a.txt; echo oops >&2; false"))
  print(r.code, r.stdout, r.stderr)  --> 1   hello\n   oops\n

  -- Input goes in exactly as given; the network is off (a loopback device only).
  r = assert(box:run("wc -c; echo interfaces: $(ls /sys/class/net)", { stdin = "twelve bytes" }))
  io.write(r.stdout)

  -- Several boxes at once: each task is a coroutine over one event loop.
  local t0 = require("lockup.core").monotime()
  local a, b = lockup.run(function()
    local other <close> = assert(docker:start { image = "busybox:local" })
    return assert(other:run("sleep 1; echo from another box")).stdout
  end, function()
    return assert(box:run("sleep 1; echo from this box")).stdout
  end)
  io.write(a, b)
  print(("two 1-second steps in two boxes took %.1f s"):format(require("lockup.core").monotime() - t0))
end)
