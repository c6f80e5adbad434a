-- Images: build from a file set (lockup.context), import a root filesystem,
-- pull, check, remove; and content-derived tags, so that a build is skipped
-- when nothing that goes into it has changed.
local cjson = require("cjson").new()
local context = require "lockup.context"
local compat = require "lockup.compat"
local options = require "lockup.options"

local type, tostring, error, pcall, ipairs = type, tostring, error, pcall, ipairs
local string_format, table_concat = string.format, table.concat

local _M = {}

local LONG_TIMEOUT = 1800 -- seconds for a build, import or pull, unless given
local GENERATED_DOCKERFILE = ".lockup.Dockerfile"
local KEEP_OUTPUT = 64 * 1024 -- bytes of a failing step's output kept for the error

-- An image reference as the Engine takes it in a URL path; nil, err if it
-- cannot be one (it would change the request).
local function reference(name, fname)
  if type(name) ~= "string" then
    error(string_format("bad argument #1 to '%s' (image name expected, got %s)", fname, type(name)), 3)
  end
  if name == "" or name:find("[%s%?#%%%c]") then
    return nil, string_format("'%s' is not an image name (such as busybox:local or sha256:...)", name)
  end
  return name
end

-- Splits a repo[:tag] reference, keeping a registry's host:port intact.
local function repo_tag(ref)
  local repo, tag = ref:match("^(.+):([%w_][%w_.%-]*)$")
  if repo and not tag:find("/", 1, true) then return repo, tag end
  return ref, "latest"
end

-- A JSON-lines reader for the Engine's progress streams: feed(chunk) calls
-- on_message(message) for each complete line.
local function json_lines(on_message)
  local pending = ""
  return function(chunk)
    pending = pending .. chunk
    local from = 1
    while true do
      local nl = pending:find("\n", from, true)
      if not nl then break end
      local line = pending:sub(from, nl - 1)
      from = nl + 1
      if line:find("%S") then
        local ok, msg = pcall(cjson.decode, line)
        if ok and type(msg) == "table" then on_message(msg) end
      end
    end
    pending = pending:sub(from)
  end
end

-- Calls on_progress(event) if the user gave it.
local function notify(on_progress, event)
  if on_progress then on_progress(event) end
end


