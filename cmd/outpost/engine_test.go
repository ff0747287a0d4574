package main

// Issue #4 through the real command line: the batch engine walks every key
// of a standalone server or of every master of a cluster, saves a
// checkpoint per node after each chunk, resumes after kill -9, scans a
// restarted server again, stops at a safe point on SIGTERM, SIGINT and
// --max-runtime, records per-key failures without marking the migration
// applied, and logs progress events valid against their schema.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

const (
	// engTenants makes apply take a couple of seconds on a test server
	// (about 50k v0 keys): time to act in the middle of a run.
	engTenants = 10_000
	// engChunkKeys bounds the keys of one chunk: SCAN COUNT 2000 (the
	// default) visits 2000 buckets, and a bucket may hold more than one
	// key.
	engChunkKeys = 4_000
	// engWindow is the default --window: chunks in flight per node, so the
	// most a crash can repeat.
	engWindow = 2
)

var engMigrations = []string{"001_hash_tags", "002_timestamps", "003_entity"}

// engSeed writes a v0 keyspace of n tenants and returns its options and
// the number of legacy tenant:* keys 001 must copy.
func engSeed(t *testing.T, c redis.UniversalClient, n int) (seed.Options, int64) {
	t.Helper()
	o := seedOptions(n)
	st, err := seed.Write(context.Background(), c, o)
	require.NoError(t, err)
	return o, int64(st.Keys - st.Unrelated)
}

// engEvents checks that every line of stderr is a progress event valid
// against its schema and returns them.
func engEvents(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if line == "" {
			continue
		}
		require.NoError(t, report.ValidateEvent([]byte(line)), line)
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev))
		out = append(out, ev)
	}
	return out
}

// engWaitScanned waits until the saved checkpoint counts at least min keys
// scanned over all nodes: far enough into p's run that starting over
// instead of resuming would show.
func engWaitScanned(t *testing.T, p *proc, c redis.UniversalClient, min int64) {
	t.Helper()
	p.waitEvent(t, "checkpoint_saved", 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var sum int64
		for _, n := range engSaved(t, c) {
			sum += int64(engNum(n["scanned"]))
		}
		if sum >= min {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("the process ended before scanning %d keys", min)
		case <-time.After(2 * time.Millisecond):
		}
	}
	t.Fatalf("the checkpoint never reached %d keys", min)
}

// engFinish waits for p's exit, checks the report and every stderr line.
func engFinish(t *testing.T, p *proc) (*result, []map[string]any) {
	t.Helper()
	r := p.wait(t)
	return r, engEvents(t, r.stderr)
}

// engApply runs apply in-process with JSON logs and checks its events.
func engApply(t *testing.T, envs map[string]string, extra ...string) (*result, []map[string]any) {
	t.Helper()
	r := run(t, envs, append([]string{"--log-format", "json", "migrate", "apply", "--yes", "--redis-only"}, extra...)...)
	return r, engEvents(t, r.stderr)
}

func engLines(t *testing.T, r *result) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	ms, _ := r.rep["migrations"].([]any)
	for _, m := range ms {
		l := m.(map[string]any)
		out[l["name"].(string)] = l
	}
	require.Len(t, out, len(engMigrations), r.stdout)
	return out
}

// engNodes returns a line's checkpoint nodes.
func engNodes(t *testing.T, line map[string]any) []map[string]any {
	t.Helper()
	cp, _ := line["checkpoint"].(map[string]any)
	require.NotNil(t, cp, "no checkpoint in %v", line)
	var out []map[string]any
	for _, n := range cp["nodes"].([]any) {
		out = append(out, n.(map[string]any))
	}
	return out
}

// engSaved reads the saved checkpoint's node entries, by node id.
func engSaved(t *testing.T, c redis.UniversalClient) map[string]map[string]any {
	t.Helper()
	h, err := c.HGetAll(context.Background(), checkpointKey).Result()
	require.NoError(t, err)
	out := map[string]map[string]any{}
	for f, v := range h {
		if id, ok := strings.CutPrefix(f, "node:"); ok {
			var n map[string]any
			require.NoError(t, json.Unmarshal([]byte(v), &n))
			out[id] = n
		}
	}
	return out
}

// engRequireProgress checks what chunk events carry: counts, rate, an
// estimate of the total and, at least once, an ETA.
func engRequireProgress(t *testing.T, events []map[string]any) {
	t.Helper()
	chunks, eta := 0, 0
	for _, ev := range events {
		if ev["event"] != "chunk_done" {
			continue
		}
		chunks++
		require.NotNil(t, ev["counts"], ev)
		require.Positive(t, ev["rate_per_s"], ev)
		require.Positive(t, ev["total_estimate"], ev)
		if _, ok := ev["eta_s"]; ok {
			eta++
		}
	}
	require.Positive(t, chunks)
	require.Positive(t, eta, "no chunk event carried an ETA")
}

