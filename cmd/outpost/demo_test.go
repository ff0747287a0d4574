package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// TestDemo runs `go run ./cmd/outpost demo` as a newcomer would (a real
// process, the in-process store) and checks that it exits 0 and that the
// demo report and every step's report inside it validate.
func TestDemo(t *testing.T) {
	cmd := exec.Command("go", "run", ".", "demo", "--tenants", "300")
	cmd.Env = append(os.Environ(), "REDIS_HOST=", "POSTGRES_URL=")
	cmd.Env = filterEnv(cmd.Env, "REDIS_HOST", "POSTGRES_URL", "REDIS_PORT")
	out, err := cmd.Output()
	require.NoError(t, err, "demo failed: %s", out)
	line := lastLine(string(out))
	require.NoError(t, report.ValidateJSON([]byte(line)))
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &rep))
	require.Equal(t, "completed", rep["outcome"])
	steps := rep["extra"].(map[string]any)["steps"].([]any)
	require.Len(t, steps, 4)
	want := []string{"pending", "applied", "verified", "up_to_date"}
	for i, s := range steps {
		b, _ := json.Marshal(s)
		require.NoError(t, report.ValidateJSON(b), "step %d", i)
		require.Equal(t, want[i], s.(map[string]any)["outcome"])
	}
}

func filterEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// TestDemoWithPostgres: with --postgres-url the demo includes the SQL phase,
// through the same runner, against real servers.
func TestDemoWithPostgres(t *testing.T) {
	pg := servertest.Postgres(t)
	srv := servertest.Redis(t)
	// Real stores only by flags, and a real PostgreSQL only with --yes.
	r := run(t, nil, "demo", "--tenants", "100", "--redis-host", srv.Host, "--redis-port", itoa(srv.Port), "--postgres-url", pg.URL, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	steps := r.rep["extra"].(map[string]any)["steps"].([]any)
	apply := steps[1].(map[string]any)
	require.Equal(t, "applied", apply["outcome"])
	backends := map[string]int{}
	for _, m := range apply["migrations"].([]any) {
		backends[m.(map[string]any)["backend"].(string)]++
	}
	require.Equal(t, map[string]int{"sql": 10, "redis": 3}, backends)
	require.Equal(t, "up_to_date", steps[3].(map[string]any)["outcome"])
}
