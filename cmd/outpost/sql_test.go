package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestSQLCommandsEndToEnd drives the SQL phase through the CLI: plan,
// apply with a target, apply, verify, status, drift, dirty, force.
func TestSQLCommandsEndToEnd(t *testing.T) {
	pg := servertest.Postgres(t)
	envs := map[string]string{"POSTGRES_URL": pg.URL}

	r := run(t, envs, "migrate", "plan", "--sql-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code, r.stdout)
	require.Len(t, r.rep["migrations"], 10)

	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--target", "sql/000004")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	require.EqualValues(t, 4, r.rep["summary"].(map[string]any)["applied"])

	r = run(t, envs, "migrate", "status", "--sql-only")
	require.Equal(t, "pending", r.rep["outcome"])

	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	require.Equal(t, true, r.rep["changed"])

	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, "up_to_date", r.rep["outcome"])
	require.Equal(t, false, r.rep["changed"])

	r = run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "verified", r.rep["outcome"])

	conn := pg.Connect(t)
	ctx := context.Background()
	_, err := conn.Exec(ctx, "ALTER TABLE attempts DROP COLUMN destination_type")
	require.NoError(t, err)
	r = run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 3, r.code)
	require.Equal(t, "DRIFT", errorCode(r))

	_, err = conn.Exec(ctx, "UPDATE schema_migrations SET version = 7, dirty = true")
	require.NoError(t, err)
	r = run(t, envs, "migrate", "status", "--sql-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code)
	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 4, r.code)
	require.Equal(t, "DIRTY_DATABASE", errorCode(r))
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "force")

	r = run(t, envs, "migrate", "force", "7")
	require.Equal(t, 64, r.code, "force needs --yes without a terminal")
	r = run(t, envs, "migrate", "force", "7", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "forced", r.rep["outcome"])
	var v int
	var dirty bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT version, dirty FROM schema_migrations").Scan(&v, &dirty))
	require.Equal(t, 7, v)
	require.False(t, dirty)
}

// TestSQLPhaseRunsWhenALogStoreIsConfigured: the scope rule of Outpost's own
// migrate. Without POSTGRES_URL, apply migrates Redis and skips the SQL phase
// visibly (targets.sql not_configured); with it, SQL runs first.
func TestSQLPhaseRunsWhenALogStoreIsConfigured(t *testing.T) {
	srv := servertest.Redis(t)
	r := run(t, redisEnv(srv), "migrate", "apply", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	require.Len(t, r.rep["migrations"], 3)
	tg := r.rep["targets"].(map[string]any)
	require.Equal(t, []any{"redis"}, tg["scope"])
	require.Equal(t, "not_configured", tg["sql"].(map[string]any)["state"])
	require.Nil(t, tg["postgres"])

	pg := servertest.Postgres(t)
	envs := redisEnv(srv)
	envs["POSTGRES_URL"] = pg.URL
	r = run(t, envs, "migrate", "apply", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	require.Len(t, r.rep["migrations"], 13)
	require.Equal(t, "sql", r.rep["migrations"].([]any)[0].(map[string]any)["backend"], "SQL runs first")
	tg = r.rep["targets"].(map[string]any)
	require.Equal(t, map[string]any{"state": "configured", "store": "postgres"}, tg["sql"])
}
