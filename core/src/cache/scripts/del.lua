-- Deletes keys with their tag entries; how many values existed.
-- ARGV: base, keys...
local base = ARGV[1]
local n = 0
for i = 2, #ARGV do
  n = n + remove_key(base, ARGV[i])
end
return n
