package redismigrations

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Every script touches exactly one data key, so it runs on a cluster too:
// the v0 key and its v1 twin live in different slots and are never touched
// by one script. Scripts are binary-safe (Lua strings hold any bytes).
//
// Every write script is fenced (fencePrelude): ARGV[1] is the Unix time in
// ms, by the server's clock, past which this run's lease may have expired
// ("0": no fence), ARGV[2] the value this run put in the lock ("": not
// checked, else the last of KEYS is the lock). The script returns lockLost and
// writes nothing when the server's TIME has reached ARGV[1] or the lock
// holds something else. The time check works on a cluster too (the lock
// lives in another slot and cannot be read by the same script); the lock
// check is for a standalone server. A script's own ARGV start at 3.

// lockLost is what a fenced script returns when the lease is gone.
const lockLost = -3

const fencePrelude = `
local deadline = tonumber(ARGV[1])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) >= deadline then return -3 end
end
if ARGV[2] ~= '' then
  local t = redis.call('TYPE', KEYS[#KEYS]).ok
  if t ~= 'string' or redis.call('GET', KEYS[#KEYS]) ~= ARGV[2] then return -3 end
end
`

// copyScript creates the v1 twin unless it exists (a twin that exists was
// copied by an earlier run or written by the new server: never overwrite),
// with the v0 record's fields (already transformed for the migrations that
// run in the same pass) and its remaining TTL.
// KEYS[1] twin; ARGV[3] ttl in ms (<=0: none), or "@" and the Unix time
// in ms it expires at (the legacy key's own, so both expire in the same
// millisecond); ARGV[4..] field, value pairs. Returns 1 when created, 0 when
// the twin already existed.
var copyScript = redis.NewScript(fencePrelude + hsetFn + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
hset_from(KEYS[1], 4)
expire_as(KEYS[1], ARGV[3])
return 1
`)

// hsetFn defines, for the scripts that write whole records: hset_from,
// which sets the field, value pairs of ARGV from index i on in HSETs of
// at most 100 pairs (Lua's stack), and expire_as, which gives a key the
// expiry in copyScript's form ("@" and a Unix time in ms, a TTL in ms, or
// none).
const hsetFn = `
local function hset_from(key, i)
  local n = #ARGV
  while i <= n do
    local j = math.min(i + 199, n)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local function expire_as(key, ttl)
  if string.sub(ttl, 1, 1) == '@' then
    redis.call('PEXPIREAT', key, string.sub(ttl, 2))
  elseif tonumber(ttl) > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end
`

// updateScript edits a v1 hash in place, only if it still exists and every
// field read is still what was read (no stale overwrite, no re-created stub
// of a key that expired in between). HSET and HSETNX keep the key's TTL.
// KEYS[1] key; ARGV[3..] 5-tuples: bits (the transforms the edit is
// theirs), field, "1" when the field was read with the value old else "0",
// old, new. A field read is compared before anything is written and set
// with HSET; a field missing when read is set with HSETNX (one that
// appeared since is left as it is). Returns -1 key gone, -2 a field read
// changed since (nothing written), else the OR of the bits of the edits
// written.
var updateScript = redis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 3, #ARGV, 5 do
  if ARGV[i + 2] == '1' and redis.call('HGET', KEYS[1], ARGV[i + 1]) ~= ARGV[i + 3] then return -2 end
end
local function bor(a, b)
  local r, p = 0, 1
  while a > 0 or b > 0 do
    if a % 2 == 1 or b % 2 == 1 then r = r + p end
    a, b, p = math.floor(a / 2), math.floor(b / 2), p * 2
  end
  return r
end
local wrote = 0
for i = 3, #ARGV, 5 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 4])
    wrote = bor(wrote, tonumber(ARGV[i]))
  elseif redis.call('HSETNX', KEYS[1], ARGV[i + 1], ARGV[i + 4]) == 1 then
    wrote = bor(wrote, tonumber(ARGV[i]))
  end
end
return wrote
`)

// deleteIfSameScript deletes a v0 hash only if it still holds exactly the
// fields and values that were verified against its twin.
// KEYS[1] key; ARGV[3..] field, value pairs. Returns 1 deleted, 0 changed,
// -1 gone.
var deleteIfSameScript = redis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HLEN', KEYS[1]) * 2 ~= #ARGV - 2 then return 0 end
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i+1] then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
`)

// restoreScript writes one twin with RESTORE under the fence. KEYS[1] the
// twin; ARGV[3] its TTL argument, ARGV[4] "1" when that is an absolute
// time (ABSTTL), ARGV[5] the payload. Returns 1 created, 0 it existed, or
// the error's text (the caller tells a refused RESTORE from a bad key).
var restoreScript = redis.NewScript(fencePrelude + restoreFn + `
return restore(KEYS[1], ARGV[3], ARGV[4], ARGV[5])
`)

// restoreFn restores one twin: 1 created, 0 it existed, or the error's
// text. The scripts that restore twins share it.
const restoreFn = `
local function restore(key, ttl, abs, payload)
  local r
  if abs == '1' then
    r = redis.pcall('RESTORE', key, ttl, payload, 'ABSTTL')
  else
    r = redis.pcall('RESTORE', key, ttl, payload)
  end
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 7) == 'BUSYKEY' then return 0 end
    return r.err
  end
  return 1
