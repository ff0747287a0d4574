package redismigrations

import "github.com/redis/go-redis/v9"

// Every script touches exactly one data key, so it runs on a cluster too:
// the v0 key and its v1 twin live in different slots and are never touched
// by one script. Scripts are binary-safe (Lua strings hold any bytes).
//
// On a standalone server a script is also fenced: KEYS[2] is the migration
// lock and the last ARGV the value this run put there; unless the lock
// still holds it the script writes nothing and returns lockLost. On a
// cluster the lock lives in another slot and cannot be read by the same
// script; there the lease is checked (scan.CheckFence) right before the
// writes are sent.

// lockLost is what a fenced script returns when the lease is gone.
const lockLost = -3

// fencePrelude sets n to the number of ARGV that are the script's own and
// returns lockLost unless the fence (when given) holds.
const fencePrelude = `
local n = #ARGV
if #KEYS > 1 then
  local t = redis.call('TYPE', KEYS[2]).ok
  if t ~= 'string' or redis.call('GET', KEYS[2]) ~= ARGV[n] then return -3 end
  n = n - 1
end
`

// copyScript creates the v1 twin unless it exists (a twin that exists was
// copied by an earlier run or written by the new server: never overwrite),
// with the v0 record's fields (already transformed for the migrations that
// run in the same pass) and its remaining TTL.
// KEYS[1] twin; ARGV[1] ttl in ms (<=0: none), or "@" and the Unix time
// in ms it expires at (the legacy key's own, so both expire in the same
// millisecond); ARGV[2..] field, value pairs. Returns 1 when created, 0 when
// the twin already existed.
var copyScript = redis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local i = 2
while i <= n do
  local j = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
if string.sub(ARGV[1], 1, 1) == '@' then
  redis.call('PEXPIREAT', KEYS[1], string.sub(ARGV[1], 2))
elseif tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
`)

// updateScript edits a v1 hash in place, only if it still exists and every
// field read is still what was read (no stale overwrite, no re-created stub
// of a key that expired in between). HSET and HSETNX keep the key's TTL.
// KEYS[1] key; ARGV[1] entity ("" = leave entity alone; else set if
// missing); ARGV[2..] triples field, expected old value, new value.
// Returns -1 key gone, -2 a field changed since it was read (nothing
// written), else a bitmask: 1 timestamps written, 2 entity set.
var updateScript = redis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 2, n, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i+1] then return -2 end
end
local wrote = 0
for i = 2, n, 3 do
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
var deleteIfSameScript = redis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HLEN', KEYS[1]) * 2 ~= n then return 0 end
for i = 1, n, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i+1] then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
`)

// restoreScript writes twins with RESTORE under the fence, on a standalone
// server: KEYS[1] the lock, KEYS[2..] the twins; ARGV[1] the lock's value,
// then per twin its TTL argument, "1" when that is an absolute time
// (ABSTTL), and the payload. Returns lockLost and writes nothing unless the
// lock holds the value, else one entry per twin: 1 created, 0 it existed,
// or the error's text.
var restoreScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'string' or redis.call('GET', KEYS[1]) ~= ARGV[1] then return -3 end
local out = {}
for i = 2, #KEYS do
  local a = 2 + (i - 2) * 3
  local r
  if ARGV[a + 1] == '1' then
    r = redis.pcall('RESTORE', KEYS[i], ARGV[a], ARGV[a + 2], 'ABSTTL')
  else
    r = redis.pcall('RESTORE', KEYS[i], ARGV[a], ARGV[a + 2])
  end
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 7) == 'BUSYKEY' then out[#out + 1] = 0 else out[#out + 1] = r.err end
  else
    out[#out + 1] = 1
  end
end
return out
`)
