package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logfmt/logfmt"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// TestTextLogsAreLogfmt: what `kubectl logs` and CI show. Every stderr line
// of a text-format apply (stderr not a terminal) is logfmt with a UTC
// RFC3339 time with its date, a level and a quoted message; counts are
// flattened to keys; progress comes as periodic lines, not per chunk.
func TestTextLogsAreLogfmt(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	envs["OUTPOST_PROGRESS_INTERVAL"] = "300ms"
	engSeed(t, c, 3_000)
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--scan-count", "200")
	require.Equal(t, 0, r.code, r.stderr)
	d := logfmt.NewDecoder(strings.NewReader(r.stderr))
	records, progressLines := 0, 0
	for d.ScanRecord() {
		kv := map[string]string{}
		var order []string
		for d.ScanKeyval() {
			kv[string(d.Key())] = string(d.Value())
			order = append(order, string(d.Key()))
		}
		require.NoError(t, d.Err())
		require.GreaterOrEqual(t, len(order), 3)
		require.Equal(t, []string{"time", "level", "msg"}, order[:3], "record %d", records)
		ts, err := time.Parse(time.RFC3339Nano, kv["time"])
		require.NoError(t, err, kv["time"])
		require.True(t, strings.HasSuffix(kv["time"], "Z"), "UTC: %s", kv["time"])
		require.WithinDuration(t, time.Now(), ts, time.Hour)
		require.Contains(t, []string{"debug", "info", "warn", "error"}, kv["level"])
		require.NotEmpty(t, kv["msg"])
		require.NotContains(t, kv["event"], "chunk_done", "per-chunk events are not text lines")
		for k, v := range kv {
			require.NotContains(t, v, "map[", "%s: a Go map dump", k)
			require.NotContains(t, v, "{", "%s: a Go struct dump", k)
		}
		if kv["fields.done"] != "" {
			progressLines++
		}
		records++
	}
	require.NoError(t, d.Err())
	require.Equal(t, strings.Count(r.stderr, "\n"), records, "every line is one record")
	require.Contains(t, r.stderr, `msg="migrate apply started" event=run_started`)
	require.Contains(t, r.stderr, "event=run_finished")
	require.Regexp(t, `event=migration_finished .*counts\.changed=\d+`, r.stderr, "nested counts flattened to keys")
	t.Logf("%d records, %d progress lines", records, progressLines)
}

// TestJSONLogsFollowTheSchema: every line of --log-format json validates
// against schemas/progress.json, uses the names collectors map without
// configuration (time, level, msg), rounds its numbers, and every event the
// schema lists is emitted by one of these runs: both stores with the SQL
// backfill, a lease renewed, a lock waited for, a lease lost.
func TestJSONLogsFollowTheSchema(t *testing.T) {
	pg := servertest.Postgres(t)
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	envs["POSTGRES_URL"] = pg.URL
	s := run(t, envs, "dev", "seed", "--tenants", "1", "--unrelated", "0", "--pg-version", "4", "--pg-events", "3000")
	require.Equal(t, 0, s.code, s.stdout)
	require.NoError(t, c.FlushAll(context.Background()).Err())
	// Enough records that the apply outlasts a few renewals of its
	// 1.5 s lease (every 0.5 s) even on an idle machine: with 2,000 it
	// once ended before the first.
	engSeed(t, c, 12_000)
	seen := map[string]int{}
	check := func(stderr string) {
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			require.NoError(t, report.ValidateEvent([]byte(line)), line)
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &ev))
			require.True(t, strings.HasPrefix(line, `{"time":"`), line)
			for _, k := range []string{"rate_per_s", "eta_s"} {
				if v, ok := ev[k].(float64); ok {
					require.InDelta(t, v, float64(int64(v*10))/10, 1e-9, "%s rounded: %s", k, line)
				}
			}
			seen[ev["event"].(string)]++
		}
	}
	// Both stores, the backfill's batches, renewals of a short lease.
	r := run(t, envs, "--log-format", "json", "migrate", "apply", "--yes", "--lock-ttl", "1500ms", "--scan-count", "100")
	require.Equal(t, 0, r.code, r.stderr)
	check(r.stderr)

	// A lock held by someone else: waited for, then exit 75.
	require.NoError(t, c.Set(context.Background(), lockKey, "foreign-token", time.Minute).Err())
	r = run(t, envs, "--log-format", "json", "migrate", "cleanup", "--yes", "--redis-only", "--lock-timeout", "1")
	require.Equal(t, 75, r.code, r.stdout)
	check(r.stderr)
	require.NoError(t, c.Del(context.Background(), lockKey).Err())

	// A lease taken away mid-run: lost.
	c2 := srv.Client(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if c2.Exists(context.Background(), lockKey).Val() == 1 {
					c2.Del(context.Background(), lockKey)
				}
			}
		}
	}()
	r = runMain(envs, env{args: []string{"--log-format", "json", "-o", "json", "migrate", "cleanup", "--yes", "--redis-only", "--lock-ttl", "1s", "--scan-count", "50"}, stdin: bytes.NewReader(nil)})
	close(stop)
	wg.Wait()
	check(r.stderr)

	// A store not reachable yet: warnings (log events) while --wait-for
	// retries, then exit 69.
	r = run(t, map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "1"}, "--log-format", "json", "--wait-for", "4", "migrate", "status", "--redis-only")
	require.Equal(t, 69, r.code, r.stdout)
	check(r.stderr)

	var listed struct {
		Properties struct {
			Event struct {
				Enum []string `json:"enum"`
			} `json:"event"`
		} `json:"properties"`
	}
	b, _ := json.Marshal(mustSchema(t, "progress"))
	require.NoError(t, json.Unmarshal(b, &listed))
	for _, name := range listed.Properties.Event.Enum {
		require.Positive(t, seen[name], "the schema lists %s but no run emitted it (seen: %v)", name, seen)
	}
}

func mustSchema(t *testing.T, name string) any {
	t.Helper()
	r := run(t, nil, "migrate", "schema", name)
	return r.rep["extra"].(map[string]any)["schemas"].(map[string]any)[name]
}
