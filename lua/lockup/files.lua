-- Files into and out of a box: box:put, box:put_file, box:get, box:get_file.
--
-- They go through the exec API: `tar -x` in the box reads a tar stream that
-- lockup writes (libarchive; see lockup.context), and `cat` sends a file
-- back. The Engine's archive endpoints cannot serve here: they refuse a
-- read-only root filesystem and do not see tmpfs mounts, which is where a
-- hardened box can write. So the box's image needs sh, cat, mkdir and tar
-- (busybox or coreutils). Each call runs as the box's user (or opts.user), so
-- what it writes belongs to that user, and it can write only where that user can.
local core = require "lockup.core"
local compat = require "lockup.compat"
local context = require "lockup.context"
local options = require "lockup.options"
local hardening = require "lockup.hardening"

local type, tostring, tonumber, error, ipairs, is_integer = type, tostring, tonumber, error, ipairs, compat.is_integer
local string_format, table_concat = string.format, table.concat

local _M = {}

local FILE_MODE = 420 -- 0644

-- Shell function for the scripts below: fails (exit 90) when an existing part
-- of path $1 is a symlink. lockup never writes or reads through one, so a name
-- means the same file on the host's side as in the box.
local NO_SYMLINKS = [[
nosym() { p=; r=${1#/}; while [ -n "$r" ]; do c=${r%%/*}; case $r in */*) r=${r#*/};; *) r=;; esac
  p=$p/$c; if [ -L "$p" ]; then printf '%s is a symlink\n' "$p" >&2; exit 90; fi; done; }
]]

-- $1: directory to extract into; $2...: the archive's directories and
-- top-level names (a file's own name needs no check: tar replaces a symlink
-- there instead of following it).
local PUT = NO_SYMLINKS .. [[
d=$1; shift; nosym "$d"; for n; do nosym "$d/$n"; done
mkdir -p -- "$d" || exit 91
umask 0
exec tar -x -f - -C "$d"
]]

-- $1: the file; $2: the largest size accepted. Says its size on stderr
-- ("size N"), then sends it on stdout.
local GET = NO_SYMLINKS .. [[
nosym "$1"
[ -e "$1" ] || exit 92
[ -d "$1" ] && exit 93
[ -f "$1" ] || exit 94
[ -r "$1" ] || exit 95
s=$(stat -L -c %s -- "$1" 2>/dev/null) && { [ "$s" -gt "$2" ] && exit 96; printf 'size %s\n' "$s" >&2; }
exec cat -- "$1"
]]

local EXIT_REASONS = {
  [91] = "cannot create the directory",
  [92] = "no such file in the box",
  [93] = "is a directory, not a file",
  [94] = "not a regular file",
  [95] = "permission denied (the box's user cannot read it)",
}

-- What a failed tar or cat said, turned into what to do about it.
local function explain(self, text, user)
  if text:find("Read%-only file system") then
    return "read-only file system: write under one of the box's writable mounts ("
      .. table_concat(self.writable, ", ") .. ")"
  elseif text:find("No space left") then
    return "the box's disk is full (start{ disk = ... } sets the size of each tmpfs)"
  elseif text:find("File too large") then
    return "larger than the box's file size limit (start{ ulimits = { fsize = ... } })"
  elseif text:find("Permission denied") then
    return "permission denied for user " .. tostring(user or self.user)
      .. (user and " (opts.user)" or " (the box's user; another can be given with opts.user)")
  end
  return nil
end

local function fail(op, path, why)
  return nil, string_format("%s %s: %s", op, path, why)
end

-- The absolute, normalised path in the box for `path` (relative ones are under
-- the box's working directory), or nil, err.
local function box_path(self, op, path)
  local full = path:sub(1, 1) == "/" and path or (self.workdir .. "/" .. path)
  full = full:gsub("/+$", "")
  if full == "" then return fail(op, path, "is the root directory") end
  local bad = context.bad_name(full:sub(2))
  if bad then return fail(op, path, "bad path: " .. bad:gsub("^'[^']*' ", "")) end
  return full
end

-- Is `path` under one of the box's writable mounts (or the root filesystem writable)?
local function writable(self, path)
  if not self.read_only then return true end
  for _, m in ipairs(self.writable) do
    if path == m or path:sub(1, #m + 1) == m .. "/" then return true end
  end
  return false
end

-- Writes entries under box directory `dir` with one `tar -x`. Returns true | nil, err.
local function extract(self, op, shown, dir, entries, opts)
  if not writable(self, dir) then
    return fail(op, shown, "outside the box's writable mounts (" .. table_concat(self.writable, ", ")
      .. "): the root filesystem is read-only")
  end
  local argv = { self.shell, "-c", PUT, "lockup-put", dir }
  for _, e in ipairs(entries) do -- entries hold every parent directory (lockup.context)
    if e.type == "dir" or not e.name:find("/", 1, true) then argv[#argv + 1] = e.name end
  end
  local r, err = self:exec(argv, {
    user = opts.user, timeout = opts.timeout,
    stdin = context.counted(context.tar_source(entries), op, context.tar_size(entries), opts.on_progress),
    stdin_size = context.tar_size(entries),
  })
  if not r then return fail(op, shown, err) end
  if r.timed_out then return fail(op, shown, "timed out") end
  if r.code ~= 0 then
    local text = (r.stderr .. r.stdout):gsub("%s+$", "")
    local why = r.code == 90 and (text .. " in the box (lockup does not write through symlinks)")
      or explain(self, text, opts.user) or EXIT_REASONS[r.code] or text
    return fail(op, shown, why ~= "" and why or ("tar exited with code " .. r.code))
  end
  return true
end

local PUT_OPTIONS = { mode = "number", user = "string", timeout = "number", on_progress = "function" }

-- Argument checks of the public functions (errors at their caller's line).
-- max_size: an integer number of bytes, or math.huge for no limit.
local function check_max_size(max, op, default)
  if max == nil then return default end
  if max == math.huge then return compat.maxinteger end
  if not is_integer(max) or max < 0 then
    error(string_format("bad option 'max_size' to '%s' (a number of bytes, or math.huge for no limit)", op), 3)
  end
  return max
end

local function check_mode(mode, op)
  if mode ~= nil and (not is_integer(mode) or mode < 0 or mode > 4095) then
    error(string_format("bad option 'mode' to '%s' (an integer such as tonumber(\"644\", 8) expected)", op), 3)
  end
end

local function check_string(v, op, n, what)
  if type(v) ~= "string" then
    error(string_format("bad argument #%d to '%s' (%s expected, got %s)", n, op, what, type(v)), 3)
  end
end

-- box:put(path, data [, opts]) -> true | nil, err: writes a file.
-- box:put(dir, { [name] = data | { data | file | dir, mode }, ... } [, opts]):
-- writes a file set (see lockup.context) under dir, creating what is missing.
-- opts: mode (for a single file; default 0644), user, timeout, on_progress.
function _M.put(self, path, data, opts)
  check_string(path, "put", 1, "path in the box")
  opts = options.check(opts, PUT_OPTIONS, "put", 2)
  check_mode(opts.mode, "put")
  local full, err = box_path(self, "put", path)
  if not full then return nil, err end
  if type(data) == "string" then
    local dir, name = full:match("^(.*)/([^/]+)$")
    return extract(self, "put", path, dir == "" and "/" or dir,
      { { name = name, type = "file", data = data, size = #data, mode = opts.mode or FILE_MODE } }, opts)
  elseif type(data) == "table" then
    if opts.mode then error("bad option 'mode' to 'put' (give each file's mode in the table)", 2) end
    local entries
    entries, err = context.entries(data)
    if not entries then return fail("put", path, err) end
    return extract(self, "put", path, full, entries, opts)
  end
  error("bad argument #2 to 'put' (string or table of files expected, got " .. type(data) .. ")", 2)
end

-- box:put_file(host_path, box_path [, opts]) -> true | nil, err: streams a
-- host file in, in slices (any size, bounded memory). The mode is the host
-- file's unless opts.mode is given.
function _M.put_file(self, host_path, path, opts)
  check_string(host_path, "put_file", 1, "host path")
  check_string(path, "put_file", 2, "path in the box")
  opts = options.check(opts, PUT_OPTIONS, "put_file", 2)
  check_mode(opts.mode, "put_file")
  local full, err = box_path(self, "put_file", path)
  if not full then return nil, err end
  local dir, name = full:match("^(.*)/([^/]+)$")
  local entries
  entries, err = context.entries { [name] = { file = host_path, mode = opts.mode } }
  if not entries then return nil, "put_file: " .. err end
  return extract(self, "put_file", path, dir == "" and "/" or dir, entries, opts)
end

local GET_OPTIONS = { user = "string", timeout = "number", on_progress = "function", max_size = "number" }

-- What is kept of the box's stderr during a get: its "size N" line and an
-- error message fit; a box that writes more is stopped (a flood).
local SAID_MAX = 4096

-- Sends the box's file to write(chunk). Returns the byte count | nil, err.
-- Every buffer is bounded whatever the box sends: a file past max, or past
-- the size the box announced, stops the transfer (returning false from a
-- callback ends the exec as at an output cap), and so does stderr past
-- SAID_MAX.
local function fetch(self, op, path, opts, max, write)
  local full, err = box_path(self, op, path)
  if not full then return nil, err end
  local total, done, said, why = nil, 0, "", nil
  local r
  r, err = self:exec({ self.shell, "-c", GET, "lockup-get", full, string_format("%d", max) }, {
    user = opts.user, timeout = opts.timeout,
    on_stdout = function(chunk)
      done = done + #chunk
      if done > max then -- the file grew past max_size meanwhile
        why = string_format("larger than max_size (%d bytes)", max)
        return false
      elseif total and done > total then
        why = string_format("the box sent more than the %d bytes it announced (the file grew, or the box "
          .. "is hostile)", total)
        return false
      end
      write(chunk)
      if opts.on_progress then opts.on_progress { op = op, done = done, total = total } end
    end,
    on_stderr = function(chunk)
      if #said + #chunk > SAID_MAX then
        why = string_format("the box wrote more than %d bytes of errors while sending it", SAID_MAX)
        return false
      end
      said = said .. chunk
      total = total or tonumber(said:match("^size (%d+)\n"))
    end,
  })
  if not r then return fail(op, path, err) end
  if why then return fail(op, path, why) end
  if r.timed_out then return fail(op, path, "timed out") end
  if r.code == 96 then return fail(op, path, string_format("larger than max_size (%d bytes)", max)) end
  if r.code ~= 0 then
    local text = said:gsub("^size %d+\n", ""):gsub("%s+$", "")
    local reason = r.code == 90 and (text .. " in the box (lockup does not read through symlinks)")
      or EXIT_REASONS[r.code] or explain(self, text, opts.user) or text
    return fail(op, path, reason ~= "" and reason or ("cat exited with code " .. r.code))
  end
  if total and done < total then
    return fail(op, path, string_format("the box sent %d of the %d bytes it announced (the file shrank)", done, total))
  end
  return done
end

-- box:get(path [, opts]) -> data | nil, err: a file's bytes. opts.max_size
-- (default: the box's max_output) bounds what is read into memory.
function _M.get(self, path, opts)
  check_string(path, "get", 1, "path in the box")
  opts = options.check(opts, GET_OPTIONS, "get", 2)
  local max = check_max_size(opts.max_size, "get", self.max_output)
  local parts = {}
  local n, err = fetch(self, "get", path, opts, max, function(chunk) parts[#parts + 1] = chunk end)
  if not n then return nil, err end
  return table_concat(parts)
end

-- box:get_file(box_path, host_path [, opts]) -> bytes | nil, err: streams a
-- file out to the host. The host file appears whole or not at all (it is
-- written under a temporary name, then renamed). opts.max_size defaults to
-- the largest file a box may write by default (1 GiB): a box cannot fill the
-- host's disk unasked.
function _M.get_file(self, path, host_path, opts)
  check_string(path, "get_file", 1, "path in the box")
  check_string(host_path, "get_file", 2, "host path")
  opts = options.check(opts, GET_OPTIONS, "get_file", 2)
  local max = check_max_size(opts.max_size, "get_file", hardening.DEFAULTS.fsize)
  local part = host_path .. ".lockup-" .. core.random_hex(4)
  local f, err = io.open(part, "wb")
  if not f then return fail("get_file", host_path, err) end
  local werr
  local n
  n, err = fetch(self, "get_file", path, opts, max, function(chunk)
    if not werr then
      local ok, e = f:write(chunk)
      if not ok then werr = e end
    end
  end)
  local closed, cerr = f:close()
  werr = werr or (not closed and cerr) or nil
  if n and werr then n, err = nil, "get_file " .. host_path .. ": " .. werr end
  if n then
    local ok, rerr = os.rename(part, host_path)
    if ok then return n end
    err = "get_file " .. host_path .. ": " .. rerr
  end
  os.remove(part)
  return nil, err
end

return _M
