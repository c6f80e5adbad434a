-- box:commit([tag]) -> tag | nil, err: an image of the box's files as they
-- are now, to start many boxes from (lockup.pool{ image = tag }).
--
-- `docker commit` does not do it: a hardened box writes only to tmpfs
-- mounts, which a commit does not see, and the Engine fills what the given
-- config leaves empty from the container's own (lockup's PID 1, the box's
-- user, env and labels, which no later step can remove). So lockup reads
-- the files out and builds the image on the box's image instead:
--  1. the writable mounts, read with `tar -c` as the box's user; with a
--     writable root, also what changed there (the Engine's /changes: an
--     archive of the changed and added files, and the paths deleted);
--  2. a build: FROM the box's image; the paths deleted removed (and an
--     earlier commit's files, when the box's image is one); the root's
--     changes added at /; the mounts' files added under
--     lockup.reset.COMMITTED; labels. The image's config is its base's, as
--     any build's; a box started from it gets the files back into its
--     mounts before its first step (lockup.lifecycle, lockup.reset), and
--     lockup's hardened defaults as any box does (an image carries no
--     HostConfig).
-- The tag is content-addressed (lockup.tarsum): the image the box's files
-- started from (its lineage: the first image that is not a commit, and the
-- root changes since) and what its mounts hold. The same preparation gives
-- the same tag, and an image already there is reused.
local exec = require "lockup.exec"
local tarsum = require "lockup.tarsum"
local reset = require "lockup.reset"
local mutex = require "lockup.mutex"
local fifo = require "lockup.lane.fifo"
local cjson = require "cjson"

local type, tostring, ipairs, error = type, tostring, ipairs, error
local string_format, table_concat, table_sort = string.format, table.concat, table.sort

local _M = {}

local REPO = "lockup-commit" -- the repository of tags lockup chooses
local CONTENT_LABEL, LINEAGE_LABEL = "lockup.content", "lockup.lineage"
local TIMEOUT = 120 -- seconds for reading the box's files out, and for each Engine call
local MAX_BYTES = 1024 * 1024 * 1024 -- the largest archive of a box's files held in memory

-- Commits in this process, one at a time: two of the same content at once
-- would each build an image and the second would take the tag.
local lock = mutex.new()

local function run_out(box, argv, what)
  local r, err = exec.run(box, argv, { timeout = TIMEOUT, max_output = MAX_BYTES })
  if not r then return nil, what .. ": " .. err end
  if r.truncated then return nil, string_format("%s: over %d bytes", what, MAX_BYTES) end
  if r.code ~= 0 then
    return nil, string_format("%s: tar ended with code %s: %s", what, tostring(r.code), (r.stderr:gsub("%s+$", "")))
  end
  return r.stdout
end

