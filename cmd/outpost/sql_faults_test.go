package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
)

// TestFaultPostgresConnectionCutMidBackfill: the server terminates the
// migration's connection in the middle of migration 5's backfill (as a
// failover or an administrator would). The run ends with a valid report
// and a retryable code; the rerun resumes from the committed checkpoint and
// the log ends exactly as one clean run leaves it.
func TestFaultPostgresConnectionCutMidBackfill(t *testing.T) {
	ctx := context.Background()
	pg := servertest.Postgres(t)
	envs := map[string]string{"POSTGRES_URL": pg.URL}
	r := run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--target", "4")
	require.Equal(t, 0, r.code, r.stdout)
	conn := pg.Connect(t)
	st, err := seed.WritePostgres(ctx, conn, seed.PGOptions{Version: 4, Events: 60000, DeliveriesPerEvent: 2, OrphanRatio: 0.01, Seed: 7})
	require.NoError(t, err)

	// Apply in-process, so that the test can watch the checkpoint table and
	// cut the connection once some batches are committed.
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env{
			args:      []string{"--output", "json", "--log-format", "json", "migrate", "apply", "--yes", "--sql-only"},
			lookupEnv: func(k string) (string, bool) { v, ok := envs[k]; return v, ok },
			stdin:     bytes.NewReader(nil), stdout: &out, stderr: &errb,
		})
	}()
	cut := false
	deadline := time.Now().Add(60 * time.Second)
	for !cut && time.Now().Before(deadline) {
		var doneRows int64
		err := conn.QueryRow(ctx, "SELECT coalesce(max(done), 0) FROM outpost_migrate_checkpoint WHERE version = 5").Scan(&doneRows)
		if err == nil && doneRows >= 20000 {
			var n int
			require.NoError(t, conn.QueryRow(ctx,
				"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'outpost-migrate' AND pid <> pg_backend_pid()").Scan(&n))
			cut = n > 0
			if cut {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("apply ended (exit %d) before the connection could be cut: %s", code, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.True(t, cut, "the backfill never got under way")
	code := <-done
	first := &result{code: code, stdout: out.String(), stderr: errb.String()}
	checkReport(t, first)
	require.Contains(t, []int{report.ExitUnavailable, report.ExitTempFail}, code, "a cut connection is a retryable store failure: %s", first.stdout)
	require.Equal(t, true, first.rep["error"].(map[string]any)["retryable"])

	var partial bool
	var version int
	require.NoError(t, conn.QueryRow(ctx, "SELECT version, dirty FROM schema_migrations").Scan(&version, &partial))
	require.Equal(t, 5, version)
	require.True(t, partial, "version 5 stays marked in progress until its last step")
	r = run(t, envs, "migrate", "status", "--sql-only")
	require.Contains(t, lastLine(r.stdout), `"state":"partial"`)

	second := run(t, envs, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 0, second.code, second.stdout)
	var m5 map[string]any
	for _, m := range second.rep["migrations"].([]any) {
		if m.(map[string]any)["version"] == json.Number("5") || m.(map[string]any)["version"] == float64(5) {
			m5 = m.(map[string]any)
		}
	}
	require.NotNil(t, m5)
	require.Equal(t, true, m5["checkpoint"].(map[string]any)["resumed"], "the rerun resumes the backfill")

	// Every surviving attempt carries its event's columns; orphans are gone;
	// nothing else was lost.
	var attempts, mismatched int64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM attempts").Scan(&attempts))
	require.Equal(t, st.Deliveries-st.Orphans, attempts)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM attempts a JOIN events e ON e.id = a.event_id
		WHERE a.tenant_id <> e.tenant_id OR a.topic <> e.topic OR a.event_time <> e.time
		   OR a.eligible_for_retry <> e.eligible_for_retry OR a.event_data <> e.data OR a.event_metadata::text <> e.metadata::text`).Scan(&mismatched))
	require.Zero(t, mismatched)
	var orphans int64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = a.event_id)").Scan(&orphans))
	require.Zero(t, orphans)
	r = run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
}
