-- box:commit([tag]) against the real Engine (lua/lockup/commit.lua): an image
-- of a box's files, its tmpfs mounts included, under a content tag; boxes,
-- pools and jails started from it get the files back (lockup.reset). Every
-- image the spec makes is removed in teardown, the ones under them too, and
-- no box of the spec is left.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"

local raised = helper.raised
local BASIC = "spec/fixtures/inmates/basic"
local DEBIAN = "debian-lua:local" -- a writable root's box as people use one: root, apt's tools

local docker
local made, made_set = {}, {} -- image tags the spec made, in the order made: removed newest first
local made_ids = {} -- the image ids under them, intermediate ones too: all gone after teardown
local box_ids = {} -- every box the spec started itself: all gone after teardown

-- What the specs put in a box (as its user, nobody, in its tmpfs mounts /work
-- and /tmp): nested directories, a file at each level, a symlink to a file and
-- a dangling one, an empty file, a 0600 file, a 0700 directory, an executable,
-- names with spaces and leading dots, and bytes that are not text.
local PREPARE = table.concat({
  "mkdir -p /work/a/b/c '/tmp/d with space'",
  "printf 'top\\n' > /work/top.txt",
  "printf 'deep\\n' > /work/a/b/c/deep.txt",
  "printf 'mid\\n' > /work/a/mid.txt",
  "ln -s a/b/c/deep.txt /work/link",
  "ln -s /nowhere /tmp/dangling",
  ": > /tmp/empty",
  "printf 'secret\\n' > /tmp/secret && chmod 600 /tmp/secret",
  "mkdir -m 700 /tmp/private && printf 'p\\n' > /tmp/private/p",
  "printf '#!/bin/sh\\necho ran\\n' > /work/run.sh && chmod 750 /work/run.sh",
  "printf 'spaced\\n' > '/tmp/d with space/file with space.txt'",
  "printf 'hidden\\n' > /tmp/.hidden",
  "printf 'dots\\n' > /work/..dots",
  "printf '\\000\\001\\377bytes' > /tmp/binary",
}, " && ")

-- Every path under /work and /tmp, sorted: its type, permission bits, and a
-- file's size and md5, a symlink's target (in a subshell: the session's
-- directory stays).
local LISTING = [[(cd / && find work tmp | sort | while IFS= read -r p; do
  if [ -L "$p" ]; then echo "link $p -> $(readlink "$p")"
  elif [ -d "$p" ]; then echo "dir $p $(stat -c %a "$p")"
  else echo "file $p $(stat -c '%a %s' "$p") $(md5sum < "$p" | cut -d ' ' -f 1)"; fi
done)]]

local function image_info(ref)
  local status, info, code = docker:request("GET", "/images/" .. ref .. "/json")
  if status then return info end
  assert(code == 404, info)
  return nil
end

local function tags_of(info)
  return type(info.RepoTags) == "table" and info.RepoTags or {}
end

