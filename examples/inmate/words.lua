-- A helper module of the inmate: require "words" finds it in the jail.
local M = {}

function M.count(text)
  local counts, total = {}, 0
  for w in text:lower():gmatch("%a+") do
    counts[w] = (counts[w] or 0) + 1
    total = total + 1
  end
  return counts, total
end

function M.top(counts, n)
  local list = {}
  for w, c in pairs(counts) do list[#list + 1] = { word = w, count = c } end
  table.sort(list, function(a, b) return a.count > b.count or (a.count == b.count and a.word < b.word) end)
  for i = n + 1, #list do list[i] = nil end
  return list
end

return M
