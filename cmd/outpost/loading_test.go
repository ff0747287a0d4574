package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// TestRedisStillLoading: a master still loading its data (after a restart)
// answers LOADING to everything. status and apply end 75 TEMPORARY,
// retryable, saying the server is loading, with nothing written; once it
// has loaded, apply completes and the data is exact.
func TestRedisStillLoading(t *testing.T) {
	ctx := context.Background()
	// 5 ms per key while loading: the seed's ~1,000 keys take ~5 s.
	srv := servertest.Redis(t, servertest.WithPersistence(), servertest.WithConfig("key-load-delay", "5000"),
		// Answer clients every KiB loaded (default: every 2 MiB).
		servertest.WithConfig("loading-process-events-interval-bytes", "1024"))
	c := srv.Client(t)
	o := rmSeedOptions(200)
	rmSeedRedis(t, srv, 200)
	// The data goes to the AOF's RDB base, which is what the delay slows.
	require.NoError(t, c.BgRewriteAOF(ctx).Err())
	require.Eventually(t, func() bool {
		info := c.Info(ctx, "persistence").Val()
		return strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0")
	}, 20*time.Second, 20*time.Millisecond)
	before := snapshot(t, c)
	srv.Stop(t)
	srv.StartLoading(t)
	envs := redisEnv(srv)
	for _, args := range [][]string{{"migrate", "status", "--redis-only"}, {"migrate", "apply", "--yes", "--redis-only"}} {
		r := run(t, envs, args...)
		require.Equal(t, 75, r.code, "%v: %s", args, r.stdout)
		e := r.rep["error"].(map[string]any)
		require.Equal(t, "TEMPORARY", e["code"], r.stdout)
		require.Equal(t, true, e["retryable"])
		require.Contains(t, e["message"], "LOADING", r.stdout)
	}
	srv.WaitReady(t, 60*time.Second)
	c = srv.Client(t)
	require.Equal(t, before, snapshot(t, c), "nothing written while the server was loading")
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)
}
