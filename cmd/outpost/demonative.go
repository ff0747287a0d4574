package main

import (
	"strconv"
	"strings"

	"github.com/alicebob/miniredis/v2/server"
)

// The migrations' fenced copy runs one script per key (restoreScript in
// migrations/redismigrations/scripts.go: the fence check, then RESTORE of
// the twin). Even in one long-lived interpreter, gopher-lua and its nested
// calls were the largest part of the in-process store's work per key
// (OUTPOST_CPUPROFILE). The store runs that script in Go instead: the
// client still sends the same EVALSHA of the same text; the store
// recognises the text by its SHA1 and does what it says, step for step.
// A script whose text differs (a changed migration) is not recognised and
// runs in the interpreter, exactly, only slower; TestDemoStoreSameResultAsRedis
// fails then, so that this copy is brought up to date.
// TestDemoStoreNativeScriptAnswersLikeRedis runs the text on a real Redis
// and here, case by case.

// restoreScriptText is restoreScript's text, byte for byte.
const restoreScriptText = `
local deadline = tonumber(ARGV[1])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) >= deadline then return -3 end
end
if ARGV[2] ~= '' then
  local t = redis.call('TYPE', KEYS[2]).ok
  if t ~= 'string' or redis.call('GET', KEYS[2]) ~= ARGV[2] then return -3 end
end

local r
if ARGV[4] == '1' then
  r = redis.pcall('RESTORE', KEYS[1], ARGV[3], ARGV[5], 'ABSTTL')
else
  r = redis.pcall('RESTORE', KEYS[1], ARGV[3], ARGV[5])
end
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 7) == 'BUSYKEY' then return 0 end
  return r.err
end
return 1
`

// nativeScripts are the scripts run in Go, by the SHA1 of their text.
var nativeScripts = map[string]func(d *demoLua, c *demoConn, p *server.Peer, keys, argv []string) bool{}

func init() {
	nativeScripts[sha1Hex(restoreScriptText)] = (*demoLua).nativeRestore
}

// nativeRestore is restoreScript: KEYS[1] the twin, KEYS[2] the lock (when
// ARGV[2] is not ""); ARGV deadline, lock value, ttl, "1" for ABSTTL,
// payload. Returns -3 when the fence refuses, 1 created, 0 it existed, or
// RESTORE's error text. Arguments of another shape (which the migrations
// never send) go to the interpreter: false.
func (d *demoLua) nativeRestore(c *demoConn, p *server.Peer, keys, argv []string) bool {
	if len(argv) != 5 || len(keys) != 1+min(len(argv[1]), 1) {
		return false
	}
	deadline, err := strconv.ParseInt(argv[0], 10, 64)
	if err != nil {
		return false
	}
	f := d.f
	if deadline > 0 {
		now, err := f.nowMS(c)
		if err != nil {
			return false
		}
		if now >= deadline {
			p.WriteInt(-3)
			return true
		}
	}
	if argv[1] != "" {
		// TYPE then GET in the script: anything but a string holding
		// the value refuses, as GET's WRONGTYPE or nil does here.
		v, err := f.call(c, "GET", keys[1])
		if s, ok := v.(string); err != nil || !ok || s != argv[1] {
			p.WriteInt(-3)
			return true
		}
	}
	args := []string{"RESTORE", keys[0], argv[2], argv[4]}
	if argv[3] == "1" {
		args = append(args, "ABSTTL")
	}
	switch _, err := f.call(c, args...); {
	case err == nil:
		p.WriteInt(1)
	case strings.HasPrefix(err.Error(), "BUSYKEY"):
		p.WriteInt(0)
	default:
		p.WriteBulk(err.Error())
	}
	return true
}
