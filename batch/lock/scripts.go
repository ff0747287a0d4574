package lock

import (
	"fmt"

	"github.com/redis/go-redis/v9"
)

// current reads the lock key without tripping over a non-string value:
// returns (value or "", type).
const current = `
local function current(k)
  local t = redis.call('TYPE', k).ok
  if t == 'string' then return redis.call('GET', k), t end
  return '', t
end
`

// acquireScript: KEYS[1] lock, KEYS[2] fence counter (same slot); ARGV[1]
// and ARGV[2] the value around its token, ARGV[3] the TTL in ms.
// Returns {1, value, token} or, when busy, {0, value, pttl, type}. Drawing
// the token and setting the key in one script means a token is only ever
// spent on a successful acquisition, and tokens grow with acquisitions.
var acquireScript = redis.NewScript(current + `
local v, t = current(KEYS[1])
if t ~= 'none' then
  return {0, v, redis.call('PTTL', KEYS[1]), t}
end
local n = redis.call('INCR', KEYS[2])
v = ARGV[1] .. string.format('%d', n) .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3], 'NX')
return {1, v, n}
`)

// guarded prefixes a script with the fence: unless KEYS[1] holds ARGV[1] it
// returns {0, what it holds, its type} and writes nothing.
func guarded(body string) *redis.Script {
	return redis.NewScript(current + `
local v, t = current(KEYS[1])
if v ~= ARGV[1] then return {0, v, t} end
` + body)
}

// renewScript: compare-and-extend; ARGV[2] is the TTL in ms.
var renewScript = guarded(`
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, '', t}
`)

// releaseScript: compare-and-delete.
var releaseScript = guarded(`
redis.call('DEL', KEYS[1])
return {1, '', t}
`)

// hsetScript: KEYS[2] the hash, ARGV[2..] field/value pairs. HSET goes in
// slices so that unpack stays far below Lua's stack limit.
var hsetScript = guarded(`
local i = 2
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('HSET', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
return {1, '', t}
`)

// delScript: KEYS[2..] the keys to delete.
var delScript = guarded(`
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return {1, '', t}
`)

// fenceReply decodes {ok, value, type} from a guarded script.
func fenceReply(res []any) (ok bool, raw, typ string, err error) {
	if len(res) < 3 {
		return false, "", "", fmt.Errorf("lock: unexpected script reply %v", res)
	}
	n, _ := res[0].(int64)
	raw, _ = res[1].(string)
	typ, _ = res[2].(string)
	return n == 1, raw, typ, nil
}
