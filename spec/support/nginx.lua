-- A real nginx for the specs (Debian's nginx with libnginx-mod-http-lua and
-- lua-resty-core, installed by scripts/setup.sh): a config under a temp dir,
-- one worker, listening on 127.0.0.1 only, lockup's Lua tree and its LuaJIT
-- build (build-luajit/, `make luajit`) on its paths. Requests go through curl.
local helper = require "helper"

local nginx = {}

local MODULES = "/usr/lib/nginx/modules/"
local ROOT = io.popen("pwd"):read("*l")

local CONFIG = [[
load_module %sndk_http_module.so;
load_module %sngx_http_lua_module.so;
worker_processes 1;
worker_shutdown_timeout 3s; # a reload ends old requests (and so their boxes) soon
user root;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/body;
  client_body_buffer_size 16m;
  client_max_body_size 16m;
  lua_check_client_abort on;
  lua_package_path "%s/spec/fixtures/openresty/?.lua;%s/examples/openresty/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build-luajit/?.so;;";
  server {
    listen 127.0.0.1:%d;
    location = /ping { content_by_lua_block { ngx.say("pong") } }
    location = /thumbnail { content_by_lua_block { require("thumbnail_handler")() } }
    location = /header_filter {
      content_by_lua_block { ngx.say("body") }
      header_filter_by_lua_block { ngx.header["X-Lockup"] = require("handlers").phase_error():sub(1, 300) }
    }
%s
  }
}
]]

local HANDLERS = { "run", "process", "flood", "files", "raise", "hold", "many", "inmate", "pooled", "reset_pooled", "pool_stats",
  "pool_close" }

-- Starts nginx; returns a handle with .port, .dir and :stop(), or raises.
function nginx.start()
  local dir = helper.tmpdir()
  local locations = {}
  for _, name in ipairs(HANDLERS) do
    locations[#locations + 1] = string.format('    location = /%s { content_by_lua_block { require("handlers").%s() } }',
      name, name)
  end
  for _ = 1, 5 do
    local port = 20000 + math.random(0, 9999)
    local conf = string.format(CONFIG, MODULES, MODULES, dir, dir, dir, ROOT, ROOT, ROOT, ROOT, ROOT, port,
      table.concat(locations, "\n"))
    helper.write(dir .. "/nginx.conf", conf)
    local ok = os.execute(string.format("nginx -p %s -c %s/nginx.conf -e %s/error.log 2>%s/start.err",
      dir, dir, dir, dir))
    if ok then
      local self = setmetatable({ port = port, dir = dir }, { __index = nginx })
      assert(helper.eventually(function() return self:get("/ping") == "pong\n" end, 10), "nginx did not answer")
      return self
    end
  end
  error("nginx did not start: " .. (io.open(dir .. "/start.err"):read("a")))
end

-- curl's output for a request: body, then the HTTP status and time taken.
function nginx:curl(args)
  local p = io.popen(string.format("curl -s -o %s/body.out -w '%%{http_code} %%{time_total}' %s 'http://127.0.0.1:%d%s'",
    self.dir, args.flags or "", self.port, args.path))
  local status, took = p:read("a"):match("^(%d+) ([%d.]+)")
  p:close()
  local f = io.open(self.dir .. "/body.out", "rb")
  local body = f and f:read("a") or ""
  if f then f:close() end
  return body, tonumber(status), tonumber(took)
end

function nginx:get(path) return (self:curl { path = path }) end

-- The error log's lines so far.
function nginx:log()
  local f = io.open(self.dir .. "/error.log")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return text
end

function nginx:reload()
  assert(os.execute(string.format("nginx -p %s -c %s/nginx.conf -s reload 2>/dev/null", self.dir, self.dir)))
end

function nginx:stop()
  os.execute(string.format("nginx -p %s -c %s/nginx.conf -s quit 2>/dev/null", self.dir, self.dir))
  helper.eventually(function()
    return not io.open(self.dir .. "/nginx.pid")
  end, 10)
  os.execute("rm -rf " .. helper.shell_quote(self.dir))
end

return nginx
