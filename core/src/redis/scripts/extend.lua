-- Extends leases held by their token. KEYS[1]: K:active. ARGV: K, lease_ms, then id, token pairs.
-- Returns 1 (held) or 0 per pair.
local K = ARGV[1]
local deadline = now_ms() + tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = jkey(K, id)
  if rcall('HGET', jk, 'state') == 'active' and rcall('HGET', jk, 'tok') == token then
    rcall('ZADD', KEYS[1], deadline, id)
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
return out
