package main

// Issue #22, a record of a few huge values: it passes the field count, and
// was read whole once (50 MiB in the tool's memory, or the connection
// closed) before it was found too big. The size probe now asks its bytes,
// so it is never read whole.

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// TestServerLimitsFewHugeValuesMemory: a legacy destination of four
// fields, one of 50 MiB, under `proto-max-bulk-len 16mb` (readable, not
// writable): apply exits 4 MIGRATION_FAILED, not retryable, naming the key,
// the field, its size and the limit, with the tool's peak RSS (VmHWM) at
// most 40 MiB, so the value was never read whole; every other key is
// migrated exactly; the rerun ends the same; with the limit raised it
// completes.
func TestServerLimitsFewHugeValuesMemory(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	o := seedTenants(t, c, 40)
	const big, twin = "tenant:fewtenant:destination:few", "tenant:{fewtenant}:destination:few"
	huge := strings.Repeat("0123456789abcdef", 50<<20/16)
	require.NoError(t, c.HSet(ctx, big, "id", "few", "type", "webhook", "created_at", "2025-01-02T03:04:05Z", "config", huge).Err())
	require.NoError(t, c.ConfigSet(ctx, "proto-max-bulk-len", "16mb").Err())

	for attempt := 1; attempt <= 2; attempt++ {
		code, rss := runRSS(t, srv, "migrate", "apply", "--yes", "--redis-only")
		t.Logf("attempt %d: apply with a 50 MiB value: peak RSS %.1f MiB", attempt, float64(rss)/1024)
		require.Equal(t, 4, code)
		require.LessOrEqual(t, rss, int64(40<<10), "peak RSS %d KiB: the value was read whole", rss)
		r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
		require.Equal(t, 4, r.code, r.stdout)
		require.Equal(t, "MIGRATION_FAILED", errorCode(r))
		require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
		issues := issuesOf(t, r, "001_hash_tags")
		require.Len(t, issues, 1)
		require.Equal(t, big, issues[0]["key"])
		require.Equal(t, "config", issues[0]["field"])
		require.Contains(t, issues[0]["reason"], strconv.Itoa(len(huge))+" bytes")
		require.Contains(t, issues[0]["reason"], "proto-max-bulk-len")
		require.Zero(t, c.Exists(ctx, twin).Val())
		requireMigratedBut(t, c, o, "fewtenant")
		requireNoTempKeys(t, c)
	}

	require.NoError(t, c.ConfigSet(ctx, "proto-max-bulk-len", "512mb").Err())
	r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
	require.Equal(t, huge, c.HGet(ctx, twin, "config").Val())
	require.Equal(t, "1735787045000", c.HGet(ctx, twin, "created_at").Val())
	requireMigratedBut(t, c, o, "fewtenant")
	requireNoTempKeys(t, c)
}

// TestServerLimitsRepairAndCleanup: the real CLI, `apply --repair` and
// `cleanup` past `client-output-buffer-limit normal 8mb 0 0` (lowered
// after apply copied everything): a big twin that differs (3000 fields) is
// re-copied piece by piece; a record with a 12 MiB value cannot be
// compared: named with its field, size and limit, exit 3 DRIFT, not
// retryable (they stopped with 69 naming no key). Cleanup deletes every
// other legacy record and keeps that one, the same on the rerun; with the
// limit raised it completes.
func TestServerLimitsRepairAndCleanup(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o := seedTenants(t, c, 40)
	const wide, wideTwin = "tenant:widetenant:destination:w", "tenant:{widetenant}:destination:w"
	const huge = "tenant:hugetenant:destination:h"
	args := []any{"id", "w", "type", "webhook", "created_at", "2025-01-02T03:04:05Z"}
	for i := range 3000 {
		args = append(args, "f"+strconv.Itoa(i), "value-"+strconv.Itoa(i))
	}
	require.NoError(t, c.HSet(ctx, wide, args...).Err())
	value := strings.Repeat("0123456789abcdef", 12<<20/16)
	require.NoError(t, c.HSet(ctx, huge, "id", "h", "type", "webhook", "created_at", "2025-01-02T03:04:05Z", "config", value).Err())
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", "normal 8mb 0 0").Err())
	require.NoError(t, c.HSet(ctx, wideTwin, "f17", "wrong").Err())

	requireHugeNamed := func(r *result, code int) {
		t.Helper()
		require.Equal(t, code, r.code, "%s\n%s", r.stdout, r.stderr)
		require.Equal(t, "DRIFT", errorCode(r))
		require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
		issues := issuesOf(t, r, "001_hash_tags")
		require.Len(t, issues, 1, "%v", issues)
		require.Equal(t, huge, issues[0]["key"])
		require.Equal(t, "config", issues[0]["field"])
		require.Contains(t, issues[0]["reason"], strconv.Itoa(len(value))+" bytes")
		require.Contains(t, issues[0]["reason"], "client-output-buffer-limit")
	}
	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--repair")
	requireHugeNamed(r, 3)
	require.Equal(t, "value-17", c.HGet(ctx, wideTwin, "f17").Val(), "re-copied")
	require.EqualValues(t, 3004, c.HLen(ctx, wideTwin).Val())

	for attempt := 1; attempt <= 2; attempt++ {
		r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
		requireHugeNamed(r, 3)
		require.Zero(t, c.Exists(ctx, wide).Val(), "deleted")
		require.EqualValues(t, len(value), c.HStrLen(ctx, huge, "config").Val(), "kept")
	}
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", "normal 0 0 0").Err())
	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Zero(t, c.Exists(ctx, huge).Val())
	requireMigratedAfterCleanupBut(t, c, o, "widetenant", "hugetenant")
}

// requireMigratedAfterCleanupBut is requireMigratedBut after a cleanup.
func requireMigratedAfterCleanupBut(t *testing.T, c redis.UniversalClient, o seed.Options, extra ...string) {
	t.Helper()
	requireCheckedBut(t, c, o, seedtest.ExpectAfterCleanup, extra...)
}