// kill -9 in the middle of apply, then status and plan show the unfinished
// run, and a rerun (after unlock) resumes it from the saved cursor, repeats
// at most the chunks in flight, completes and verifies.
func TestEngineKill9Resumes(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o, legacy := engSeed(t, c, engTenants)

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	engWaitScanned(t, p, c, 5*engChunkKeys)
	p.kill(t)
	saved := engSaved(t, c)["standalone"]
	require.NotNil(t, saved, "the checkpoint survives the kill")
	cursor := saved["cursor"].(string)
	require.NotEqual(t, "0", cursor)
	require.Equal(t, false, saved["done"])
	require.Positive(t, saved["scanned"])

	// status and plan show where it stopped and how far it got.
	for _, cmd := range []string{"status", "plan"} {
		r := run(t, envs, "migrate", cmd, "--redis-only", "--detailed-exitcode")
		require.Equal(t, 2, r.code, r.stdout)
		require.Equal(t, "pending", r.rep["outcome"])
		for name, l := range engLines(t, r) {
			require.Equal(t, "partial", l["state"], name)
			require.Equal(t, true, l["resumable"], name)
			nodes := engNodes(t, l)
			require.Len(t, nodes, 1)
			require.Equal(t, cursor, nodes[0]["cursor"], name)
			require.Equal(t, saved["scanned"], nodes[0]["scanned"], name)
			require.Equal(t, false, nodes[0]["done"], name)
		}
	}

	u := run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, "unlocked", u.rep["outcome"], u.stdout)

	r, events := engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	lines := engLines(t, r)
	for _, name := range engMigrations {
		l := lines[name]
		require.Equal(t, "applied", l["state"], name)
		require.Equal(t, true, l["checkpoint"].(map[string]any)["resumed"], name)
		nodes := engNodes(t, l)
		require.Equal(t, cursor, nodes[0]["resumed_from"], "the report says where it resumed")
		require.Equal(t, true, nodes[0]["done"])
	}
	// Every legacy key copied once across the two runs; the only ones
	// found already copied are those of the chunks the kill interrupted.
	counts := lines["001_hash_tags"]["counts"].(map[string]any)
	changed, unchanged := int64(engNum(counts["changed"])), int64(engNum(counts["unchanged"]))
	require.Zero(t, engNum(counts["failed"]))
	require.Equal(t, legacy, changed+unchanged, "nothing lost, nothing counted twice")
	require.LessOrEqual(t, unchanged, int64(engWindow*engChunkKeys), "at most the chunks in flight repeated")
	require.EqualValues(t, 0, c.Exists(context.Background(), checkpointKey).Val(), "a finished run clears its checkpoint")
	engRequireProgress(t, events)

	requireMigrated(t, c, o)
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
	require.Equal(t, "verified", v.rep["outcome"])
}

// The server restarts (a new run_id) between the killed run and the rerun:
// its saved cursor means nothing to the new process, so the rerun scans it
// again from 0 and still completes.
func TestEngineRedisRestartRescans(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)
	envs := redisEnv(srv)
	o, _ := engSeed(t, c, engTenants)

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	p.waitEvent(t, "checkpoint_saved", 20*time.Second)
	p.kill(t)
	old := engSaved(t, c)["standalone"]
	require.NotNil(t, old)
	require.NotEqual(t, "0", old["cursor"])

	srv.Restart(t)
	c = srv.Client(t)
	require.Equal(t, old["server_run_id"], engSaved(t, c)["standalone"]["server_run_id"], "the checkpoint survived the restart")

	u := run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, 0, u.code, u.stdout)

	r, _ := engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	for name, l := range engLines(t, r) {
		require.Equal(t, "applied", l["state"], name)
		n := engNodes(t, l)[0]
		require.Equal(t, true, n["restarted"], "the report says the node was scanned again")
		require.Nil(t, n["resumed_from"])
		require.NotEqual(t, old["server_run_id"], n["server_run_id"])
		require.Equal(t, true, n["done"])
	}
	requireMigrated(t, c, o)
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
}

