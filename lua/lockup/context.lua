-- File sets: what docker:build sends as its context, what box:put writes into
-- a box, what lockup.content_tag hashes. A file set is given as
--
--   "path/to/dir"                              a host directory, walked
--   { ["name"] = "contents",                   a file (mode 0644)
--     ["bin/run"] = { data = "...", mode = tonumber("755", 8) },
--     ["big.iso"] = { file = "/host/path" },    a host file, streamed (its own mode)
--     ["lib"] = { dir = "/host/dir" } }         a host directory, walked, under "lib"
--
-- and becomes a list of entries sorted by name, parents before children:
-- { name, type = "file"|"dir"|"symlink", mode, data | path, size, target, mtime }.
-- A host file's entry also holds its identity when listed (id) and whether a
-- symlink at path is followed (follow: only for a path the caller named).
-- Host files are read only through _M.read, tar_source and hash, which refuse
-- a file that is no longer the one listed: a directory mounted :rw into a
-- running box can change at any time.
local core = require "lockup.core"
local compat = require "lockup.compat"
local scheduler = require "lockup.scheduler"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local string_format, table_sort, math_ceil = string.format, table.sort, math.ceil
local u8, u32, u64, is_integer = compat.u8, compat.u32, compat.u64, compat.is_integer

local _M = {}

local FILE_MODE, DIR_MODE = 420, 493 -- 0644, 0755
local CHUNK = 256 * 1024 -- tar bytes per chunk handed to the sender
local HASH_SLICE = 4 * 1024 * 1024 -- file bytes hashed per C call, between which other tasks run

-- Why `name` cannot be a name inside a file set, or nil when it can: a
-- relative path whose parts are neither empty nor "." nor "..", so that
-- nothing lands outside the directory it is written into.
function _M.bad_name(name)
  if type(name) ~= "string" then return "names must be strings, got a " .. type(name) end
  if name == "" then return "an empty name" end
  if name:find("\0", 1, true) then return "a name with a NUL byte" end
  if name:sub(1, 1) == "/" then return string_format("'%s' is absolute: names are relative to where they go", name) end
  for part in (name .. "/"):gmatch("([^/]*)/") do
    if part == ".." then return string_format("'%s' escapes with '..'", name) end
    if part == "" or part == "." then return string_format("'%s' has an empty or '.' part", name) end
  end
  return nil
end

local function name_order(a, b) return a.name < b.name end

