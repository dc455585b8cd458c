-- The conditional deduct in Redis: take ARGV[1] from the balance at KEYS[1]
-- only if the balance is at least that much.  Returns the balance after, or
-- -1 (insufficient funds, nothing changed).  A script runs atomically, and
-- with appendfsync always its write is fsynced before the reply.
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = tonumber(ARGV[1])
if balance >= n then
  return redis.call('DECRBY', KEYS[1], n)
end
return -1