-- The box's writable mounts as a tar, names relative to / ("tmp/..."): the
-- archive, or nil, err. "" for a box without any.
local function mounts_archive(box)
  if #box.tmpfs == 0 then return "" end
  local argv = { "tar", "-c", "-f", "-", "-C", "/" }
  for _, m in ipairs(box.tmpfs) do argv[#argv + 1] = m:sub(2) end
  return run_out(box, argv, "reading the box's writable mounts")
end

-- An archive of what changed in a writable root: each argument is
-- "kind:path" (the Engine's kinds: 0 changed, 1 added); an added directory
-- goes in whole, a changed one is only its listed entries. No `tar -T`
-- (busybox's tar has none): the names are tar's arguments.
local CHANGED = 'n=$#; for a; do k=${a%%:*}; p=${a#*:}; if [ -d "$p" ] && [ ! -L "$p" ]; then '
  .. '[ "$k" = 1 ] || continue; fi; { [ -e "$p" ] || [ -L "$p" ]; } || continue; set -- "$@" "${p#/}"; done; '
  .. 'shift "$n"; [ $# -gt 0 ] || exit 0; exec tar -c -f - -C / -- "$@"'

-- Is `path` at or under one of `tops`?
local function under(path, tops)
  for _, top in ipairs(tops) do
    if path == top or path:sub(1, #top + 1) == top .. "/" then return true end
  end
  return false
end

-- For a box with a writable root: the archive of what changed there, the
-- paths deleted, and a hash of both; or nil, err. Mount points, and what
-- lockup itself put in the root, are not the box's files.
local function root_changes(box, d)
  local status, list = d:request("GET", "/containers/" .. box.id .. "/changes", { timeout = TIMEOUT })
  if not status then return nil, "asking the Engine what changed in the box: " .. list end
  local skip = { fifo.MOUNT, reset.COMMITTED }
  for _, m in ipairs(box.mount_points) do skip[#skip + 1] = m end
  local changes = {}
  for _, c in ipairs(type(list) == "table" and list or {}) do
    if type(c.Path) == "string" and not under(c.Path, skip) then changes[#changes + 1] = c end
  end
  table_sort(changes, function(a, b) return a.Path < b.Path end)
  local args, deleted, added, lines = {}, {}, {}, {}
  for _, c in ipairs(changes) do
    if not under(c.Path, added) then -- what is in an added directory goes with it
      lines[#lines + 1] = tostring(c.Kind) .. " " .. c.Path
      if c.Kind == 2 then
        deleted[#deleted + 1] = c.Path
      else
        args[#args + 1] = tostring(c.Kind) .. ":" .. c.Path
        if c.Kind == 1 then added[#added + 1] = c.Path end
      end
    end
  end
  local archive = ""
  if #args > 0 then
    local argv = { box.shell, "-c", CHANGED, "lockup-changed" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local err
    archive, err = run_out(box, argv, "reading the files that changed in the box's root")
    if not archive then return nil, err end
  end
  local hex, err = tarsum.hash(archive, table_concat(lines, "\n"))
  if not hex then return nil, "the box's changed files: " .. err end
  return archive, deleted, hex
end

-- Is `tag` there, and with which content? false when absent, the label's
-- value ("" when none), or nil, err.
local function existing(d, tag)
  local status, info, code = d:request("GET", "/images/" .. tag .. "/json", { timeout = TIMEOUT })
  if not status then
    if code == 404 then return false end
    return nil, "looking for image " .. tag .. ": " .. info
  end
  local labels = type(info.Config) == "table" and type(info.Config.Labels) == "table" and info.Config.Labels or {}
  return tostring(labels[CONTENT_LABEL] or "")
end

-- The tag to make, checked: `tag` as given (repo:tag, or repo alone for
-- :latest), or REPO:<hash>; nil, err for one that cannot be an image name.
local function tag_for(tag, hex)
  if tag == nil then return REPO .. ":" .. hex:sub(1, 32) end
  if not tag:match("^[a-z0-9][a-z0-9._/-]*$") and not tag:match("^[a-z0-9][a-z0-9._/-]*:[%w_][%w_.%-]*$") then
    return nil, string_format("'%s' is not an image tag lockup can make (repo or repo:tag, the repository in "
      .. "lower case: such as \"prepared:v1\")", tag)
  end
  if not tag:find(":", 1, true) then tag = tag .. ":latest" end
  return tag
end

-- What `tag` holding `hex` means for a commit: tag (it is there already),
-- false (it is free), or nil, err (another content has it).
local function claimed(d, tag, hex)
  local there, err = existing(d, tag)
  if there == nil then return nil, err end
  if there == hex then return tag end
  if there then
    return nil, string_format("image %s exists with other content (%s): choose another tag, or remove that image "
      .. "first (docker:remove_image)", tag, there == "" and "not made by box:commit" or "another box's files")
  end
  return false
end

-- The build's Dockerfile: see the top of this file.
local function dockerfile(from, was_commit, deleted, root, mounts)
  local lines = { "FROM " .. from }
  local remove = was_commit and { reset.COMMITTED } or {}
  for _, p in ipairs(deleted) do remove[#remove + 1] = p end
  if #remove > 0 then
    local argv = { "rm", "-rf", "--" }
    for _, p in ipairs(remove) do argv[#argv + 1] = p end
    lines[#lines + 1] = "RUN " .. cjson.encode(argv) -- exec form: no shell, names as they are
  end
  if root ~= "" then lines[#lines + 1] = "ADD root.tar /" end
  if mounts ~= "" then lines[#lines + 1] = "ADD mounts.tar " .. reset.COMMITTED .. "/" end
  return table_concat(lines, "\n") .. "\n"
end

-- The work, the box's lock and the commit lock held: the tag, or nil, err.
local function commit(box, tag)
  local d = box.docker
  local status, info = d:request("GET", "/containers/" .. box.id .. "/json", { timeout = TIMEOUT })
  if not status then return nil, "reading the box's container: " .. info end
  local image_id = info.Image
  status, info = d:request("GET", "/images/" .. image_id .. "/json", { timeout = TIMEOUT })
  if not status then return nil, "reading the box's image: " .. info end
  local labels = type(info.Config) == "table" and type(info.Config.Labels) == "table" and info.Config.Labels or {}
  local lineage = labels[LINEAGE_LABEL] or image_id
  local mounts, err = mounts_archive(box)
  if not mounts then return nil, err end
  local root, deleted = "", {}
  if not box.read_only then
    local changes
    root, deleted, changes = root_changes(box, d)
    if not root then return nil, deleted end
    if changes ~= tarsum.hash("", "") then lineage = tarsum.hash("", lineage .. "\n" .. changes) end
  end
  local hex
  hex, err = tarsum.hash(mounts, "lockup-commit 2\n" .. lineage .. "\n")
  if not hex then return nil, "the box's writable mounts: " .. err end
  tag, err = tag_for(tag, hex)
  if not tag then return nil, err end
  local done
  done, err = claimed(d, tag, hex)
  if done ~= false then return done, err end
  local id
  id, err = d:build {
    context = { ["root.tar"] = root, ["mounts.tar"] = mounts },
    dockerfile = dockerfile(image_id, labels[CONTENT_LABEL] ~= nil, deleted, root, mounts),
    labels = { [CONTENT_LABEL] = hex, [LINEAGE_LABEL] = lineage }, timeout = TIMEOUT,
  }
  if not id then return nil, "making the image: " .. err end
  -- Another process may have made the tag meanwhile: it keeps it.
  done, err = claimed(d, tag, hex)
  if done == false then
    local repo, t = tag:match("^(.+):([^:]+)$")
    done, err = d:request("POST", "/images/" .. id .. "/tag", { query = { repo = repo, tag = t },
      timeout = TIMEOUT })
    if done then return tag end
    err = "tagging the image " .. tag .. ": " .. err
  end
  d:request("DELETE", "/images/" .. id, { timeout = TIMEOUT })
  return done and tag or nil, err
end

function _M.run(box, tag)
  local ok, err = lock:lock()
  if not ok then return nil, err end
  local pok, r
  pok, r, err = pcall(commit, box, tag)
  lock:unlock()
  if not pok then error(r, 0) end
  return r, err
end

-- Checks commit's argument; raises at the caller's level.
function _M.check_tag(tag)
  if tag ~= nil and type(tag) ~= "string" then
    error("bad argument #1 to 'commit' (an image tag such as \"prepared:v1\", or nothing, expected; got "
      .. type(tag) .. ")", 3)
  end
end

return _M