-- The images a Dockerfile's FROM lines name, but for scratch, earlier stages
-- and names built from ARGs (which only the build can resolve).
local function base_images(text)
  local list, stages = {}, { scratch = true }
  for line in text:gmatch("[^\n]+") do
    local from = line:match("^%s*[Ff][Rr][Oo][Mm]%s+(.+)$")
    if from then
      local args = {}
      for word in from:gmatch("%S+") do
        if not word:match("^%-%-") then args[#args + 1] = word end
      end
      local name = args[1]
      if name and not stages[name:lower()] and not name:find("$", 1, true) then list[#list + 1] = name end
      if args[2] and args[2]:lower() == "as" and args[3] then stages[args[3]:lower()] = true end
    end
  end
  return list
end

-- The text of the Dockerfile `name` in the entries, or nil, err.
local function dockerfile_text(entries, name)
  for _, e in ipairs(entries) do
    if e.name == name and e.type == "file" then
      local text, err = context.read(e)
      if not text then return nil, "build context: " .. err end
      return text
    end
  end
  return nil, string_format("build context has no file '%s' for the Dockerfile (to give the Dockerfile's "
    .. "text instead, end it with a newline)", name)
end

-- The Engine pulls a missing base image during a build: that would reach out
-- to a registry, so a missing base is reported here instead.
local function check_bases(d, text)
  for _, name in ipairs(base_images(text)) do
    local exists, err = _M.image_exists(d, name)
    if exists == nil then return nil, err end
    if not exists then
      return nil, string_format("base image '%s' (FROM) is not on the Engine: build, import or pull it first "
        .. "(lockup never pulls during a build)", name)
    end
  end
  return true
end

local BUILD_OPTIONS = {
  context = "string|table", dockerfile = "string", tag = "string", on_progress = "function", timeout = "number",
  buildargs = "table", labels = "table", nocache = "boolean",
}

-- docker:build{ context = dir | file set, dockerfile = name | text, tag = "name:tag",
--   on_progress = fn, buildargs, labels, nocache, timeout } -> image id | nil, err
-- A dockerfile with a newline in it is the Dockerfile's text; otherwise it
-- names a file in the context ("Dockerfile" by default). Builds run with no
-- network. on_progress gets { op = "build", text = line, step = "step 2/5 (RUN ...)" }
-- for each line the build prints, and { op = "context", done, total } while
-- the context is sent.
function _M.build(d, opts)
  opts = options.check(opts, BUILD_OPTIONS, "build", 2)
  if opts.context == nil then error("bad argument to 'build' (option 'context' is required)", 2) end
  local entries, err = context.entries(opts.context)
  if not entries then return nil, "build context: " .. err end
  local dockerfile = opts.dockerfile or "Dockerfile"
  local given_text = dockerfile:find("\n", 1, true) ~= nil
  local text = dockerfile
  if not given_text then
    text, err = dockerfile_text(entries, dockerfile)
    if not text then return nil, err end
  end
  local ok, cerr = check_bases(d, text)
  if not ok then return nil, "build: " .. cerr end
  if given_text then
    for _, e in ipairs(entries) do
      if e.name == GENERATED_DOCKERFILE then
        return nil, "build context: " .. GENERATED_DOCKERFILE .. " is lockup's own name"
      end
    end
    entries[#entries + 1] = { name = GENERATED_DOCKERFILE, type = "file", data = text, size = #text, mode = 420 }
    dockerfile = GENERATED_DOCKERFILE
  end

  local on_progress = opts.on_progress
  local id, step, output, failure = nil, nil, {}, nil
  local kept = 0
  local feed = json_lines(function(msg)
    if type(msg.stream) == "string" then
      local out = msg.stream:gsub("\27%[[%d;]*m", "") -- the builder colours a step's stderr
      -- Docker's classic builder says "Step 2/5 : RUN ...", Podman's (buildah) "STEP 2/5: RUN ..."
      local n, instruction = out:match("^Step (%d+/%d+) : ([^\n]*)")
      if not n then n, instruction = out:match("^STEP (%d+/%d+): ([^\n]*)") end
      if n then
        step, output, kept = string_format("step %s (%s)", n, instruction), {}, 0
      elseif kept < KEEP_OUTPUT then
        output[#output + 1] = out
        kept = kept + #out
      end
      for line in out:gmatch("[^\n]+") do notify(on_progress, { op = "build", text = line, step = step }) end
    elseif type(msg.aux) == "table" and type(msg.aux.ID) == "string" then
      id = msg.aux.ID
    elseif msg.error ~= nil then
      failure = tostring(msg.error)
    end
  end)
  local status, body = d:request("POST", "/build", {
    query = {
      t = opts.tag, dockerfile = dockerfile, networkmode = "none", rm = 1, forcerm = 1,
      nocache = opts.nocache and 1 or nil, buildargs = opts.buildargs, labels = opts.labels,
    },
    body = context.counted(context.tar_source(entries), "context", context.tar_size(entries), on_progress),
    content_type = "application/x-tar",
    timeout = opts.timeout or LONG_TIMEOUT,
    on_body = feed,
  })
  if not status then return nil, "build: " .. tostring(body) end
  notify(on_progress, { op = "build", text = id and ("built " .. id) or "failed", finished = true })
  if failure or not id then
    local where = step and (" at " .. step) or ""
    -- the builder's own lines about its containers are noise here
    local out = table_concat(output):gsub("[^\n]*\n?", function(line)
      if line:match("^ %-%-%-> ") or line:match("^Removing intermediate container ") then return "" end
    end):gsub("^%s+", ""):gsub("%s+$", "")
    return nil, string_format("build failed%s: %s%s", where, failure or "the Engine reported no image id",
      out ~= "" and ("\n--- output of that step ---\n" .. out) or "")
  end
  return id
end

-- docker:import(rootfs_tar_path, tag [, { on_progress, timeout }]) -> image id | nil, err
function _M.import(d, path, tag, opts)
  if type(path) ~= "string" then error("bad argument #1 to 'import' (path of a tar file expected)", 2) end
  local ref, err = reference(tag, "import")
  if not ref then return nil, err end
  opts = options.check(opts, { on_progress = "function", timeout = "number" }, "import", 2)
  local f
  f, err = io.open(path, "rb")
  if not f then return nil, "import: " .. err end
  local total = f:seek("end")
  f:seek("set")
  local source = function()
    local chunk = f:read(256 * 1024)
    if not chunk then f:close() end
    return chunk
  end
  local repo, t = repo_tag(ref)
  local id, failure
  local status, body = d:request("POST", "/images/create", {
    query = { fromSrc = "-", repo = repo, tag = t },
    body = context.counted(source, "import", total, opts.on_progress),
    content_type = "application/x-tar",
    timeout = opts.timeout or LONG_TIMEOUT,
    on_body = json_lines(function(msg)
      if msg.error ~= nil then failure = tostring(msg.error)
      elseif type(msg.status) == "string" and msg.status:match("^sha256:%x+$") then id = msg.status end
    end),
  })
  if io.type(f) == "file" then f:close() end
  if not status then return nil, "import: " .. tostring(body) end
  if failure then return nil, "import: " .. failure end
  return id or ref
end

-- docker:pull(name [, { on_progress, timeout }]) -> image id | nil, err.
-- on_progress gets { op = "pull", text = "Downloading", id = layer, done, total }.
function _M.pull(d, name, opts)
  local ref, err = reference(name, "pull")
  if not ref then return nil, err end
  opts = options.check(opts, { on_progress = "function", timeout = "number" }, "pull", 2)
  local repo, tag = repo_tag(ref)
  local failure
  local status, body = d:request("POST", "/images/create", {
    query = { fromImage = repo, tag = tag },
    timeout = opts.timeout or LONG_TIMEOUT,
    on_body = json_lines(function(msg)
      if msg.error ~= nil then
        failure = tostring(msg.error)
      elseif type(msg.status) == "string" then
        local p = type(msg.progressDetail) == "table" and msg.progressDetail or {}
        notify(opts.on_progress, { op = "pull", text = msg.status, id = msg.id,
          done = compat.tointeger(p.current), total = compat.tointeger(p.total) })
      end
    end),
  })
  notify(opts.on_progress, { op = "pull", text = (failure or not status) and "failed" or "done", finished = true })
  if not status then return nil, string_format("pulling %s: %s", ref, tostring(body)) end
  if failure then return nil, string_format("pulling %s: %s", ref, failure) end
  local info
  status, info = d:request("GET", "/images/" .. ref .. "/json")
  if not status then return nil, string_format("pulling %s: %s", ref, info) end
  return info.Id
end

-- docker:image_exists(name) -> true | false | nil, err
function _M.image_exists(d, name)
  local ref, err = reference(name, "image_exists")
  if not ref then return nil, err end
  local status, body, code = d:request("GET", "/images/" .. ref .. "/json")
  if status then return true end
  if code == 404 then return false end
  return nil, body
end

-- docker:remove_image(name [, { force = true }]) -> true | nil, err
function _M.remove_image(d, name, opts)
  local ref, err = reference(name, "remove_image")
  if not ref then return nil, err end
  opts = options.check(opts, { force = "boolean" }, "remove_image", 2)
  local status, body = d:request("DELETE", "/images/" .. ref, { query = { force = opts.force and 1 or nil } })
  if not status then return nil, "removing image " .. ref .. ": " .. body end
  return true
end

-- lockup.content_tag(file_set [, name]) -> "name:<hash>" | nil, err: a tag
-- derived from what the file set holds (names, modes, contents), so that
-- `if not docker:image_exists(tag) then docker:build{ ..., tag = tag } end`
-- rebuilds exactly when something changed. name defaults to "lockup".
function _M.content_tag(set, name)
  name = name or "lockup"
  if type(name) ~= "string" or not name:match("^[a-z0-9][a-z0-9._/-]*$") then
    error("bad argument #2 to 'content_tag' (a repository name such as \"thumbnail\" expected)", 2)
  end
  local entries, err = context.entries(set)
  if not entries then return nil, err end
  local hex
  hex, err = context.hash(entries)
  if not hex then return nil, err end
  return name .. ":" .. hex:sub(1, 32)
end

return _M
