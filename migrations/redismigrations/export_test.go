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

// Test-only access to the scripts and the write hook, for package redis_test.
var (
	CopyScript         = unfenced{copyScript}
	UpdateScript       = unfenced{updateScript}
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
