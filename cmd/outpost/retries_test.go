package main

// Issue #22, retries that converge: `--max-runtime` however short lets every
// node do one chunk (every SQL run one migration or batch), so a loop that
// reruns on exit 75 finishes; verify, which keeps no checkpoint, says that a
// rerun starts over instead of promising a resume.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestMaxRuntimeRetriesConverge: `until rc != 75: apply --max-runtime 1ms`
// ends, each run moving the saved checkpoint, and the data is exact.
func TestMaxRuntimeRetriesConverge(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := seedTenants(t, c, 3_000)

	// The copy pass and the confirming pass each keep a checkpoint.
	saved := func() string { return faultCheckpoint(t, c, "apply") + " | " + faultCheckpoint(t, c, "confirm") }
	prev := saved()
	runs := 0
	for ; runs < 60; runs++ {
		r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--max-runtime", "1ms", "--scan-count", "1000", "--window", "1")
		if r.code == 0 {
			break
		}
		require.Equal(t, 75, r.code, r.stdout)
		require.Equal(t, "TIMEOUT", errorCode(r))
		e := r.rep["error"].(map[string]any)
		require.Equal(t, true, e["retryable"])
		require.Contains(t, e["message"], "a rerun gets further")
		require.Equal(t, true, e["details"].(map[string]any)["resumes"])
		require.Contains(t, r.rep["next"], "resumes")
		now := saved()
		require.NotEqual(t, prev, now, "run %d did not move the checkpoint: a retry loop would spin", runs+1)
		prev = now
	}
	require.Less(t, runs, 60, "apply --max-runtime 1ms never finished")
	require.Positive(t, runs, "1ms must stop the first run early")
	t.Logf("apply --max-runtime 1ms finished after %d reruns", runs)
	requireMigrated(t, c, o)

	// verify keeps no checkpoint: it says so, and never claims to resume.
	r := run(t, envs, "migrate", "verify", "--redis-only", "--max-runtime", "1ms", "--scan-count", "100", "--window", "1")
	require.Equal(t, 75, r.code, r.stdout)
	require.Equal(t, "TIMEOUT", errorCode(r))
	e := r.rep["error"].(map[string]any)
	require.Contains(t, e["message"], "verify keeps no checkpoint, so a rerun starts over")
	require.NotContains(t, r.stdout, "progress saved")
	require.Equal(t, false, e["details"].(map[string]any)["resumes"])
	require.Contains(t, r.rep["next"], "starts over")
}

// TestMaxRuntimeSQLConverges: the SQL phase with --max-runtime 1ms applies
// at least one migration per run, so reruns reach version 10.
func TestMaxRuntimeSQLConverges(t *testing.T) {
	t.Parallel()
	pg := servertest.Postgres(t)
	envs := map[string]string{"POSTGRES_URL": pg.URL}
	runs := 0
	for ; runs < 12; runs++ {
		r := run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--max-runtime", "1ms")
		if r.code == 0 {
			break
		}
		require.Equal(t, 75, r.code, r.stdout)
		require.Equal(t, "TIMEOUT", errorCode(r))
		require.Positive(t, r.rep["summary"].(map[string]any)["applied"], "run %d applied nothing: %s", runs+1, r.stdout)
	}
	require.Less(t, runs, 12)
	r := run(t, envs, "migrate", "verify", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
}
