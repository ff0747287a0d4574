package main

// Issue #22, developer commands that cannot touch real data by accident:
// demo uses a real store only when a flag names it (never REDIS_HOST or
// POSTGRES_URL from the environment) and asks before migrating a
// non-empty one; dev seed --flush empties only the selected database and
// asks first. Both print their target before anything else.

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestDemoIgnoresTheEnvironment: production settings in the environment
// (REDIS_HOST, POSTGRES_URL) do not make demo touch those stores: it runs
// on its in-process Redis and the real one is unchanged.
func TestDemoIgnoresTheEnvironment(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	seedTenants(t, c, 50)
	before := snapshot(t, c)
	envs := redisEnv(srv)
	envs["POSTGRES_URL"] = "postgres://u:p@127.0.0.1:1/prod"
	r := run(t, envs, "demo", "--tenants", "50")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, "completed", r.rep["outcome"])
	require.Contains(t, r.stderr, "demo ignores REDIS_HOST, REDIS_PORT, POSTGRES_URL")
	require.Contains(t, r.stderr, "demo target: the in-process Redis")
	requireSame(t, before, snapshot(t, c), "the store named by the environment must be untouched")
}

// TestDemoRealStoreNeedsYes: --redis-host naming a non-empty Redis is
// refused without --yes and no terminal (64, nothing changed, the target
// printed first); with --yes the demo migrates it.
func TestDemoRealStoreNeedsYes(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	o := seedTenants(t, c, 50)
	before := snapshot(t, c)
	args := []string{"demo", "--redis-host", srv.Host, "--redis-port", itoa(srv.Port)}
	r := run(t, nil, args...)
	require.Equal(t, 64, r.code, r.stdout)
	require.Equal(t, "CONFIRMATION_REQUIRED", errorCode(r))
	require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "needs --yes")
	require.Contains(t, r.stderr, "demo target: the Redis at "+srv.Addr+" (database 0, ")
	requireSame(t, before, snapshot(t, c), "refused: untouched")

	r = run(t, nil, append(args, "--yes")...)
	require.Equal(t, 0, r.code, r.stdout)
	requireMigrated(t, c, o)
}

// TestDevSeedFlushesOnlyItsDatabase: with REDIS_DATABASE=1, dev seed
// --flush asks (64 without a terminal or --yes, nothing flushed) and with
// --yes empties database 1 only: database 0 keeps every key.
func TestDevSeedFlushesOnlyItsDatabase(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c0 := srv.Client(t)
	o1 := *srv.Options()
	o1.DB = 1
	c1 := redis.NewClient(&o1)
	t.Cleanup(func() { _ = c1.Close() })
	ctx := context.Background()
	seedTenants(t, c0, 50)
	before := snapshot(t, c0)
	require.NoError(t, c1.Set(ctx, "db1-key", "x", 0).Err())

	envs := redisEnv(srv)
	envs["REDIS_DATABASE"] = "1"
	r := run(t, envs, "dev", "seed", "--tenants", "10", "--flush")
	require.Equal(t, 64, r.code, r.stdout)
	require.Equal(t, "CONFIRMATION_REQUIRED", errorCode(r))
	require.Contains(t, r.stderr, "dev seed target: the Redis at "+srv.Addr+", database 1 (1 keys)")
	require.EqualValues(t, 1, c1.Exists(ctx, "db1-key").Val(), "nothing flushed without --yes")

	r = run(t, envs, "dev", "seed", "--tenants", "10", "--flush", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	require.Zero(t, c1.Exists(ctx, "db1-key").Val(), "database 1 was flushed")
	require.Positive(t, c1.DBSize(ctx).Val(), "and seeded")
	requireSame(t, before, snapshot(t, c0), "database 0 must be untouched (it was FLUSHALL)")
	require.True(t, strings.Index(r.stderr, "dev seed target") >= 0)
}
