package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// runTTY runs a command in-process as if stdin and stderr were a terminal,
// answering the confirmation prompt with answer.
func runTTY(t *testing.T, envs map[string]string, answer string, args ...string) *result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), env{
		args:      append([]string{"--output", "json"}, args...),
		lookupEnv: func(k string) (string, bool) { v, ok := envs[k]; return v, ok },
		stdin:     bytes.NewReader([]byte(answer)),
		stdout:    &out, stderr: &errb,
		stdinTTY: true, stderrTTY: true,
	})
	r := &result{code: code, stdout: out.String(), stderr: errb.String()}
	checkReport(t, r)
	return r
}

func TestConfirmationOnATerminal(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	envs := redisEnv(srv)

	r := runTTY(t, envs, "n\n", "migrate", "apply", "--redis-only")
	require.Equal(t, 64, r.code)
	require.Equal(t, "CANCELLED", errorCode(r))
	require.Equal(t, "cancelled", r.rep["outcome"])
	require.Contains(t, r.stderr, "Apply 3 pending migrations")
	// The prompt says what will happen first: the plan's rows.
	require.Regexp(t, `pending +redis/001_hash_tags +1 keys \(counted\)`, r.stderr)
	require.EqualValues(t, 0, c.Exists(ctx, "tenant:{t1}:tenant").Val(), "nothing applied after a no")

	r = runTTY(t, envs, "yes\n", "migrate", "apply", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	require.EqualValues(t, 1, c.Exists(ctx, "tenant:{t1}:tenant").Val())

	// Up to date: nothing to confirm.
	r = runTTY(t, envs, "", "migrate", "apply", "--redis-only")
	require.Equal(t, 0, r.code)
	require.Equal(t, "up_to_date", r.rep["outcome"])

	// No lock: unlock has nothing to ask.
	r = runTTY(t, envs, "", "migrate", "unlock")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "no_lock", r.rep["outcome"])
	require.NotContains(t, r.stderr, "[y/N]")

	// A lock: unlock names its holder before asking.
	require.NoError(t, c.Set(ctx, ".outpost:migration_lock", `{"owner":"outpost-migrate","run_id":"r-crashed","host":"build-7","pid":4242,"command":"apply","started_at":"2026-01-01T00:00:00.000Z","tool_version":"dev","token":3,"nonce":"n"}`, 0).Err())
	r = runTTY(t, envs, "\n", "migrate", "unlock")
	require.Equal(t, 64, r.code)
	require.Equal(t, "CANCELLED", errorCode(r))
	require.Contains(t, r.stderr, "r-crashed")
	require.EqualValues(t, 1, c.Exists(ctx, ".outpost:migration_lock").Val())
}

func TestStatusWait(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1").Err())
	envs := redisEnv(srv)

	r := run(t, envs, "migrate", "status", "--redis-only", "--wait", "300ms")
	require.Equal(t, 75, r.code)
	require.Equal(t, "TIMEOUT", errorCode(r))
	require.Equal(t, "timed_out", r.rep["outcome"])

	// A waiter returns once another run has applied.
	done := make(chan *result, 1)
	go func() { done <- run(t, envs, "migrate", "status", "--redis-only", "--wait", "60s") }()
	time.Sleep(300 * time.Millisecond)
	a := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, a.code, a.stdout)
	select {
	case w := <-done:
		require.Equal(t, 0, w.code, w.stdout)
		require.Equal(t, "up_to_date", w.rep["outcome"])
	case <-time.After(30 * time.Second):
		t.Fatal("status --wait did not return after apply")
	}
}

func TestDevSeed(t *testing.T) {
	srv := servertest.Redis(t)
	envs := redisEnv(srv)
	r := run(t, envs, "dev", "seed", "--tenants", "50", "--seed", "3")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "seeded", r.rep["outcome"])
	keys := r.rep["extra"].(map[string]any)["redis"].(map[string]any)["keys"].(float64)
	require.EqualValues(t, keys, srv.Client(t).DBSize(context.Background()).Val())

	r = run(t, envs, "dev", "seed", "--tenants", "50")
	require.Equal(t, 65, r.code, "a non-empty keyspace is refused without --flush")
	require.Equal(t, "DATA_REFUSED", errorCode(r))

	r = run(t, envs, "dev", "seed", "--tenants", "10", "--flush", "--yes", "--layout", "3", "--deployment-id", "dep")
	require.Equal(t, 0, r.code, r.stdout)
	n, err := srv.Client(t).Keys(context.Background(), "dep:tenant:{*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, n)
}
