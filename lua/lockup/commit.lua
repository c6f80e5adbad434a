-- box:commit([tag]) -> tag | nil, err: an image of the box's files as they
-- are now, to start many boxes from (lockup.pool{ image = tag }).
--
-- `docker commit` alone does not do it: a hardened box writes only to tmpfs
-- mounts, which a commit does not see, and it would keep the box's config
-- (lockup's PID 1, its user, its labels) in the image. So:
--  1. the writable mounts are read out of the box with `tar -c`, as its user;
--  2. a container made (never started) from the box's image, or, for a box
--     with a writable root, from a `docker commit` of the box, gets that
--     archive under lockup.reset.COMMITTED (the Engine's archive endpoint
--     writes into a stopped container's root);
--  3. that container is committed with the box's image's own config plus a
--     label holding the content hash, and removed. A box started from the
--     image gets the files back into its mounts before its first step
--     (lockup.lifecycle, lockup.reset.restore_text), and lockup's hardened
--     defaults as any box does: an image carries no HostConfig.
-- The tag is content-addressed (lockup.tarsum): the box's image and what
-- its mounts (and, with a writable root, its changed files) hold. The same
-- preparation gives the same tag, and an image already there is reused.
local core = require "lockup.core"
local exec = require "lockup.exec"
local tarsum = require "lockup.tarsum"
local reset = require "lockup.reset"

local type, tostring, ipairs, pairs, next, error = type, tostring, ipairs, pairs, next, error
local string_format, table_concat, table_sort = string.format, table.concat, table.sort

local _M = {}

local REPO = "lockup-commit" -- the repository of tags lockup chooses
local CONTENT_LABEL = "lockup.content"
local TIMEOUT = 120 -- seconds for reading the box's files out, and for each Engine call
local MAX_BYTES = 1024 * 1024 * 1024 -- the largest archive of a box's files held in memory

-- What `docker commit` of a box with a writable root captured there: the
-- paths the Engine says changed, and an archive of those that are not
-- directories (a directory's own change is its entries'), for the hash.
local CHANGED = 'for p; do [ -d "$p" ] && [ ! -L "$p" ] && continue; [ -e "$p" ] || [ -L "$p" ] || continue; '
  .. 'printf "%s\\n" "${p#/}"; done | tar -c -f - -C / -T -'

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

-- For a box with a writable root: the hash input of what changed there.
local function root_changes(box, d)
  local status, list = d:request("GET", "/containers/" .. box.id .. "/changes", { timeout = TIMEOUT })
  if not status then return nil, "asking the Engine what changed in the box: " .. list end
  local lines, paths = {}, {}
  for _, c in ipairs(type(list) == "table" and list or {}) do
    lines[#lines + 1] = tostring(c.Kind) .. " " .. tostring(c.Path)
    if c.Kind ~= 2 then paths[#paths + 1] = c.Path end -- 2: deleted
  end
  table_sort(lines)
  table_sort(paths)
  local archive, err = "", nil
  if #paths > 0 then
    local argv = { box.shell, "-c", CHANGED, "lockup-changed" }
    for _, p in ipairs(paths) do argv[#argv + 1] = p end
    archive, err = run_out(box, argv, "reading the files that changed in the box's root")
    if not archive then return nil, err end
  end
  local hex
  hex, err = tarsum.hash(archive, table_concat(lines, "\n"))
  if not hex then return nil, "the box's changed files: " .. err end
  return hex
end

-- A tar of one directory entry, to make COMMITTED in the container's root.
local function dir_archive(name)
  local t = core.tar()
  local ok, err = t:dir(name, 493) -- 0755: readable by whichever user a box runs as
  if ok then ok, err = t:finish() end
  local data = ok and t:take(1024 * 1024)
  t:close()
  if not data then return nil, err end
  return data
end

-- The image's config, with the content label and without lockup's own.
local function image_config(d, image_id, hex)
  local status, info = d:request("GET", "/images/" .. image_id .. "/json", { timeout = TIMEOUT })
  if not status then return nil, "reading the box's image: " .. info end
  local config = type(info.Config) == "table" and info.Config or {}
  local labels = {}
  for k, v in pairs(type(config.Labels) == "table" and config.Labels or {}) do
    if k:sub(1, 7) ~= "lockup." then labels[k] = v end
  end
  labels[CONTENT_LABEL] = hex
  config.Labels = labels
  -- JSON's [] and {} both decode to an empty table, which would go back as
  -- {} where the Engine wants a list: an empty field is left out instead
  for k, v in pairs(config) do
    if type(v) == "table" and next(v) == nil then config[k] = nil end
  end
  return config
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

-- Makes the image: the steps 2 and 3 above. true, or nil, err; the
-- container of the work is removed on every way out.
local function make_image(d, box, from, archive, config, tag)
  local repo, t = tag:match("^(.+):([%w_][%w_.%-]*)$")
  local status, created = d:request("POST", "/containers/create", { timeout = TIMEOUT, body = {
    Image = from, Entrypoint = { box.shell }, NetworkDisabled = true,
    HostConfig = { NetworkMode = "none" },
  } })
  if not status then return nil, "making the image's container: " .. created end
  local id = created.Id
  local ok, err = true, nil
  if archive ~= "" then
    local dir
    dir, err = dir_archive(reset.COMMITTED:sub(2))
    ok = dir ~= nil
    for _, step in ipairs(ok and { { "/", dir }, { reset.COMMITTED, archive } } or {}) do
      ok, err = d:request("PUT", "/containers/" .. id .. "/archive", { query = { path = step[1] },
        body = step[2], content_type = "application/x-tar", timeout = TIMEOUT })
      if not ok then
        err = "putting the box's files into the image: " .. err
        break
      end
    end
  end
  if ok then
    ok, err = d:request("POST", "/commit", { query = { container = id, repo = repo, tag = t, pause = false },
      body = config, timeout = TIMEOUT })
    if not ok then err = "committing the image: " .. err end
  end
  d:request("DELETE", "/containers/" .. id, { query = { force = 1 }, timeout = TIMEOUT })
  if not ok then return nil, err end
  return true
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

-- The work, the box's lock held: the tag, or nil, err.
function _M.run(box, tag)
  local d = box.docker
  local status, info = d:request("GET", "/containers/" .. box.id .. "/json", { timeout = TIMEOUT })
  if not status then return nil, "reading the box's container: " .. info end
  local image_id = info.Image
  local archive, err = mounts_archive(box)
  if not archive then return nil, err end
  local salt = { "lockup-commit 1", image_id }
  if not box.read_only then
    local changes
    changes, err = root_changes(box, d)
    if not changes then return nil, err end
    salt[#salt + 1] = changes
  end
  local hex
  hex, err = tarsum.hash(archive, table_concat(salt, "\n") .. "\n")
  if not hex then return nil, "the box's writable mounts: " .. err end
  tag, err = tag_for(tag, hex)
  if not tag then return nil, err end
  local there
  there, err = existing(d, tag)
  if there == nil then return nil, err end
  if there == hex then return tag end
  if there then
    return nil, string_format("image %s exists with other content (%s): choose another tag, or remove that image "
      .. "first (docker:remove_image)", tag, there == "" and "not made by box:commit" or "another box's files")
  end
  local config
  config, err = image_config(d, image_id, hex)
  if not config then return nil, err end
  local from = image_id
  if not box.read_only then
    status, info = d:request("POST", "/commit", { query = { container = box.id }, timeout = TIMEOUT })
    if not status then return nil, "committing the box's root filesystem: " .. info end
    from = info.Id
  end
  local ok
  ok, err = make_image(d, box, from, archive, config, tag)
  if not ok then
    if from ~= image_id then d:request("DELETE", "/images/" .. from, { timeout = TIMEOUT }) end
    return nil, err
  end
  return tag
end

-- Checks commit's argument; raises at the caller's level.
function _M.check_tag(tag)
  if tag ~= nil and type(tag) ~= "string" then
    error("bad argument #1 to 'commit' (an image tag such as \"prepared:v1\", or nothing, expected; got "
      .. type(tag) .. ")", 3)
  end
end

return _M
