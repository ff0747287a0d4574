package stores

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// go-redis logs some failures (a pool that cannot dial, a cluster node
// that fails) to the process's stderr through a global logger, outside
// the tool's progress stream: that breaks the one-JSON-event-per-line
// contract of --log-format json. Every such failure also reaches the
// caller as an error, which the tool reports, so the log lines are dropped.
func init() { redis.SetLogger(discardLogger{}) }

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...interface{}) {}
