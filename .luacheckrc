-- luacheck settings (`make lint`).
std = "lua54"
max_line_length = 140 -- specs and benches hold long literal cases
files["lua"] = { max_line_length = 120 }
files["spec"] = { std = "+busted" }
exclude_files = { "build*", "rockspec" }
-- Code that runs inside nginx (LuaJIT): its `ngx` API and 5.1's unpack.
files["examples/openresty"] = { std = "luajit+ngx_lua" }
files["spec/fixtures/openresty"] = { std = "luajit+ngx_lua" }
