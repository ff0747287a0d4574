package main

// Issue #15, item 6: a repair path. When verify finds twins missing or
// wrong (any cause), `apply --repair` redoes those records and verifies
// them, so an operator is never stuck between `apply` saying up_to_date
// and `verify` exiting 3.

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

func TestReliabilityRepair(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o := seedTenants(t, c, 500)
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)

	var twins []string
	require.NoError(t, seedtest.ScanAll(ctx, c, func(keys []string) error {
		for _, k := range keys {
			if strings.HasPrefix(k, "tenant:{") && !strings.HasSuffix(k, ":destinations") {
				twins = append(twins, k)
			}
		}
		return nil
	}))
	require.Greater(t, len(twins), 100)
	broken := 0
	for i, k := range twins[:100] {
		switch i % 4 {
		case 0: // missing
			require.NoError(t, c.Del(ctx, k).Err())
		case 1: // a field differs
			require.NoError(t, c.HSet(ctx, k, "id", "wrong").Err())
		case 2: // 003 undone
			require.NoError(t, c.HDel(ctx, k, "entity").Err())
		case 3: // 002 undone
			require.NoError(t, c.HSet(ctx, k, "created_at", "2025-01-02T03:04:05Z").Err())
		}
		broken++
	}
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 3, v.code, v.stdout)
	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "up_to_date", r.rep["outcome"], "a plain apply has nothing to do: the stuck state --repair is for")

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--repair")
	require.Equal(t, 0, r.code, r.stdout)
	var redone float64
	for _, m := range r.rep["migrations"].([]any) {
		l := m.(map[string]any)
		if cs, ok := l["counts"].(map[string]any); ok {
			redone += cs["changed"].(float64)
		}
		require.Equal(t, "applied", l["state"], l["reason"])
	}
	require.GreaterOrEqual(t, redone, float64(broken), r.stdout)
	requireMigrated(t, c, o)
	v = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
	// Nothing left: a second repair redoes nothing.
	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--repair")
	require.Equal(t, 0, r.code, r.stdout)
	for _, m := range r.rep["migrations"].([]any) {
		if cs, ok := m.(map[string]any)["counts"].(map[string]any); ok {
			require.Zero(t, cs["changed"].(float64), r.stdout)
		}
	}
}
