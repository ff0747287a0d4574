package redismigrations

import "github.com/redis/go-redis/v9"

// Every script touches exactly one key, so it runs on a cluster too: the v0
// key and its v1 twin live in different slots and are never touched by one
// script. Scripts are binary-safe (Lua strings hold any bytes).

// copyScript creates the v1 twin unless it exists (a twin that exists was
// copied by an earlier run or written by the new server: never overwrite),
// with the v0 record's fields (already transformed for the migrations that
// run in the same pass) and its remaining TTL.
// KEYS[1] twin; ARGV[1] ttl in ms (<=0: none); ARGV[2..] field, value pairs.
// Returns 1 when created, 0 when the twin already existed.
var copyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = #ARGV
local i = 2
while i <= n do
  local j = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`)

// updateScript edits a v1 hash in place, only if it still exists and every
// field read is still what was read (no stale overwrite, no re-created stub
// of a key that expired in between). HSET and HSETNX keep the key's TTL.
// KEYS[1] key; ARGV[1] entity ("" = leave entity alone; else set if
// missing); ARGV[2..] triples field, expected old value, new value.
// Returns -1 key gone, -2 a field changed since it was read (nothing
// written), else a bitmask: 1 timestamps written, 2 entity set.
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 2, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i+1] then return -2 end
end
local wrote = 0
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+2])
  wrote = 1
end
if ARGV[1] ~= '' and redis.call('HSETNX', KEYS[1], 'entity', ARGV[1]) == 1 then
  wrote = wrote + 2
end
return wrote
`)

// deleteIfSameScript deletes a v0 hash only if it still holds exactly the
// fields and values that were verified against its twin.
// KEYS[1] key; ARGV field, value pairs. Returns 1 deleted, 0 changed, -1 gone.
var deleteIfSameScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HLEN', KEYS[1]) * 2 ~= #ARGV then return 0 end
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i+1] then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
`)
