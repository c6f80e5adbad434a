-- luacheck settings (`make lint`).
std = "lua54"
max_line_length = 140 -- specs and benches hold long literal cases
files["lua"] = { max_line_length = 120 }
files["spec"] = { std = "+busted" }
exclude_files = { "build*", "rockspec" }
