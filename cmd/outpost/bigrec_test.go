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

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
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