end
`

// restoreBatchScript is restoreScript for many twins at once, for a
// standalone server (one keyspace, no slots): the fence is checked once
// for all of them. KEYS the twins, then the lock when ARGV[2] is set;
// ARGV[3..] per twin its TTL argument, "1" for ABSTTL, its payload.
// Returns one reply per twin as restoreScript's.
var restoreBatchScript = redis.NewScript(fencePrelude + restoreFn + `
local n = #KEYS
if ARGV[2] ~= '' then n = n - 1 end
local out = {}
for i = 1, n do
  out[i] = restore(KEYS[i], ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2])
end
return out
`)

// restoreCrossSlotScript is restoreBatchScript for a cluster: one
// master's twins of many slots at once. A cluster takes the declared KEYS
// of one slot only; the flag (Redis 7.0 on) lets the script write keys of
// other slots of the node it runs on, named in ARGV. KEYS[1] is the first
// twin (it routes the call); ARGV[3..] per twin its name, TTL argument, "1"
// for ABSTTL and payload. The lock lives elsewhere: only the deadline is
// checked. A server without script flags refuses to compile it, and the
// twins go one script each (restoreEach).
var restoreCrossSlotScript = redis.NewScript("#!lua flags=allow-cross-slot-keys\n" + fencePrelude + restoreFn + `
local out = {}
for a = 3, #ARGV, 4 do
  out[#out + 1] = restore(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
end
return out
`)

// UseOthers routes the set's writes through o (nil: through the client).
func (s *Set) UseOthers(o *scan.Others) { s.others = o }

// pipelined runs add for every key in one pipeline per master, through
// the watched writer when there is one.
func (s *Set) pipelined(ctx context.Context, keys []string, add func(pipe redis.Pipeliner, i int)) {
	if s.others != nil {
		s.others.Pipelined(ctx, keys, add)
		return
	}
	pipe := s.c.Pipeline()
	for i := range keys {
		add(pipe, i)
	}
	_, _ = pipe.Exec(ctx)
}

// New returns the migrations for the keyspace of client under prefix P
// ("<DEPLOYMENT_ID>:" or "").
func New(c redis.UniversalClient, prefix string) *Set {
	s := &Set{c: c, prefix: prefix, transforms: registry}
	s.payloads.New = func() any { return new([]byte) }
	return s
}

type scriptResult struct {
	val int64
	err error
}

// wroteBy says which scripts modified their key: by the convention every
// write script here follows, those that returned a positive number.
func wroteBy(cmds []*redis.Cmd) []bool {
	out := make([]bool, len(cmds))
	for i, c := range cmds {
		v, ok := c.Val().(int64)
		out[i] = c.Err() == nil && ok && v > 0
	}
	return out
}

// runScript runs one single-key script per op in a pipeline with EVALSHA
// (EVAL where the server has no EVALSHA for us: see luascript), loading
// the script when the server lost it (a restart, a failover) and
// retrying those ops. A per-key error (WRONGTYPE) is returned per op; a
// store error aborts. The lease is checked before each pipeline and by each
// script (see fencePrelude).
func (s *Set) runScript(ctx context.Context, sc *redis.Script, n int, op func(i int) ([]string, []any)) ([]scriptResult, error) {
	out := make([]scriptResult, n)
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	deadline, lockValue, lockKey := s.fenceArgs(ctx)
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds := make([]*redis.Cmd, len(todo))
		keys := make([][]string, len(todo))
		args := make([][]any, len(todo))
		first := make([]string, len(todo))
		if err := scan.CheckFence(ctx); err != nil {
			return nil, err
		}
		for j, i := range todo {
			var own []any
			keys[j], own = op(i)
			args[j] = append(append(make([]any, 0, 2+len(own)), deadline, lockValue), own...)
			if lockKey != "" {
				keys[j] = append(keys[j][:len(keys[j]):len(keys[j])], lockKey)
			}
			first[j] = keys[j][0]
		}
		s.others.ExpectScript(first)
		byEval := luascript.UsesEval(s.c)
		s.pipelined(ctx, first, func(pipe redis.Pipeliner, j int) {
			if byEval {
				cmds[j] = sc.Eval(ctx, pipe, keys[j], args[j]...)
			} else {
				cmds[j] = sc.EvalSha(ctx, pipe, keys[j], args[j]...)
			}
		})
		s.others.SettleScript(ctx, first, wroteBy(cmds))
		var again []int
		load := false
		for j, i := range todo {
			err := cmds[j].Err()
			switch {
			case err == nil:
				switch v := cmds[j].Val().(type) {
				case int64:
					if v == lockLost {
						return nil, lockLostError(deadline, lockKey)
					}
					out[i] = scriptResult{val: v}
				case string:
					// An error the script caught and returned.
					out[i] = scriptResult{err: serverError(v)}
				default:
					return nil, report.E(report.CodeInternal, "script reply %v", v)
				}
			case redis.HasErrorPrefix(err, "NOSCRIPT") && attempt < 2:
				again, load = append(again, i), true
			case !byEval && luascript.Missing(err, "evalsha"):
				// Renamed away or denied mid-run: the rest by EVAL.
				luascript.UseEval(s.c)
				again = append(again, i)
			case byEval && luascript.Missing(err, "eval"):
				return nil, luascript.Both(serverError("EVALSHA unavailable"), err)
			case isKeyError(err):
				out[i] = scriptResult{err: err}
			default:
				return nil, rediserr.Classify(err, "run script")
			}
		}
		if load {
			if err := sc.Load(ctx, s.c).Err(); err != nil {
				return nil, rediserr.Classify(err, "SCRIPT LOAD")
			}
		}
		todo = again
	}
	return out, nil
}