-- Adds the tree under host directory `dir` to `out`, named under `prefix`.
-- Each directory is listed through a descriptor, and must be the one its
-- parent's listing saw (`id`); each file keeps its identity, so that reading
-- it later refuses whatever a box with this tree mounted :rw swapped in since
-- (core.scandir, and hostfile.h in the core).
local function walk(dir, id, prefix, out)
  local list, err = core.scandir(dir, id)
  if not list then return nil, err end
  table_sort(list, name_order)
  for _, st in ipairs(list) do
    local path, name = dir .. "/" .. st.name, prefix and (prefix .. "/" .. st.name) or st.name
    if st.type == "file" then
      out[#out + 1] = { name = name, type = "file", path = path, id = st.id, size = st.size, mode = st.mode,
        mtime = st.mtime }
    elseif st.type == "dir" then
      out[#out + 1] = { name = name, type = "dir", mode = st.mode, mtime = st.mtime }
      local ok, werr = walk(path, st.id, name, out)
      if not ok then return nil, werr end
    elseif st.type == "symlink" then
      out[#out + 1] = { name = name, type = "symlink", target = st.target, mode = 511, mtime = st.mtime }
    else
      return nil, path .. ": not a file, directory or symlink (sockets and devices cannot be sent)"
    end
  end
  return true
end

-- A host directory the caller names: never a symlink (it would be sent as
-- one, not walked), and the components above it are the caller's to choose.
local function host_dir(dir, prefix, out)
  local st, err = core.lstat(dir)
  if not st then return nil, err end
  if st.type ~= "dir" then return nil, dir .. ": not a directory" end
  if prefix then out[#out + 1] = { name = prefix, type = "dir", mode = st.mode, mtime = st.mtime } end
  return walk(dir, st.id, prefix, out)
end

-- Why an entry's mode is wrong, or nil when it is fine (or not given).
local function bad_mode(spec)
  local m = spec.mode
  if m ~= nil and (not is_integer(m) or m < 0 or m > 4095) then
    return string_format("bad mode %s in a file set (an integer such as tonumber(\"644\", 8) expected)", tostring(m))
  end
  return nil
end

-- Entries from a table of names (see the top of this file).
local function from_table(set, out)
  for name, spec in pairs(set) do
    local bad = _M.bad_name(name)
    if bad then return nil, "bad name in a file set: " .. bad end
    local merr = type(spec) == "table" and bad_mode(spec)
    if merr then return nil, merr end
    if type(spec) == "string" then
      out[#out + 1] = { name = name, type = "file", data = spec, size = #spec, mode = FILE_MODE }
    elseif type(spec) ~= "table" then
      return nil, string_format("bad entry '%s' in a file set: a string or a table expected, got a %s",
        name, type(spec))
    elseif type(spec.data) == "string" then
      out[#out + 1] = { name = name, type = "file", data = spec.data, size = #spec.data, mode = spec.mode or FILE_MODE }
    elseif type(spec.file) == "string" then
      -- A host file the caller names: a symlink there is followed (the
      -- caller chose it), to the file whose identity is kept for the read.
      local st, err = core.lstat(spec.file, true)
      if st and st.type ~= "file" then
        st, err = nil, spec.file .. (st.type == "dir" and ": is a directory" or ": not a regular file")
      end
      if not st then return nil, err end
      out[#out + 1] = { name = name, type = "file", path = spec.file, id = st.id, follow = true, size = st.size,
        mode = spec.mode or st.mode, mtime = st.mtime }
    elseif type(spec.dir) == "string" then
      local first = #out + 1 -- the directory's own entry
      local ok, err = host_dir(spec.dir, name, out)
      if not ok then return nil, err end
      if spec.mode then out[first].mode = spec.mode end
    else
      return nil, string_format("bad entry '%s' in a file set: give one of data, file or dir", name)
    end
  end
  return true
end

-- entries(set) -> sorted list of entries | nil, err. Missing parent
-- directories are added (mode 0755); a name given twice is an error.
function _M.entries(set)
  local out, ok, err = {}
  if type(set) == "string" then
    ok, err = host_dir(set, nil, out)
  elseif type(set) == "table" then
    ok, err = from_table(set, out)
  else
    return nil, "a file set is a directory path or a table of names, got a " .. type(set)
  end
  if not ok then return nil, err end
  local by_name = {}
  for _, e in ipairs(out) do
    if by_name[e.name] then return nil, string_format("'%s' is given twice in a file set", e.name) end
    by_name[e.name] = e
  end
  for _, e in ipairs(out) do -- parents, made up where missing
    local parent = e.name:match("^(.*)/[^/]+$")
    while parent and not by_name[parent] do
      local d = { name = parent, type = "dir", mode = DIR_MODE }
      by_name[parent] = d
      out[#out + 1] = d
      parent = parent:match("^(.*)/[^/]+$")
    end
    if parent and by_name[parent].type ~= "dir" then
      return nil, string_format("'%s' is under '%s', which is not a directory", e.name, parent)
    end
  end
  table_sort(out, name_order)
  return out
end

-- The size of the tar stream of a list of entries, for progress: a header
-- block per entry, data padded to blocks, two end blocks (long names add pax
-- headers, so this may come out a little short).
function _M.tar_size(entries)
  local n = 1024
  for _, e in ipairs(entries) do n = n + 512 + math_ceil((e.size or 0) / 512) * 512 end
  return n
end

-- sha256 of the entries' names, types, modes and contents (not their times or
-- owners: touching a file does not change it), as 64 hex digits.
function _M.hash(entries)
  local h = core.sha256()
  for _, e in ipairs(entries) do
    -- string.pack(">s4s1I4", name, type, mode), the bytes hashed since the start
    h:update(u32(#e.name) .. e.name .. u8(#e.type) .. e.type .. u32(e.mode))
    if e.type == "symlink" then
      h:update(u32(#e.target) .. e.target)
    elseif e.type == "file" then
      h:update(u64(e.size))
      if e.data then
        h:update(e.data)
      else
        -- In slices, letting other tasks run between them: no single C call
        -- may keep a loop (nginx's worker, lockup.run's) for long.
        local done = 0
        repeat
          local n, err = h:update_file(e.path, e.id, e.follow, done, HASH_SLICE)
          if not n then return nil, err end
          done = done + n
          if n == HASH_SLICE then scheduler.yield() end
        until n < HASH_SLICE
        if done ~= e.size then return nil, e.path .. ": changed while being hashed" end
      end
    end
  end
  return h:hex()
end

-- read(entry) -> bytes | nil, err: a file entry's contents, whole (for small
-- files such as a Dockerfile).
function _M.read(e)
  if e.data then return e.data end
  return core.read_file(e.path, e.size, e.id, e.follow)
end

-- tar_source(entries) -> a function returning the next chunk of a tar stream
-- of the entries, nil at the end, or nil, err (a host file that cannot be read).
function _M.tar_source(entries)
  local t, i, streaming, finished = core.tar(), 0, false, false
  local function fail(err)
    t:close()
    return nil, err
  end
  return function()
    while true do
      if streaming then
        local chunk, more = t:take(CHUNK)
        if not chunk then return fail(more) end
        streaming = more
        if #chunk > 0 then return chunk end
      elseif finished then
        t:close()
        return nil
      else
        i = i + 1
        local e = entries[i]
        local ok, err
        if not e then
          ok, err = t:finish()
          finished = true
        elseif e.type == "dir" then
          ok, err = t:dir(e.name, e.mode, e.mtime)
        elseif e.type == "symlink" then
          ok, err = t:symlink(e.name, e.target, e.mtime)
        elseif e.path then
          ok, err = t:host_file(e.name, e.path, e.mode, e.id, e.follow)
        else
          ok, err = t:file(e.name, e.mode, e.data, e.mtime)
        end
        if not ok then return fail(err) end
        streaming = true
      end
    end
  end
end

-- counted(source, op, total, on_progress) -> a source handing out the same
-- chunks, calling on_progress{ op, done, total } for each (done <= total);
-- the source itself when there is no on_progress.
function _M.counted(source, op, total, on_progress)
  if not on_progress then return source end
  local done = 0
  return function()
    local chunk, err = source()
    if chunk then
      done = math.min(total, done + #chunk)
      on_progress { op = op, done = done, total = total }
    end
    return chunk, err
  end
end

return _M
