-- Drives an interactive program in a box line by line: Lua's own REPL
-- (`lua5.4 -i` in debian-lua:local) started with box:spawn, fed one line at
-- a time, each answer read back as it comes; beside it, a step in the same
-- box, and a look at the box's processes. Then the same REPL on a terminal,
-- where Ctrl-C interrupts a runaway loop and the REPL goes on.
--
--   lua5.4 examples/repl.lua            (make example runs it)
local lockup = require "lockup"

local docker = assert(lockup.connect())
local box = assert(docker:start { image = "debian-lua:local" })

-- stdout unbuffered: on a pipe, C's stdio would hold the answers back
local repl = assert(box:spawn({ "lua5.4", "-e", "io.stdout:setvbuf('no')", "-i" }))

-- Reads stdout until the REPL prompts again: what came before the prompt.
local function until_prompt(proc)
  local out = ""
  repeat
    local chunk, err = proc:read("any", 10)
    if not chunk then error("the REPL did not answer: " .. err) end
    out = out .. chunk
  until out:sub(-2) == "> " or out:sub(-3) == ">> "
  return (out:gsub(">?> $", ""))
end

-- One line in, its answer out (the REPL's line editor echoes the line
-- first); errors come on stderr.
local function ask(line)
  assert(repl:write(line .. "\n"))
  local answer = until_prompt(repl):gsub("^[^\n]*\n", "", 1)
  local err = repl:read_stderr("any", 0.05)
  return answer .. (err or "")
end

print((until_prompt(repl):gsub("\n$", ""))) -- the banner
for _, line in ipairs {
  "x = 6 * 7",
  "print(x)",
  "for i = 1, 3 do io.write(i, ' ') end print()",
  "print(io.open('/etc/hostname') and 'a file system of its own' or '?')",
  "error('boom')",
  "print(x + 1)", -- the REPL went on after the error
} do
  io.write("> ", line, "\n", ask(line))
end

-- a step in the same box while the REPL runs: each goes its own way
print(assert(box:run("echo a step beside it, in the same box")).stdout)
for _, p in ipairs(assert(box:processes())) do
  print(string.format("pid %-4d %-8s %s%s", p.pid, p.name, table.concat(p.argv, " "),
    p.proc == repl and "   <- the REPL" or ""))
end

assert(repl:close_stdin()) -- end of input: the REPL exits
print(assert(repl:wait(10)))

-- The same REPL on a terminal: Ctrl-C reaches the loop it runs.
local tty = assert(box:spawn({ "lua5.4", "-i" }, { tty = true, cols = 100, rows = 30 }))
until_prompt(tty)
assert(tty:write("while true do end\n"))
assert(tty:read("line", 10)) -- the terminal echoes the line: the loop runs
assert(tty:write("\3")) -- Ctrl-C
local out = until_prompt(tty)
print("on a terminal, Ctrl-C: " .. (out:match("interrupted!") or out))
assert(tty:write("print('still here')\n"))
print((until_prompt(tty):gsub("\27%[[%d;?]*%a", ""):gsub("\r", ""):gsub("^[^\n]*\n", "")))
assert(tty:close_stdin()) -- Ctrl-D
print(assert(tty:wait(10)))
box:stop()
