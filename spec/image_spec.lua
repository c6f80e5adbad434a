-- Images against the real Engine: docker:build (table and directory contexts,
-- progress, failures, no network), docker:import, docker:pull (never reaching
-- a registry: loopback only), image_exists, remove_image, lockup.content_tag.
-- Every image a test makes is removed in teardown.
local helper = require "helper"
local C = require "support.compat"
local lockup = require "lockup"
local core = require "lockup.core"
local context = require "lockup.context"

local now = core.monotime
local q = helper.shell_quote

local function oct(s) return C.tointeger(tonumber(s, 8)) end

local docker
local made = {} -- image names and ids to remove in teardown

-- A fresh image name of ours: lockup-spec-<what>-<random>:<tag>.
local function name(what, tag)
  return "lockup-spec-" .. what .. "-" .. core.random_hex(4) .. ":" .. (tag or "latest")
end

local function track(ref)
  made[#made + 1] = ref
  return ref
end

-- Builds; the image (tag or id) is removed in teardown. Returns id | nil, err.
local function build(opts)
  local id, err = docker:build(opts)
  if id then
    if opts.tag then track(opts.tag) end
    track(id)
  end
  return id, err
end

local raised = helper.raised

-- Runs cmd in a fresh box of `image`; returns its result.
local function run_in(image, cmd)
  return helper.closing(assert(docker:start { image = image }), function(box)
    return assert(box:run(cmd))
  end)
end

setup(function()
  docker = helper.docker()
end)

-- The daemon's own words, passed on: Podman's differ
local NO_SUCH_IMAGE = helper.docker().engine == "podman" and "image not known" or "No such image"
local PODMAN = helper.docker().engine == "podman"

teardown(function()
  local errors = {}
  for i = #made, 1, -1 do -- newest first: tags before the ids under them
    local ok, err = docker:remove_image(made[i], { force = true })
    if not ok and not tostring(err):find("No such image", 1, true) and not tostring(err):find("image not known", 1, true)
    then errors[#errors + 1] = err end
  end
  for _, ref in ipairs(made) do
    if docker:image_exists(ref) then errors[#errors + 1] = ref .. " left behind" end
  end
  assert(#errors == 0, table.concat(errors, "\n"))
end)

describe("docker:build", function()
  it("builds from a table context with the Dockerfile's text: COPY and RUN, and the image works", function()
    local tag = name("table")
    local id = assert(build {
      context = {
        ["hello.txt"] = "hello from the context\n",
        ["bin/tool.sh"] = { data = "#!/bin/sh\necho tool says $1\n", mode = oct "755" },
      },
      dockerfile = "FROM busybox:local\nCOPY hello.txt /hello.txt\nCOPY bin /opt/bin\n"
        .. "RUN cat /hello.txt > /copied && echo ran > /ran\n",
      tag = tag,
    })
    assert.matches("^sha256:%x+$", id)
    assert.is_true(docker:image_exists(tag))
    assert.is_true(docker:image_exists(id))
    local r = run_in(tag, "cat /hello.txt /copied /ran; /opt/bin/tool.sh hi; stat -c %a /opt/bin/tool.sh")
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello from the context\nhello from the context\nran\ntool says hi\n755\n", r.stdout)
  end)

  -- Issue 19: a build whose RUN floods its output meets its timeout (the
  -- progress stream never pauses, so the deadline is checked between reads).
  it("returns at its timeout while a RUN step floods its output, with and without on_progress", function()
    for _, progress in ipairs { false, true } do
      local t0 = now()
      local id, err = docker:build {
        context = { Dockerfile = "FROM busybox:local\nRUN yes\n" }, tag = name("flood"), timeout = 2,
        on_progress = progress and function() end or nil,
      }
      local took = now() - t0
      assert.is_nil(id)
      assert.matches("timed out", err)
      assert.is_true(took < 3, string.format("build took %.2f s (timeout 2 s)", took))
    end
    -- The Engine may go on with the RUN after the call returned (Podman 4.3
    -- always does: README); lockup cannot cancel a build. Whatever is left of
    -- it is ended here, RUN steps that start late included, so that no `yes`
    -- burns the host's CPU for the rest of the suite.
    local function running() return helper.sh("ps -eo args"):find("\n/bin/sh -c yes\n", 1, true) end
    helper.eventually(function()
      helper.sh("pkill -9 -x -f '/bin/sh -c yes'") -- a container's init: only SIGKILL reaches it
      return not running() and not helper.eventually(running, 2)
    end, 30)
  end)

  it("takes a Dockerfile that is a file of a table context", function()
    local tag = name("tabledf")
    assert(build {
      context = { Dockerfile = "FROM busybox:local\nCOPY f /f\n", f = "in the image" },
      tag = tag,
    })
    assert.equal("in the image", run_in(tag, "cat /f").stdout)
  end)

  it("builds from a host directory, with dockerfile naming a file in it", function()
    local dir = helper.tmpdir()
    helper.sh("mkdir -p " .. q(dir .. "/app/sub") .. " " .. q(dir .. "/build"))
    helper.write(dir .. "/app/main.txt", "main\n")
    helper.write(dir .. "/app/sub/deep.txt", "deep\n")
    helper.write(dir .. "/Dockerfile", "FROM busybox:local\nCOPY app /app\n")
    helper.write(dir .. "/build/Other.dockerfile", "FROM busybox:local\nCOPY app/sub /other\nRUN echo other > /which\n")
    local tag1, tag2 = name("dir", "default"), name("dir", "other")
    assert(build { context = dir, tag = tag1 })
    assert(build { context = dir, dockerfile = "build/Other.dockerfile", tag = tag2 })
    helper.rm_rf(dir)
    assert.equal("main\ndeep\n", run_in(tag1, "cat /app/main.txt /app/sub/deep.txt").stdout)
    assert.equal("deep\nother\n", run_in(tag2, "cat /other/deep.txt /which").stdout)
  end)

  it("reports progress: the context sent, then each step as it happens", function()
    local events, t0 = {}, now()
    local id = assert(build {
      context = { f = "x" },
      dockerfile = "FROM busybox:local\nRUN echo first-step-output\nRUN sleep 1 && echo second-step-output\n",
      nocache = true,
      on_progress = function(ev)
        ev.at = now() - t0
        events[#events + 1] = ev
      end,
    })
    local ended = now() - t0
    assert.is_string(id)
    -- the context, as byte counts reaching the total
    local ctx = {}
    for _, ev in ipairs(events) do if ev.op == "context" then ctx[#ctx + 1] = ev end end
    assert.is_true(#ctx > 0, "no context event")
    for i = 2, #ctx do assert.is_true(ctx[i].done > ctx[i - 1].done) end
    assert.equal(ctx[#ctx].total, ctx[#ctx].done)
    -- the steps, in order, with the lines of each
    local steps, texts, step3_at = {}, {}, nil
    for _, ev in ipairs(events) do
      if ev.op == "build" then
        assert.is_string(ev.text)
        texts[#texts + 1] = ev.text
        if ev.step and steps[#steps] ~= ev.step then steps[#steps + 1] = ev.step end
        if ev.text:find("second-step-output", 1, true) then assert.matches("^step 3/3 %(RUN sleep 1", ev.step) end
        if ev.text:find("first-step-output", 1, true) then assert.matches("^step 2/3 %(RUN echo", ev.step) end
        if ev.text:match("^Step 3/3") or ev.text:match("^STEP 3/3") then step3_at = ev.at end
      end
    end
    assert.same({ "step 1/3 (FROM busybox:local)", "step 2/3 (RUN echo first-step-output)",
      "step 3/3 (RUN sleep 1 && echo second-step-output)" }, steps)
    local all = table.concat(texts, "\n")
    assert.matches("first-step-output", all, 1, true)
    assert.matches("second-step-output", all, 1, true)
    local last = events[#events]
    assert.equal("build", last.op)
    assert.is_true(last.finished)
    assert.matches(id, last.text, 1, true)
    -- as it happens: step 3 was announced before its `sleep 1` ran, not at the end
    assert.is_number(step3_at)
    assert.is_true(ended - step3_at > 0.8, ("step 3 reported at %.2f s, build ended at %.2f s"):format(step3_at, ended))
  end)

  it("builds with no network: a RUN step sees only lo", function()
    if PODMAN then
      -- Podman 4.3's API ignores networkmode=none (both its Docker API and its
      -- own): a RUN step sees the host's interfaces. Nothing lockup can send
      -- turns it off; README ("Podman") says so.
      pending("Podman's build API gives RUN steps the host's network whatever networkmode says")
      return
    end
    local texts = {}
    assert(build {
      context = {},
      dockerfile = "FROM busybox:local\nRUN echo BEGIN; cat /proc/net/dev; echo END; ip -o link\n",
      nocache = true,
      on_progress = function(ev) if ev.op == "build" then texts[#texts + 1] = ev.text end end,
    })
    local out = table.concat(texts, "\n")
    local dev = assert(out:match("BEGIN\n(.-)\nEND"), out)
    local interfaces = {}
    for iface in dev:gmatch("\n%s*([%w_.%-@]+):") do interfaces[#interfaces + 1] = iface end
    assert.same({ "lo" }, interfaces)
    local links = {}
    for iface in out:gmatch("\n%d+: ([%w_.%-@]+):") do links[#links + 1] = iface end
    assert.same({ "lo" }, links)
  end)

  it("resolves multi-stage names and ARGs in FROM without calling them missing", function()
    local tag = name("stages")
    assert(build {
      context = {},
      dockerfile = "ARG BASE=busybox:local\nFROM $BASE AS first\nRUN echo one > /one\n"
        .. "FROM first\nRUN cat /one > /two\n",
      tag = tag,
    })
    assert.equal("one\n", run_in(tag, "cat /two").stdout)
  end)

  describe("fails with nil, err", function()
    it("a failing RUN step: names the step, carries its stdout and stderr, no colour codes", function()
      local id, err = build {
        context = {},
        dockerfile = "FROM busybox:local\nRUN echo to-stdout; echo to-stderr >&2; exit 7\n",
        nocache = true,
      }
      assert.is_nil(id)
      assert.is_string(err)
      assert.matches("step 2/2", err, 1, true)
      assert.matches("RUN echo to-stdout", err, 1, true)
      assert.matches(PODMAN and "exit status 7" or "non-zero code: 7", err, 1, true)
      assert.matches("to-stdout", err, 1, true)
      assert.matches("to-stderr", err, 1, true)
      assert.is_nil(err:find("\27", 1, true), "colour codes in: " .. err)
      assert.is_nil(err:find("Removing intermediate container", 1, true))
      assert.is_nil(err:find(" ---> ", 1, true))
    end)

    it("a failing step reports to on_progress too, ending with finished", function()
      local events = {}
      local id = build {
        context = {},
        dockerfile = "FROM busybox:local\nRUN exit 1\n",
        nocache = true,
        on_progress = function(ev) events[#events + 1] = ev end,
      }
      assert.is_nil(id)
      local last = events[#events]
      assert.is_true(last.finished)
      assert.equal("failed", last.text)
    end)

    it("a Dockerfile parse error", function()
      local id, err = build { context = {}, dockerfile = "FROM busybox:local\nBOGUS instruction\n" }
      assert.is_nil(id)
      assert.matches(PODMAN and "Unknown instruction" or "parse error", err, 1, true)
      assert.matches("BOGUS", err, 1, true)
    end)

    it("a missing base image, fast and without pulling it", function()
      local base = name("nobase", "x")
      local t0 = now()
      local id, err = build { context = {}, dockerfile = "FROM " .. base .. "\nRUN true\n" }
      local took = now() - t0
      assert.is_nil(id)
      assert.matches(base, err, 1, true)
      assert.matches("not on the Engine", err, 1, true)
      assert.is_true(took < 3, "took " .. took .. " s")
      assert.is_false(docker:image_exists(base))
      -- nonexistent:x, as a user would write it
      id, err = build { context = {}, dockerfile = "FROM nonexistent:x\nRUN true\n" }
      assert.is_nil(id)
      assert.matches("'nonexistent:x' (FROM) is not on the Engine", err, 1, true)
    end)

    it("a missing Dockerfile in the context", function()
      local id, err = build { context = { f = "x" } }
      assert.is_nil(id)
      assert.matches("no file 'Dockerfile'", err, 1, true)
      id, err = build { context = { f = "x" }, dockerfile = "sub/Nope" }
      assert.is_nil(id)
      assert.matches("no file 'sub/Nope'", err, 1, true)
      local dir = helper.tmpdir()
      id, err = build { context = dir }
      helper.rm_rf(dir)
      assert.is_nil(id)
      assert.matches("no file 'Dockerfile'", err, 1, true)
    end)

    it("a context directory that does not exist", function()
      local id, err = build { context = "/tmp/lockup-spec-no-such-context" }
      assert.is_nil(id)
      assert.matches("build context", err, 1, true)
      assert.matches("/tmp/lockup-spec-no-such-context", err, 1, true)
      assert.matches("No such file", err, 1, true)
    end)

    it("a bad name in a table context", function()
      for _, bad in ipairs { "../escape", "/abs", "a//b", "" } do
        local id, err = build { context = { [bad] = "x" }, dockerfile = "FROM busybox:local\n" }
        assert.is_nil(id, bad)
        assert.matches("build context", err, 1, true)
        assert.matches("bad name", err, 1, true)
      end
    end)

    it("a bad tag", function()
      local id, err = build { context = {}, dockerfile = "FROM busybox:local\n", tag = "Upper:Case" }
      assert.is_nil(id)
      assert.matches("build", err, 1, true)
      -- Podman answers 500 with an empty body: nothing to pass on
      assert.matches(PODMAN and "no message (HTTP 500" or "lowercase", err, 1, true)
    end)
  end)

  it("raises for a programmer error", function()
    assert.matches("context", raised(function() docker:build {} end), 1, true)
    assert.matches("unknown option 'contxt'", raised(function() docker:build { contxt = {} } end), 1, true)
    assert.matches("bad option 'nocache'", raised(function() docker:build { context = {}, nocache = 1 } end), 1, true)
    assert.matches("bad option 'context'", raised(function() docker:build { context = 42 } end), 1, true)
  end)
end)

describe("docker:import", function()
  local dir

  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rm_rf(dir) end)

  -- A root filesystem with the host's static busybox and its applets, as a tar
  -- written by lockup's own tar writer.
  local function rootfs_tar()
    local root = dir .. "/root"
    local out, ok = helper.sh("mkdir -p " .. q(root .. "/bin") .. " && cp /bin/busybox " .. q(root .. "/bin/busybox")
      .. " && cd " .. q(root .. "/bin") .. " && for a in $(./busybox --list); do [ -e $a ] || ln -s busybox $a; done"
      .. " && echo imported > " .. q(root .. "/marker"))
    assert(ok, out)
    local src = context.tar_source(assert(context.entries(root)))
    local f = assert(io.open(dir .. "/rootfs.tar", "wb"))
    while true do
      local chunk, err = src()
      assert(not err, err)
      if not chunk then break end
      f:write(chunk)
    end
    f:close()
    return dir .. "/rootfs.tar"
  end

  it("imports a root filesystem tar; a box starts from it", function()
    local tar = rootfs_tar()
    local tag = track(name("import"))
    local events = {}
    local id = assert(docker:import(tar, tag, { on_progress = function(ev) events[#events + 1] = ev end }))
    assert.matches("^sha256:%x+$", id)
    track(id)
    assert.is_true(docker:image_exists(tag))
    local r = run_in(tag, "cat /marker; id -u; echo $0")
    assert.equal(0, r.code, r.stderr)
    assert.equal("imported\n65534\n/bin/sh\n", r.stdout)
    -- progress: bytes of the tar file, increasing to its size
    local size = #helper.read(tar)
    assert.is_true(#events > 1, #events .. " events")
    for i, ev in ipairs(events) do
      assert.equal("import", ev.op)
      if i > 1 then assert.is_true(ev.done > events[i - 1].done) end
      assert.equal(size, ev.total)
    end
    assert.equal(size, events[#events].done)
  end)

  it("says a missing file is missing", function()
    local id, err = docker:import(dir .. "/none.tar", name("import"))
    assert.is_nil(id)
    assert.matches("import", err, 1, true)
    assert.matches("No such file", err, 1, true)
  end)

  it("refuses a bad tag before reading anything", function()
    local id, err = docker:import(dir .. "/none.tar", "bad tag")
    assert.is_nil(id)
    assert.matches("not an image name", err, 1, true)
  end)

  it("says what the Engine says of a file that is no tar", function()
    helper.write(dir .. "/junk.tar", ("not a tar file\n"):rep(100))
    local tag = track(name("junk"))
    local id, err = docker:import(dir .. "/junk.tar", tag)
    if id then track(id) end
    assert.is_nil(id)
    assert.matches("import", err, 1, true)
  end)

  it("raises for a path that is not a string", function()
    assert.matches("bad argument #1 to 'import'", raised(function() docker:import(42, "x:y") end), 1, true)
  end)
end)

describe("docker:pull", function()
  it("fails fast with a clear error when the registry cannot be reached (loopback)", function()
    local events = {}
    local t0 = now()
    local id, err = docker:pull("127.0.0.1:9/none:latest", { on_progress = function(ev) events[#events + 1] = ev end })
    local took = now() - t0
    assert.is_nil(id)
    assert.is_true(took < 5, "took " .. took .. " s")
    assert.matches("pulling 127.0.0.1:9/none:latest", err, 1, true)
    assert.matches("127.0.0.1:9", err, 1, true)
    assert.matches("refused", err, 1, true)
    local last = events[#events]
    assert.is_table(last)
    assert.equal("pull", last.op)
    assert.is_true(last.finished)
    assert.equal("failed", last.text) -- a failed pull must not end its progress with "done"
  end)

  it("refuses a bad name without asking the Engine", function()
    local id, err = docker:pull("bad name with spaces")
    assert.is_nil(id)
    assert.matches("'bad name with spaces' is not an image name", err, 1, true)
    for _, bad in ipairs { "", "a?b", "a#b", "a%2fb", "a\nb" } do
      id, err = docker:pull(bad)
      assert.is_nil(id, bad)
      assert.matches("not an image name", err, 1, true)
    end
  end)

  it("raises for a name that is not a string", function()
    assert.matches("bad argument #1 to 'pull'", raised(function() docker:pull(nil) end), 1, true)
  end)
end)

describe("docker:image_exists and docker:remove_image", function()
  it("tell an image that is there from one that is not", function()
    assert.is_true(docker:image_exists(helper.IMAGE))
    assert.is_false(docker:image_exists(name("absent")))
    local ok, err = docker:image_exists("bad name")
    assert.is_nil(ok)
    assert.matches("not an image name", err, 1, true)
  end)

  it("remove an image; then it does not exist, and removing it again says No such image", function()
    local tag = name("remove")
    local id = assert(build { context = {}, dockerfile = "FROM busybox:local\nRUN echo x > /x\n", tag = tag })
    assert.is_true(docker:image_exists(tag))
    assert.is_true(docker:remove_image(tag))
    assert.is_false(docker:image_exists(tag))
    assert.is_false(docker:image_exists(id)) -- the only tag: the image went with it
    local ok, err = docker:remove_image(tag)
    assert.is_nil(ok)
    assert.matches(NO_SUCH_IMAGE, err, 1, true)
    assert.matches(tag, err, 1, true)
  end)

  it("remove_image of a missing image id", function()
    local ok, err = docker:remove_image("sha256:" .. ("0"):rep(64))
    assert.is_nil(ok)
    assert.matches(NO_SUCH_IMAGE, err, 1, true)
  end)

  it("raise for a programmer error", function()
    assert.matches("bad argument #1 to 'image_exists'", raised(function() docker:image_exists(1) end), 1, true)
    assert.matches("unknown option 'forse'",
      raised(function() docker:remove_image("x:y", { forse = true }) end), 1, true)
  end)
end)

describe("lockup.content_tag", function()
  local dir

  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rm_rf(dir) end)

  local function tag(set, n) return assert(lockup.content_tag(set, n)) end

  it("is name:32 hex digits, 'lockup' by default", function()
    assert.matches("^lockup:%x+$", tag { a = "x" })
    assert.equal(32, #tag { a = "x" }:match(":(%x+)$"))
    assert.matches("^thumbnail:%x+$", tag({ a = "x" }, "thumbnail"))
    assert.matches("^reg.example/team/tool:%x+$", tag({ a = "x" }, "reg.example/team/tool"))
    assert.equal(tag { a = "x" }:match(":(.*)$"), tag({ a = "x" }, "other"):match(":(.*)$"))
  end)

  it("is the same for the same content, and differs for a content or mode change", function()
    local base = { ["Dockerfile"] = "FROM busybox:local\n", ["run.sh"] = { data = "echo\n", mode = oct "755" } }
    assert.equal(tag(base), tag { ["run.sh"] = { data = "echo\n", mode = oct "755" }, Dockerfile = "FROM busybox:local\n" })
    assert.not_equal(tag(base), tag { Dockerfile = "FROM busybox:local\n", ["run.sh"] = { data = "echo!\n", mode = oct "755" } })
    assert.not_equal(tag(base), tag { Dockerfile = "FROM busybox:local\n", ["run.sh"] = { data = "echo\n", mode = oct "700" } })
    assert.not_equal(tag(base), tag { Dockerfile = "FROM busybox:local\n", ["run2.sh"] = { data = "echo\n", mode = oct "755" } })
  end)

  it("for a directory: the same after touch, different after a change of content or mode", function()
    helper.sh("cd " .. q(dir) .. " && mkdir sub && printf 'FROM busybox:local\\n' > Dockerfile && printf data > sub/f")
    local before = tag(dir)
    helper.sh("touch -d '2001-01-01 00:00' " .. q(dir .. "/Dockerfile") .. " " .. q(dir .. "/sub/f") .. " " .. q(dir .. "/sub"))
    assert.equal(before, tag(dir))
    helper.sh("chmod 600 " .. q(dir .. "/sub/f"))
    local after_mode = tag(dir)
    assert.not_equal(before, after_mode)
    helper.write(dir .. "/sub/f", "Data")
    assert.not_equal(after_mode, tag(dir))
  end)

  it("for a directory: the same as the table holding the same names, modes and bytes", function()
    helper.sh("cd " .. q(dir) .. " && mkdir sub && printf top > top.txt && printf deep > sub/deep.txt"
      .. " && chmod 644 top.txt sub/deep.txt && chmod 755 sub")
    assert.equal(tag(dir), tag { ["top.txt"] = "top", ["sub/deep.txt"] = "deep" })
    assert.equal(tag(dir), tag { ["top.txt"] = { file = dir .. "/top.txt" }, ["sub"] = { dir = dir .. "/sub" } })
    assert.not_equal(tag(dir), tag { ["top.txt"] = "top", ["sub/deep.txt"] = { data = "deep", mode = oct "600" } })
  end)

  it("gives nil, err for a bad file set", function()
    for _, set in ipairs { 42, { ["../x"] = "y" }, dir .. "/missing", { a = { file = dir } } } do
      local t, err = lockup.content_tag(set)
      assert.is_nil(t)
      assert.is_string(err)
    end
  end)

  it("raises for a bad name", function()
    for _, bad in ipairs { "Upper", "with space", "", "-dash", 42 } do
      assert.matches("bad argument #2 to 'content_tag'", raised(function() lockup.content_tag({}, bad) end), 1, true)
    end
  end)

  it("skips the build when the tag exists, and builds again after a change", function()
    local repo = "lockup-spec-ctag-" .. core.random_hex(4)
    local builds = 0
    local function ensure(set)
      local t = tag(set, repo)
      if not docker:image_exists(t) then
        builds = builds + 1
        assert(build { context = set, tag = t })
      end
      return t
    end
    local set = { Dockerfile = "FROM busybox:local\nCOPY v /v\n", v = "one" }
    local t1 = ensure(set)
    assert.equal(t1, ensure(set))
    assert.equal(t1, ensure { v = "one", Dockerfile = "FROM busybox:local\nCOPY v /v\n" })
    assert.equal(1, builds)
    set.v = "two"
    local t2 = ensure(set)
    assert.not_equal(t1, t2)
    assert.equal(2, builds)
    assert.equal("one", run_in(t1, "cat /v").stdout)
    assert.equal("two", run_in(t2, "cat /v").stdout)
  end)
end)