// SIGTERM stops apply at a safe point: exit 143, report "interrupted" with
// what a rerun will do, checkpoint saved, lock released. SIGINT on the
// rerun does the same with 130, and a third run completes.
func TestEngineSignalsStopAtASafePoint(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o, _ := engSeed(t, c, engTenants)

	for i, sig := range []struct {
		sig  syscall.Signal
		exit int
		code string
	}{{syscall.SIGTERM, 143, "TERMINATED"}, {syscall.SIGINT, 130, "INTERRUPTED"}} {
		p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
		p.waitEvent(t, "checkpoint_saved", 20*time.Second)
		require.NoError(t, p.cmd.Process.Signal(sig.sig))
		r, _ := engFinish(t, p)
		require.Equal(t, sig.exit, r.code, r.stdout)
		require.Equal(t, "interrupted", r.rep["outcome"])
		require.Equal(t, sig.code, errorCode(r))
		require.Equal(t, true, r.rep["error"].(map[string]any)["retryable"])
		require.Contains(t, r.rep["next"], "resumes", "the report says what a rerun will do")
		require.Equal(t, "released", r.rep["lock"].(map[string]any)["state"])
		require.EqualValues(t, 0, c.Exists(ctx, lockKey).Val(), "lock released")
		require.EqualValues(t, 1, c.Exists(ctx, checkpointKey).Val(), "checkpoint saved")
		saved := engSaved(t, c)["standalone"]
		for name, l := range engLines(t, r) {
			require.Equal(t, "interrupted", l["state"], name)
			require.Equal(t, true, l["resumable"], name)
			n := engNodes(t, l)[0]
			require.Equal(t, saved["cursor"], n["cursor"], "the report's position is the saved one")
			if i == 1 {
				require.Equal(t, true, l["checkpoint"].(map[string]any)["resumed"], "the second run resumed the first")
			}
		}
	}

	r, _ := engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	requireMigrated(t, c, o)
}

// --max-runtime stops the same way when the deadline comes: exit 75
// TIMEOUT, resumable; the rerun completes.
func TestEngineMaxRuntime(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o, _ := engSeed(t, c, engTenants)

	r, _ := engApply(t, envs, "--max-runtime", "200ms")
	require.Equal(t, 75, r.code, r.stdout)
	require.Equal(t, "TIMEOUT", errorCode(r))
	require.Equal(t, "timed_out", r.rep["outcome"])
	require.NotEmpty(t, r.rep["next"])
	require.Equal(t, "released", r.rep["lock"].(map[string]any)["state"])
	require.EqualValues(t, 0, c.Exists(ctx, lockKey).Val())
	require.EqualValues(t, 1, c.Exists(ctx, checkpointKey).Val())
	for name, l := range engLines(t, r) {
		require.Equal(t, "interrupted", l["state"], name)
		require.Equal(t, true, l["resumable"], name)
	}

	r, _ = engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	for name, l := range engLines(t, r) {
		require.Equal(t, "applied", l["state"], name)
		require.Equal(t, true, l["checkpoint"].(map[string]any)["resumed"], name)
	}
	requireMigrated(t, c, o)
}

// Bad records among thousands: apply goes on, migrates the rest, reports
// each failure (the exact total and the first ones), exits 4 and does not
// mark the migration applied; once they are fixed, a rerun finishes.
func TestEnginePerKeyFailures(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o, _ := engSeed(t, c, 3_000)
	const lists, garbage = 3, report.MaxIssues + 10
	for i := 0; i < lists; i++ {
		require.NoError(t, c.RPush(ctx, fmt.Sprintf("tenant:badlist%d", i), "x").Err())
	}
	for i := 0; i < garbage; i++ {
		require.NoError(t, c.HSet(ctx, fmt.Sprintf("tenant:badts%d", i), "id", fmt.Sprintf("badts%d", i), "created_at", "garbage").Err())
	}

	r, _ := engApply(t, envs)
	require.Equal(t, 4, r.code, r.stdout)
	require.Equal(t, "MIGRATION_FAILED", errorCode(r))
	require.Equal(t, "failed", r.rep["outcome"])
	require.NotEmpty(t, r.rep["next"])
	lines := engLines(t, r)
	l1 := lines["001_hash_tags"]
	require.Equal(t, "failed", l1["state"])
	require.EqualValues(t, lists, l1["issues_total"])
	for _, is := range l1["issues"].([]any) {
		require.Contains(t, is.(map[string]any)["key"], "tenant:badlist")
		require.Contains(t, is.(map[string]any)["reason"], "WRONGTYPE")
	}
	l2 := lines["002_timestamps"]
	require.NotEqual(t, "applied", l2["state"])
	require.EqualValues(t, garbage, l2["issues_total"], "the exact total")
	require.Len(t, l2["issues"], report.MaxIssues, "and the first ones")
	for _, is := range l2["issues"].([]any) {
		require.Contains(t, is.(map[string]any)["key"], "badts")
	}
	require.NotEqual(t, "applied", lines["003_entity"]["state"])
	for _, name := range engMigrations {
		st, err := c.HGet(ctx, "outpost:migration:"+name, "status").Result()
		if err != redis.Nil {
			require.NoError(t, err)
			require.NotEqual(t, "applied", st, name)
		}
	}
	// Everything else was migrated: the only differences are the bad
	// records (and the copies of the ones that are hashes).
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	require.NotEmpty(t, diffs)
	for _, d := range diffs {
		require.Contains(t, d, "bad", "only the bad records differ")
	}

	// Fix them and rerun.
	for i := 0; i < lists; i++ {
		require.NoError(t, c.Del(ctx, fmt.Sprintf("tenant:badlist%d", i)).Err())
	}
	for i := 0; i < garbage; i++ {
		for _, k := range []string{fmt.Sprintf("tenant:badts%d", i), fmt.Sprintf("tenant:{badts%d}:tenant", i)} {
			require.NoError(t, c.HSet(ctx, k, "created_at", "2025-01-02T03:04:05Z").Err())
		}
	}
	r, _ = engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	for name, l := range engLines(t, r) {
		require.Equal(t, "applied", l["state"], name)
		require.EqualValues(t, 0, l["issues_total"], name)
	}
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
	for i := 0; i < garbage; i++ {
		require.NoError(t, c.Del(ctx, fmt.Sprintf("tenant:badts%d", i), fmt.Sprintf("tenant:{badts%d}:tenant", i)).Err())
	}
	requireMigrated(t, c, o)
}

