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

// SetFalsePositive makes the written filter answer yes for the keys f says
// yes to; it returns a function that removes f. Not safe while a pass runs.
func SetFalsePositive(f func(key string) bool) (restore func()) {
	falsePositive = f
	return func() { falsePositive = nil }
}
