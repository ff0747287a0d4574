package main

// Issue #22, versions: a PostgreSQL database at a version newer than this
// tool knows is reported the same way by every command: apply and verify
// refuse it (65), plan and status say the tool is older than the data and
// exit 65 under --detailed-exitcode (status said up_to_date, exit 0).

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func TestVersionsDatabaseNewerThanTheTool(t *testing.T) {
	pg := servertest.Postgres(t)
	envs := map[string]string{"POSTGRES_URL": pg.URL}
	r := run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	_, err := pg.Connect(t).Exec(context.Background(), "UPDATE schema_migrations SET version = 11")
	require.NoError(t, err)
	const says = "schema_migrations records version 11, newer than the newest migration this tool knows (10)"

	for _, cmd := range []string{"status", "plan"} {
		r := run(t, envs, "migrate", cmd, "--sql-only")
		require.Equal(t, 0, r.code, r.stdout)
		require.Contains(t, r.rep["msg"], "this tool is older than the data: "+says, cmd)

		r = run(t, envs, "migrate", cmd, "--sql-only", "--detailed-exitcode")
		require.Equal(t, 65, r.code, r.stdout)
		require.Equal(t, "DATA_REFUSED", errorCode(r), cmd)
		require.Contains(t, r.rep["error"].(map[string]any)["message"], says, cmd)
		require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
	}
	for _, args := range [][]string{{"migrate", "apply", "--yes", "--sql-only"}, {"migrate", "verify", "--sql-only"}} {
		r := run(t, envs, args...)
		require.Equal(t, 65, r.code, r.stdout)
		require.Equal(t, "DATA_REFUSED", errorCode(r))
		require.Contains(t, r.rep["error"].(map[string]any)["message"], says)
	}
	var v int
	require.NoError(t, pg.Connect(t).QueryRow(context.Background(), "SELECT version FROM schema_migrations").Scan(&v))
	require.Equal(t, 11, v, "the store is untouched")
}
