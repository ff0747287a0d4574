package redismigrations

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
)

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
	s := &Set{c: c, prefix: prefix}
	s.payloads.New = func() any { return new([]byte) }
	return s
}

type scriptResult struct {
	val int64
	err error
}

// runScript runs one single-key script per op in a pipeline with EVALSHA,
// loading the script when the server lost it (a restart, a failover) and
// retrying those ops. A per-key error (WRONGTYPE) is returned per op; a
// store error aborts.
func (s *Set) runScript(ctx context.Context, sc *redis.Script, n int, op func(i int) ([]string, []any)) ([]scriptResult, error) {
	out := make([]scriptResult, n)
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds := make([]*redis.Cmd, len(todo))
		keys := make([][]string, len(todo))
		args := make([][]any, len(todo))
		first := make([]string, len(todo))
		for j, i := range todo {
			keys[j], args[j] = op(i)
			first[j] = keys[j][0]
		}
		s.pipelined(ctx, first, func(pipe redis.Pipeliner, j int) {
			cmds[j] = sc.EvalSha(ctx, pipe, keys[j], args[j]...)
		})
		var again []int
		for j, i := range todo {
			err := cmds[j].Err()
			switch {
			case err == nil:
				v, _ := cmds[j].Int64()
				out[i] = scriptResult{val: v}
			case redis.HasErrorPrefix(err, "NOSCRIPT") && attempt < 2:
				again = append(again, i)
			case isKeyError(err):
				out[i] = scriptResult{err: err}
			default:
				return nil, rediserr.Classify(err, "run script")
			}
		}
		if len(again) > 0 {
			if err := sc.Load(ctx, s.c).Err(); err != nil {
				return nil, rediserr.Classify(err, "SCRIPT LOAD")
			}
		}
		todo = again
	}
	return out, nil
}
