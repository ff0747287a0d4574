package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// unfenced runs a write script without a fence (ARGV[1] "0", ARGV[2] "").
type unfenced struct{ s *goredis.Script }

func (u unfenced) Run(ctx context.Context, c goredis.Scripter, keys []string, args ...any) *goredis.Cmd {
	return u.s.Run(ctx, c, keys, append([]any{0, ""}, args...)...)
}

// updateAsApply runs updateScript with ARGV in terms of 002/003: the
// entity to set where missing ("" for none), then field, old, new triples
// of timestamps read with a value. It sends what apply sends when both are
// pending (002 is the pass's transform 0, bit 1; 003 transform 1, bit 2).
type updateAsApply struct{}

func (updateAsApply) Run(ctx context.Context, c goredis.Scripter, keys []string, args ...any) *goredis.Cmd {
	var own []any
	for i := 1; i+2 < len(args); i += 3 {
		own = append(own, 1, args[i], "1", args[i+1], args[i+2])
	}
	if e := args[0].(string); e != "" {
		own = append(own, 2, "entity", "0", "", e)
	}
	return unfenced{updateScript}.Run(ctx, c, keys, own...)
}

// Test-only access to the scripts and the write hook, for package redis_test.
var (
	CopyScript         = unfenced{copyScript}
	UpdateScript       = updateAsApply{}
	DeleteIfSameScript = unfenced{deleteIfSameScript}
	RestoreScript      = restoreScript
)

// SetBeforeWrite installs f as the hook that runs between a chunk's reads and
// its writes, and returns a function that removes it. Not safe to call while
// a pass runs.
func SetBeforeWrite(f func(ctx context.Context, keys []string)) (restore func()) {
	beforeWrite = f
	return func() { beforeWrite = nil }
}

// AppendHashPayload and RedisCRC64 build RESTORE payloads (rdb.go).
var (
	AppendHashPayload = appendHashPayload
	RedisCRC64        = redisCRC64
)

// AppendListpackPayload builds listpack RESTORE payloads (listpack.go).
var AppendListpackPayload = appendListpackPayload