-- Notes an image the spec made, to remove in teardown; and the image under it
-- when that has no tag (the root of a box with a writable root, committed).
local function track(tag)
  if not made_set[tag] then
    made_set[tag] = true
    made[#made + 1] = tag
  end
  local info = assert(image_info(tag), tag .. " is not there")
  made_ids[info.Id] = true
  if type(info.Parent) == "string" and info.Parent ~= "" then
    local parent = image_info(info.Parent)
    if parent and #tags_of(parent) == 0 then made_ids[parent.Id] = true end
  end
  return info
end

-- box:commit(tag) that must work: the tag, tracked.
local function commit(box, tag)
  local got, err = box:commit(tag)
  assert(got, err)
  track(got)
  return got
end

-- A started box (the spec's image unless told), stopped however the test ends.
local function started(undo, opts)
  opts = opts or {}
  opts.image = opts.image or helper.IMAGE
  opts.runtime = opts.runtime or helper.RUNTIME
  local box, err = docker:start(opts)
  assert(box, err)
  box_ids[#box_ids + 1] = box.id
  undo(function() box:stop() end)
  return box
end

local function run(box, cmd)
  local r, err = box:run(cmd)
  assert(r, err)
  assert(r.code == 0, "`" .. cmd .. "` ended with " .. tostring(r.code) .. ": " .. r.stderr)
  return r.stdout
end

local function listing(box)
  return run(box, LISTING)
end

-- One box prepared with PREPARE, committed: the tag and the listing it had.
-- Made once, by the first test that asks.
local prepared
local function prepared_image()
  if prepared then return prepared.tag, prepared.listing end
  local box = assert(docker:start { image = helper.IMAGE, runtime = helper.RUNTIME })
  box_ids[#box_ids + 1] = box.id
  local ok, err = pcall(function()
    run(box, PREPARE)
    prepared = { listing = listing(box) }
    prepared.tag = commit(box)
  end)
  box:stop()
  if not ok then
    prepared = nil
    error(err, 0)
  end
  return prepared.tag, prepared.listing
end

-- Images carrying label lockup.content=<hex>, with or without a tag; not
-- the layers under them (a build's steps, which carry its labels too).
local function images_with_content(hex)
  local status, list = docker:request("GET", "/images/json", {
    query = { filters = { label = { "lockup.content=" .. hex } } },
  })
  assert(status, list)
  return list
end

-- Removes the images of that content that have no tag (two commits at once
-- must leave none: see the spec below).
local function remove_untagged(hex)
  for _, im in ipairs(images_with_content(hex)) do
    local tags = tags_of(im)
    if #tags == 0 or (#tags == 1 and tags[1] == "<none>:<none>") then
      local ok, err = docker:remove_image(im.Id, { force = true })
      assert(ok, err)
    end
  end
end

local function content_of(info)
  return info.Config.Labels["lockup.content"]
end

setup(function()
  docker = helper.docker()
end)

teardown(function()
  local errors = {}
  for i = #made, 1, -1 do -- newest first: an image before the one it was made on
    local ok, err = docker:remove_image(made[i], { force = true })
    if not ok and not tostring(err):find("No such image", 1, true) and not tostring(err):find("image not known", 1, true)
    then errors[#errors + 1] = err end
  end
  for id in pairs(made_ids) do
    if image_info(id) then errors[#errors + 1] = "image " .. id .. " left behind" end
  end
  -- none of the spec's boxes is left, stopped or not
  local mine = {}
  for _, id in ipairs(box_ids) do mine[id] = true end
  local left
  local gone = helper.eventually(function()
    local status, list = docker:request("GET", "/containers/json", { query = { all = 1 } })
    assert(status, list)
    left = {}
    for _, c in ipairs(list) do
      if mine[c.Id] then left[#left + 1] = c.Id end
    end
    return #left == 0
  end, 20)
  if not gone then errors[#errors + 1] = "boxes left behind: " .. table.concat(left, " ") end
  assert(#errors == 0, table.concat(errors, "\n"))
end)

describe("box:commit", function()
  local before

  before_each(function()
    before = helper.box_set()
  end)

  after_each(function()
    -- the boxes of pools and jails are gone too (a set of this process's
    -- boxes, not a count: a box of an earlier test may finish going meanwhile)
    assert.is_truthy(helper.eventually(function() return helper.no_new_boxes(before) end, 20))
  end)

  it("tags with the content: the same files give the same tag and image, from another box later too; "
    .. "a change gives another", function()
    local undo = helper.undo(finally)
    local one = started(undo)
    run(one, PREPARE)
    local tag = commit(one)
    assert.matches("^lockup%-commit:%x+$", tag)
    assert.equal(32, #tag - #"lockup-commit:")
    local info = track(tag)
    assert.equal(tag:sub(#"lockup-commit:" + 1), content_of(info):sub(1, 32))

    -- again, nothing changed: the same image, not a new one
    assert.equal(tag, commit(one))
    local again = image_info(tag)
    assert.equal(info.Id, again.Id)
    assert.equal(info.Created, again.Created)
    assert.equal(1, #images_with_content(content_of(info)))

    -- times do not count
    run(one, "touch /tmp/empty /work/top.txt /work/a")
    assert.equal(tag, commit(one))

    -- another box, prepared the same way a moment later
    lockup.sleep(1.1)
    local two = started(undo)
    run(two, PREPARE)
    assert.equal(tag, commit(two))
    assert.equal(info.Id, image_info(tag).Id)

    -- a byte changed, then put back; a mode changed; a file more; a symlink's target
    run(two, "printf 'Top\\n' > /work/top.txt")
    local changed = commit(two)
    assert.are_not.equal(tag, changed)
    assert.are_not.equal(info.Id, image_info(changed).Id)
    run(two, "printf 'top\\n' > /work/top.txt")
    assert.equal(tag, commit(two))
    local seen = { [tag] = true, [changed] = true }
    for _, cmd in ipairs {
      "chmod 644 /tmp/secret",
      "touch /tmp/more",
      "ln -sf a/mid.txt /work/link",
    } do
      run(two, cmd)
      local t = commit(two)
      assert.is_nil(seen[t], "`" .. cmd .. "` gave a tag seen before")
      seen[t] = true
    end
  end)

  it("a box started from the tag has the files back, with their contents, modes and symlinks, on each lane",
    function()
    local undo = helper.undo(finally)
    local tag, expected = prepared_image()
    local lanes = { "attach" }
    if docker:fifo_usable() then table.insert(lanes, 1, "fifo") end
    for _, lane in ipairs(lanes) do
      local box = started(undo, { image = tag, lane = lane })
      assert.equal(lane, box.lane_name)
      assert.equal(expected, listing(box))
      assert.equal("/work\n", run(box, "pwd"))
      assert.equal("deep\n", run(box, "cat /work/link"))
      assert.equal("hidden\n", run(box, "cat /tmp/.hidden"))
      assert.equal("ran\n", run(box, "sh /work/run.sh"))
      -- the box's user owns what came back: it can change and remove it
      run(box, "printf 'more\\n' >> /work/top.txt && rm -r /tmp/private '/tmp/d with space' && chmod 644 /tmp/secret")
      assert.equal("top\nmore\n", run(box, "cat /work/top.txt"))
    end
  end)

  it("box:reset() on a box started from the tag puts the committed files back", function()
    local undo = helper.undo(finally)
    local tag, expected = prepared_image()
    local box = started(undo, { image = tag })
    for round = 1, 2 do
      run(box, "rm -rf /work/a /tmp/secret /tmp/.hidden && printf 'new\\n' > /tmp/new && printf 'changed\\n' > /work/top.txt "
        .. "&& chmod 777 '/tmp/d with space' && rm /work/link && ln -s /elsewhere /work/link")
      assert.are_not.equal(expected, listing(box))
      local ok, err = box:reset()
      assert(ok, err)
      assert.equal(expected, listing(box), "after reset " .. round)
    end
    assert.equal("top\n", run(box, "cat /work/top.txt"))
  end)

  it("to an explicit tag: made, the same again for the same files, refused for other ones, the image left as it was",
    function()
    local undo = helper.undo(finally)
    local _, expected = prepared_image()
    local name = "lockup-spec-commit-" .. core.random_hex(4)
    local tag = name .. ":v1"
    local box = started(undo)
    run(box, PREPARE)
    assert.equal(tag, commit(box, tag))
    local info = image_info(tag)
    assert.equal(tag, commit(box, tag)) -- the same files: that image
    assert.equal(info.Id, image_info(tag).Id)
    -- a repository alone is its :latest
    assert.equal(name .. ":latest", commit(box, name))

    local other = started(undo)
    run(other, "printf 'other\\n' > /tmp/other")
    local r, err = other:commit(tag)
    assert.is_nil(r)
    assert.matches("exists with other content", err, 1, true)
    assert.matches("another box's files", err, 1, true)
    local now_info = image_info(tag)
    assert.equal(info.Id, now_info.Id)
    assert.equal(content_of(info), content_of(now_info))

    local fresh = started(undo, { image = tag })
    assert.equal(expected, listing(fresh))
  end)

  it("to the tag of an image box:commit did not make: refused, and that image left as it was", function()
    local undo = helper.undo(finally)
    local repo, t = "lockup-spec-commit-" .. core.random_hex(4) .. "-busybox", "y"
    local status, err = docker:request("POST", "/images/" .. helper.IMAGE .. "/tag", { query = { repo = repo, tag = t } })
    assert(status, err)
    undo(function() assert(docker:remove_image(repo .. ":" .. t)) end) -- the name only: no force, the image stays
    local base = image_info(helper.IMAGE)
    local box = started(undo)
    run(box, PREPARE)
    local r
    r, err = box:commit(repo .. ":" .. t)
    assert.is_nil(r)
    assert.matches("exists with other content", err, 1, true)
    assert.matches("not made by box:commit", err, 1, true)
    assert.equal(base.Id, image_info(repo .. ":" .. t).Id)
  end)

  it("refuses a tag that cannot be an image name, and raises for one that is not a string", function()
    local undo = helper.undo(finally)
    local box = started(undo)
    run(box, "printf 'x\\n' > /tmp/x")
    for _, bad in ipairs { "UPPER:case", "Upper", "a b", "a b:c", "", "x:", ":v1", "x:-v1", "x:v1:v2", "-x:v1",
      "x:" .. ("v"):rep(200) .. "\n" } do
      local r, err = box:commit(bad)
      assert.is_nil(r, "'" .. bad .. "' was taken")
      assert.matches("is not an image tag lockup can make", err, 1, true)
    end
    for _, bad in ipairs { 42, {}, true, false, print } do
      assert.matches("bad argument #1 to 'commit'", raised(function() box:commit(bad) end), 1, true)
    end
    -- the box goes on, and commits
    assert.equal("x\n", run(box, "cat /tmp/x"))
    commit(box)
  end)

  it("of a stopped box: nil, err; of a paused one: nil, err saying so, and once resumed it commits", function()
    local undo = helper.undo(finally)
    local tag = prepared_image()
    local stopped = started(undo)
    assert.is_true(stopped:stop())
    local r, err = stopped:commit()
    assert.is_nil(r)
    assert.matches("stopped", err, 1, true)

    local box = started(undo)
    run(box, PREPARE)
    assert.is_true(box:pause())
    undo(function() if box.paused then box:resume() end end)
    r, err = box:commit()
    assert.is_nil(r)
    assert.matches("paused", err, 1, true)
    assert.is_true(box:resume())
    assert.equal(tag, commit(box))
  end)

  it("waits for a call in flight on the box, and takes what it wrote", function()
    local undo = helper.undo(finally)
    local box = started(undo)
    local out, tag = lockup.run(function()
      return run(box, "sleep 0.5; printf 'late\\n' > /tmp/late; echo done")
    end, function()
      lockup.sleep(0.1)
      return commit(box)
    end)
    assert.equal("done\n", out)
    local fresh = started(undo, { image = tag })
    assert.equal("late\n", run(fresh, "cat /tmp/late"))
  end)

  it("a file the box's user cannot read: nil, err, and no image", function()
    local undo = helper.undo(finally)
    local box = started(undo)
    run(box, "printf 'x\\n' > /tmp/unreadable && chmod 000 /tmp/unreadable")
    local r, err = box:commit()
    assert.is_nil(r)
    assert.matches("reading the box's writable mounts", err, 1, true)
    assert.matches("unreadable", err, 1, true)
  end)

  it("the image has its base image's config with the content label, nothing of the box's (labels, env, user, "
    .. "lockup's lifeline)", function()
    local undo = helper.undo(finally)
    local tag = prepared_image()
    local box = started(undo, { labels = { ["spec.commit"] = "a label" }, env = { SPEC_COMMIT = "1" } })
    run(box, PREPARE)
    assert.equal(tag, commit(box)) -- a box's labels and environment are not its files
    local config = image_info(tag).Config
    local base = image_info(helper.IMAGE).Config
    for k in pairs(config.Labels) do
      assert.is_true(k:sub(1, 7) ~= "lockup." or k == "lockup.content" or k == "lockup.lineage",
        "label " .. k .. " on the image")
    end
    assert.is_nil(config.Labels["spec.commit"])
    assert.matches("^%x+$", config.Labels["lockup.content"])
    assert.equal(64, #config.Labels["lockup.content"])
    for _, word in ipairs(type(config.Entrypoint) == "table" and config.Entrypoint or {}) do
      assert.is_nil(word:find("lockup", 1, true), "lockup's lifeline in the image's Entrypoint: " .. word)
      assert.is_nil(word:find("/.lockup", 1, true))
    end
    for _, var in ipairs(type(config.Env) == "table" and config.Env or {}) do
      assert.is_nil(var:find("SPEC_COMMIT", 1, true), "the box's environment in the image: " .. var)
    end
    assert.equal(base.User or "", config.User or "")
    assert.equal(base.WorkingDir or "", config.WorkingDir or "")
  end)

  -- The image is built on the box's image: its config is that image's, so an
  -- image with neither Entrypoint nor Cmd keeps none.
  it("the image has its base image's Entrypoint and Cmd (busybox:local: none)", function()
    local tag = prepared_image()
    local config, base = image_info(tag).Config, image_info(helper.IMAGE).Config
    assert.same(type(base.Entrypoint) == "table" and base.Entrypoint or {},
      type(config.Entrypoint) == "table" and config.Entrypoint or {})
    assert.same(type(base.Cmd) == "table" and base.Cmd or {}, type(config.Cmd) == "table" and config.Cmd or {})
  end)

  it("a box with a writable root (" .. DEBIAN .. ", as root): what it changed there is in the image, and the "
    .. "tmpfs files", function()
    local undo = helper.undo(finally)
    local PREP = "printf 'marker\\n' > /etc/marker && rm /etc/issue.net && mkdir -p /work/w && printf 'w\\n' > /work/w/f "
      .. "&& printf 't\\n' > /tmp/t && chmod 644 /tmp/t"
    local box = started(undo, { image = DEBIAN, user = "root", read_only = false })
    run(box, PREP)
    local tag = commit(box)
    assert.matches("^lockup%-commit:%x+$", tag)
    local info = image_info(tag)
    assert.equal(tag, commit(box))
    assert.equal(info.Id, image_info(tag).Id)
    -- another box prepared the same way
    local two = started(undo, { image = DEBIAN, user = "root", read_only = false })
    run(two, PREP)
    assert.equal(tag, commit(two))
    -- a change in the root gives another tag
    run(two, "printf 'other\\n' > /etc/marker")
    assert.are_not.equal(tag, commit(two))

    -- a box of lockup's defaults (nobody, read-only root) from it
    for _, lane in ipairs { "attach", docker:fifo_usable() and "fifo" or nil } do
      local fresh = started(undo, { image = tag, lane = lane })
      assert.equal("marker\n", run(fresh, "cat /etc/marker"))
      assert.equal("gone\n", run(fresh, "[ -e /etc/issue.net ] || echo gone"))
      assert.equal("w\nt\n", run(fresh, "cat /work/w/f /tmp/t"))
      assert.equal("65534\n", run(fresh, "id -u"))
    end
  end)

  -- busybox's tar has no -T: what changed is named on tar's command line.
  it("a box with a writable root of busybox:local: what it changed there is in the image", function()
    local undo = helper.undo(finally)
    local box = started(undo, { user = "root", read_only = false })
    run(box, "printf 'marker\\n' > /etc/marker && printf 't\\n' > /tmp/t")
    local tag = commit(box)
    local fresh = started(undo, { image = tag })
    assert.equal("marker\nt\n", run(fresh, "cat /etc/marker /tmp/t"))
  end)

  -- Nothing of the box's container reaches the image's config: no label
  -- (lockup.owner would have lockup.prune() remove containers made from the
  -- image outside lockup), user or directory.
  it("a box with a writable root: the image's config is its base image's, nothing of the box's", function()
    local undo = helper.undo(finally)
    local box = started(undo, { image = DEBIAN, user = "root", read_only = false, labels = { ["spec.commit"] = "x" } })
    run(box, "printf 'marker\\n' > /etc/marker")
    local config = image_info(commit(box)).Config
    local base = image_info(DEBIAN).Config
    for k in pairs(config.Labels) do
      assert.is_true(k:sub(1, 7) ~= "lockup." or k == "lockup.content" or k == "lockup.lineage",
        "label " .. k .. " on the image")
    end
    assert.is_nil(config.Labels["spec.commit"])
    assert.equal(base.User or "", config.User or "")
    assert.equal(base.WorkingDir or "", config.WorkingDir or "")
  end)

  it("lockup.pool{ image = tag, reset = true }: each box handed out has the committed files, after a reset too",
    function()
    local tag, expected = prepared_image()
    local pool = assert(lockup.pool { docker = docker, image = tag, size = 1, reset = true,
      start = { runtime = helper.RUNTIME } })
    finally(function() pool:close() end)
    local box = assert(pool:acquire(30))
    box_ids[#box_ids + 1] = box.id
    assert.equal(expected, listing(box))
    run(box, "rm -rf /work/a /tmp/secret && printf 'changed\\n' > /work/top.txt && printf 'new\\n' > /tmp/new")
    local first = box.id
    pool:release(box)
    assert.is_truthy(helper.eventually(function() return pool:stats().resets >= 1 end, 30), pool:stats().last_error)
    -- the refill may have a box of its own ready before the reset one: every
    -- box handed out has the files, the reset one among them
    local held, again = {}, false
    for _ = 1, 3 do
      box = assert(pool:acquire(30))
      box_ids[#box_ids + 1] = box.id
      held[#held + 1] = box
      assert.equal(expected, listing(box))
      if box.id == first then
        again = true
        break
      end
    end
    assert.is_true(again, "the reset box was not handed out again")
    for _, b in ipairs(held) do pool:release(b) end
  end)

  it("lockup.inmate{ image = tag }: a jail from the committed image of an inmate's box", function()
    local undo = helper.undo(finally)
    local status, list = docker:request("GET", "/images/json", { query = { filters = { reference = { "lockup-inmate" } } } })
    assert(status, list)
    local there = {}
    for _, im in ipairs(list) do
      for _, t in ipairs(tags_of(im)) do there[t] = true end
    end
    local jail = lockup.inmate { dir = BASIC, docker = docker, on_progress = function() end }
    undo(function() jail:close() end)
    if not there[jail.image] then track(jail.image) end -- built here: removed in teardown
    -- the jail's words() reads data/words.txt next to its inmate.lua: made a
    -- symlink (in the writable root) to a file in /tmp (a tmpfs mount)
    local box = started(undo, { image = jail.image, user = "root", read_only = false })
    run(box, "rm /inmate/data/words.txt && ln -s /tmp/words.txt /inmate/data/words.txt "
      .. "&& printf 'committed words\\n' > /tmp/words.txt && chmod 644 /tmp/words.txt")
    local tag = commit(box)
    box:stop()
    assert.same({ "alpha", "beta", "gamma" }, jail:words())
    local committed = lockup.inmate { image = tag, docker = docker }
    undo(function() committed:close() end)
    assert.same({ "committed", "words" }, committed:words())
    assert.equal("oof", committed:reverse("foo"))
    -- pooled, and reset between calls
    local pooled = lockup.inmate { image = tag, docker = docker, pool = 1, reset = true }
    undo(function() pooled:close() end)
    assert.same({ "committed", "words" }, pooled:words())
    assert.same({ "committed", "words" }, pooled:words())
  end)

  it("two boxes with the same files, committed at once: the same tag", function()
    local undo = helper.undo(finally)
    local a, b = started(undo), started(undo)
    local cmd = "printf 'at once %s\\n' " .. core.random_hex(8) .. " > /tmp/f"
    run(a, cmd)
    run(b, cmd)
    local ta, tb = lockup.run(function() return commit(a) end, function() return commit(b) end)
    assert.equal(ta, tb)
    remove_untagged(content_of(image_info(ta))) -- none, unless the spec below fails
  end)

  -- Two commits of the same files at once: one makes the image, the other
  -- finds it (within a process they take turns; across processes the image
  -- is tagged only if the tag is still free, else removed).
  it("two boxes with the same files, committed at once, leave no image without a tag", function()
    local undo = helper.undo(finally)
    local a, b = started(undo), started(undo)
    local cmd = "printf 'at once %s\\n' " .. core.random_hex(8) .. " > /tmp/f"
    run(a, cmd)
    run(b, cmd)
    local ta = lockup.run(function() return commit(a) end, function() return commit(b) end)
    local hex = content_of(image_info(ta))
    undo(function() remove_untagged(hex) end)
    assert.equal(1, #images_with_content(hex))
  end)

  -- A box started from a committed image has that image's files under
  -- /.lockup-commit; a commit of it removes them before it adds its own.
  it("a box started from a committed image and committed again: what it removed stays removed", function()
    local undo = helper.undo(finally)
    local tag = prepared_image()
    local box = started(undo, { image = tag })
    run(box, "rm -r /work/a /tmp/secret && printf 'new\\n' > /tmp/new")
    local expected = listing(box)
    local again = commit(box)
    local fresh = started(undo, { image = again })
    assert.equal(expected, listing(fresh))
    assert.equal(again, commit(fresh))
  end)
end)
