package redismigrations

import "context"

// Test-only access to the scripts and the write hook, for package redis_test.
var (
	CopyScript         = copyScript
	UpdateScript       = updateScript
	DeleteIfSameScript = deleteIfSameScript
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
