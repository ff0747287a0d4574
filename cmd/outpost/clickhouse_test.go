package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestClickHouseCommandsEndToEnd drives the ClickHouse phase through the
// CLI, chosen as Outpost chooses it (CLICKHOUSE_ADDR set, no POSTGRES_URL):
// plan with the statements, apply under the Redis lease (both stores),
// verify, drift 3, a foreign dirty version 4, force, and the deployment
// prefix; the password never shows.
func TestClickHouseCommandsEndToEnd(t *testing.T) {
	const password = "S3cr3t-Pa55-xyzzy"
	ch := servertest.ClickHouse(t, servertest.WithClickHouseUser("migrator", password))
	ch.Exec(t, "CREATE DATABASE logs")
	srv := servertest.Redis(t)
	envs := redisEnv(srv)
	for k, v := range map[string]string{"CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_PROTOCOL": "http", "CLICKHOUSE_USERNAME": "migrator",
		"CLICKHOUSE_PASSWORD": password, "CLICKHOUSE_DATABASE": "logs", "DEPLOYMENT_ID": "prod"} {
		envs[k] = v
	}
	noSecret := func(r *result) {
		t.Helper()
		require.NotContains(t, r.stdout+r.stderr, password)
	}

	r := run(t, envs, "migrate", "plan", "--detailed-exitcode", "--show-sql")
	require.Equal(t, 2, r.code, r.stdout)
	lines := r.rep["migrations"].([]any)
	first := lines[0].(map[string]any)
	require.Equal(t, "clickhouse/000001_init", first["id"], "the ClickHouse phase runs first")
	require.Contains(t, first["statements"].([]any)[0].(map[string]any)["sql"], "CREATE TABLE IF NOT EXISTS prod_events")
	noSecret(r)

	r = run(t, envs, "migrate", "apply", "--yes")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, "applied", r.rep["outcome"])
	require.EqualValues(t, "prod_schema_migrations", r.rep["targets"].(map[string]any)["clickhouse"].(map[string]any)["version_table"])
	noSecret(r)

	r = run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "verified", r.rep["outcome"])

	ch.Exec(t, "ALTER TABLE logs.prod_attempts DROP INDEX idx_destination_type")
	r = run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 3, r.code, r.stdout)
	require.Equal(t, "DRIFT", errorCode(r))

	ch.Exec(t, "INSERT INTO logs.prod_schema_migrations (version, dirty, sequence) VALUES (3, 1, 9000000000000000000)")
	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 4, r.code, r.stdout)
	require.Equal(t, "DIRTY_DATABASE", errorCode(r))
	require.True(t, strings.Contains(r.rep["error"].(map[string]any)["message"].(string), "force 3 --yes"))

	ch.Exec(t, "ALTER TABLE logs.prod_attempts ADD INDEX idx_destination_type destination_type TYPE bloom_filter GRANULARITY 1")
	r = run(t, envs, "migrate", "force", "3", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "forced", r.rep["outcome"])
	r = run(t, envs, "migrate", "status", "--sql-only", "--detailed-exitcode")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "up_to_date", r.rep["outcome"])
	noSecret(r)
}

// A wrong ClickHouse password is 77 and never printed.
func TestClickHouseWrongPassword(t *testing.T) {
	ch := servertest.ClickHouse(t, servertest.WithClickHouseUser("migrator", "right-one"))
	envs := map[string]string{"CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_PROTOCOL": "http", "CLICKHOUSE_USERNAME": "migrator",
		"CLICKHOUSE_PASSWORD": "Wr0ng-Pa55-xyzzy", "CLICKHOUSE_DATABASE": "default"}
	r := run(t, envs, "migrate", "status", "--sql-only")
	require.Equal(t, 77, r.code, r.stdout)
	require.Equal(t, "PERMISSION_DENIED", errorCode(r))
	require.NotContains(t, r.stdout+r.stderr, "Wr0ng-Pa55-xyzzy")
}

// CLICKHOUSE_PROTOCOL other than native or http is 78, naming the setting,
// before any store is touched.
func TestClickHouseProtocolInvalid(t *testing.T) {
	envs := map[string]string{"CLICKHOUSE_ADDR": "127.0.0.1:9000", "CLICKHOUSE_PROTOCOL": "grpc"}
	r := run(t, envs, "migrate", "status", "--sql-only")
	require.Equal(t, 78, r.code, r.stdout)
	require.Equal(t, "clickhouse.protocol", r.rep["error"].(map[string]any)["details"].(map[string]any)["setting"])
	require.Contains(t, r.rep["msg"], "neither native nor http")
}