// On a cluster SCAN is per node: a ClusterClient.Scan loop sees one
// master's keys, apply walks every master (one checkpoint each), and a
// kill -9 in the middle resumes each master from its own cursor.
func TestEngineCluster(t *testing.T) {
	cl := servertest.RedisCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	envs := map[string]string{"REDIS_CLUSTER_ENABLED": "true", "REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0])}
	o, legacy := engSeed(t, cc, 6_000)

	var mu sync.Mutex
	masters := 0
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		require.Positive(t, n, "keys on every master")
		mu.Lock()
		masters++
		mu.Unlock()
		return err
	}))
	require.Equal(t, 3, masters)
	seen := map[string]bool{}
	var cursor uint64
	for i := 0; i < 100_000; i++ {
		keys, next, err := cc.Scan(ctx, cursor, "tenant:*", 1000).Result()
		require.NoError(t, err)
		for _, k := range keys {
			seen[k] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	require.Less(t, int64(len(seen)), legacy, "ClusterClient.Scan would have missed keys")

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	engWaitScanned(t, p, cc, 3*engChunkKeys)
	p.kill(t)
	saved := engSaved(t, cc)
	require.NotEmpty(t, saved)
	run(t, envs, "migrate", "unlock", "--yes")

	r, events := engApply(t, envs)
	require.Equal(t, 0, r.code, r.stdout)
	lines := engLines(t, r)
	for name, l := range lines {
		require.Equal(t, "applied", l["state"], name)
		nodes := engNodes(t, l)
		require.Len(t, nodes, 3, "one position per master")
		for _, n := range nodes {
			require.Equal(t, true, n["done"])
			if s, ok := saved[n["node"].(string)]; ok && s["done"] == false {
				require.Equal(t, s["cursor"], n["resumed_from"], "each master resumes from its own cursor")
			}
		}
	}
	counts := lines["001_hash_tags"]["counts"].(map[string]any)
	require.Equal(t, legacy, int64(engNum(counts["changed"])+engNum(counts["unchanged"])))
	require.LessOrEqual(t, int64(engNum(counts["unchanged"])), int64(3*engWindow*engChunkKeys), "at most the chunks in flight repeated per master")
	nodesSeen := map[any]bool{}
	for _, ev := range events {
		if ev["event"] == "chunk_done" {
			nodesSeen[ev["node"]] = true
		}
	}
	require.Len(t, nodesSeen, 3, "progress from every master")

	requireMigrated(t, cc, o)
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
}

func engNum(v any) float64 { f, _ := v.(float64); return f }

// On a terminal (text logs) apply draws a progress line redrawn in place
// instead of logging every chunk (the pty tests check the screen itself).
func TestEngineProgressBarOnATerminal(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o, _ := engSeed(t, c, 3_000)
	r := runMain(envs, env{args: []string{"migrate", "apply", "--yes", "--redis-only", "--output", "json"}, stderrTTY: true})
	checkReport(t, r)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "\r001+002+003 [", "the display redraws in place, with a short label and a bar")
	require.Contains(t, r.stderr, " keys", r.stderr)
	require.NotContains(t, r.stderr, "event=chunk_done", "chunks show on the display, not as log lines")
	requireMigrated(t, c, o)
}
