-- byte_order: lt(a, b), whether id ``a`` sorts before ``b`` byte by byte, for other scripts
-- (never Lua's `<` on strings, which follows the server's locale collation).
local function lt(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
