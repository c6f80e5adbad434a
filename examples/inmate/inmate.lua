-- The inmate of examples/inmate.lua: the functions a jail offers. This
-- directory is copied into the jail's image and is on its package.path, so it
-- may hold more modules (words.lua here) and data files.
local words = require "words"

local M = {}

function M.reverse(s)
  return s:reverse()
end

-- Yields 1..n as it goes (the host's callback sees each at once), then "done".
function M.count(n)
  for i = 1, n do coroutine.yield(i) end
  return "done"
end

-- The kind of function to keep away from the host: it parses whatever text it
-- is given. Returns the n most frequent words and the count of all words.
function M.top_words(text, n)
  local counts, total = words.count(text)
  return words.top(counts, n or 3), total
end

return M
