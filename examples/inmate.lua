-- Inmates: call Lua functions that run in a throwaway container as if they
-- were local (Hoosegow's idea, for Lua). The functions are in examples/inmate/.
--
--   lua5.4 examples/inmate.lua      (make example runs it)
--
-- The jail's image (lockup-inmate:<hash>) is built on debian-lua:local (made
-- by scripts/setup.sh) the first time, and again only when the inmate
-- directory or lockup's runtime changes. Each call runs in a fresh hardened box.
local lockup = require "lockup"

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local jail = lockup.inmate{ dir = here .. "/inmate", on_progress = lockup.progress("building the jail") }
print(jail.image)

print(jail:reverse("foobar"))                                  --> raboof
print(jail:count(3, function(v) io.write(v, " ") end))         --> 1 2 3 done

local top, total = jail:top_words("the cat and the hat and the bat", 2)
for _, w in ipairs(top) do io.write(w.word, "=", w.count, " ") end
print("of", total)                                              --> the=3 and=2 of 8

-- Errors raised in the jail come back with the jail's traceback.
local ok, err = pcall(jail.top_words, jail, nil)
print(ok, err.kind, err.message)                                --> false error /inmate/words.lua:...

-- Calls from several coroutines run at once, each in its own box.
print(lockup.run(
  function() return jail:reverse("one") end,
  function() return jail:reverse("two") end,
  function() return jail:reverse("three") end))                 --> eno owt eerht
