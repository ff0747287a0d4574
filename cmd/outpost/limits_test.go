package main

// Issue #22, records against the server's limits: a field too big for
// client-output-buffer-limit or proto-max-bulk-len is a per-key failure
// naming the key, the field and the limit (exit 4 MIGRATION_FAILED, not
// retryable, the same on every rerun of the same data), every other key is
// migrated exactly, and the rerun after the limit is raised completes; a
// hash of 500k fields is copied exactly with the tool's memory bounded.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

// requireMigratedBut is requireMigrated for a keyspace that also holds
// the records named in extra (and their twins): differences naming them
// are left to the caller.
func requireMigratedBut(t *testing.T, c redis.UniversalClient, o seed.Options, extra ...string) {
	t.Helper()
	requireCheckedBut(t, c, o, seedtest.Expect, extra...)
}

// requireCheckedBut checks the keyspace against expect, leaving the
// differences that name a record of extra to the caller.
func requireCheckedBut(t *testing.T, c redis.UniversalClient, o seed.Options, expect seedtest.ExpectFunc, extra ...string) {
	t.Helper()
	diffs, checked, err := seedtest.Check(context.Background(), c, o, expect)
	require.NoError(t, err)
	var left []string
	for _, d := range diffs {
		named := false
		for _, x := range extra {
			named = named || strings.Contains(d, x)
		}
		if !named {
			left = append(left, d)
		}
	}
	require.Empty(t, left, "%d of %d keys differ", len(left), checked)
	require.Positive(t, checked)
}

// issuesOf returns the issues of migration name in an apply report.
func issuesOf(t *testing.T, r *result, name string) []map[string]any {
	t.Helper()
	for _, m := range r.rep["migrations"].([]any) {
		mm := m.(map[string]any)
		if strings.HasSuffix(mm["id"].(string), name) || mm["name"] == name {
			var out []map[string]any
			is, _ := mm["issues"].([]any)
			for _, i := range is {
				out = append(out, i.(map[string]any))
			}
			return out
		}
	}
	t.Fatalf("no migration %s in %s", name, r.stdout)
	return nil
}

// TestServerLimitsBigField: a legacy destination with a 50 MiB field
// under `client-output-buffer-limit normal 8mb 0 0` (it cannot be read) or
// `proto-max-bulk-len 16mb` (it cannot be written). Apply exits 4
// MIGRATION_FAILED, not retryable, with one issue naming the key, the
// field, its size and the limit; the record has no twin, no temporary key
// is left, every other key is migrated exactly; a rerun gives the same.
// With the limit raised the rerun completes and the twin is exact.
func TestServerLimitsBigField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, param, low, high string }{
		{"output buffer", "client-output-buffer-limit", "normal 8mb 0 0", "normal 0 0 0"},
		{"bulk length", "proto-max-bulk-len", "16mb", "512mb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := servertest.Redis(t)
			c := srv.Client(t)
			ctx := context.Background()
			o := seedTenants(t, c, 40)
			const big, twin = "tenant:bigtenant:destination:huge", "tenant:{bigtenant}:destination:huge"
			huge := strings.Repeat("0123456789abcdef", 50<<20/16)
			require.NoError(t, c.HSet(ctx, big, "id", "huge", "type", "webhook", "created_at", "2025-01-02T03:04:05Z", "config", huge).Err())
			require.NoError(t, c.ConfigSet(ctx, tc.param, tc.low).Err())

			for attempt := 1; attempt <= 2; attempt++ {
				r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
				require.Equal(t, 4, r.code, "attempt %d: %s\n%s", attempt, r.stdout, r.stderr)
				require.Equal(t, "MIGRATION_FAILED", errorCode(r))
				require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
				issues := issuesOf(t, r, "001_hash_tags")
				require.Len(t, issues, 1, "only the big record fails")
				require.Equal(t, big, issues[0]["key"])
				require.Equal(t, "config", issues[0]["field"])
				require.Contains(t, issues[0]["reason"], strconv.Itoa(len(huge))+" bytes")
				require.Contains(t, issues[0]["reason"], tc.param)
				require.Zero(t, c.Exists(ctx, twin).Val(), "no twin of the big record")
				requireMigratedBut(t, c, o, "bigtenant")
				requireNoTempKeys(t, c)
			}

			require.NoError(t, c.ConfigSet(ctx, tc.param, tc.high).Err())
			r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
			got := c.HGetAll(ctx, twin).Val()
			require.Equal(t, map[string]string{"id": "huge", "type": "webhook", "created_at": "1735787045000", "config": huge, "entity": "destination"}, got)
			require.Equal(t, huge, c.HGet(ctx, big, "config").Val(), "the legacy record is kept as it was")
			require.Equal(t, "2025-01-02T03:04:05Z", c.HGet(ctx, big, "created_at").Val())
			require.Equal(t, time.Duration(-1), c.PTTL(ctx, twin).Val(), "no TTL, as the legacy record")
			requireMigratedBut(t, c, o, "bigtenant")
			requireNoTempKeys(t, c)
			v := run(t, redisEnv(srv), "migrate", "verify", "--redis-only")
			require.Equal(t, 0, v.code, v.stdout)
		})
	}
}

// requireNoTempKeys fails when a temporary key of a piece-by-piece copy
// is left.
func requireNoTempKeys(t *testing.T, c *redis.Client) {
	t.Helper()
	keys, err := c.Keys(context.Background(), "outpost:migrate:big:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// TestServerLimitsHugeHash: a legacy destination of 500,000 fields (about
// 20 MB of data) is copied exactly by the real binary, with peak RSS
// (its VmHWM, samplePeak) at most 80 MiB.
func TestServerLimitsHugeHash(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	o := seedTenants(t, c, 20)
	const key, twin, fields = "tenant:widetenant:destination:wide", "tenant:{widetenant}:destination:wide", 500_000
	for lo := 0; lo < fields; lo += 10_000 {
		args := make([]any, 0, 20_000)
		for i := lo; i < lo+10_000; i++ {
			args = append(args, fmt.Sprintf("f%06d", i), fmt.Sprintf("value-%06d-abcdefghij", i))
		}
		require.NoError(t, c.HSet(ctx, key, args...).Err())
	}
	require.NoError(t, c.HSet(ctx, key, "id", "wide", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.PExpire(ctx, key, time.Hour).Err())

	code, rss := runRSS(t, srv, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, code)
	t.Logf("apply with a 500,000-field hash: peak RSS %.1f MiB", float64(rss)/1024)
	require.LessOrEqual(t, rss, int64(80<<10), "peak RSS %d KiB", rss)

	want, err := c.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	require.Len(t, want, fields+2)
	want["created_at"] = "1735787045000"
	want["entity"] = "destination"
	got, err := c.HGetAll(ctx, twin).Result()
	require.NoError(t, err)
	require.Equal(t, len(want), len(got))
	for f, v := range want {
		if got[f] != v {
			require.Equal(t, v, got[f], "field %s", f)
		}
	}
	require.Equal(t, c.PExpireTime(ctx, key).Val(), c.PExpireTime(ctx, twin).Val(), "the same expiry")
	requireMigratedBut(t, c, o, "widetenant")
	requireNoTempKeys(t, c)

	code, rss = runRSS(t, srv, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, code)
	t.Logf("verify with a 500,000-field hash: peak RSS %.1f MiB", float64(rss)/1024)
	require.LessOrEqual(t, rss, int64(80<<10), "peak RSS %d KiB", rss)
	// A difference deep in the record is found, by field.
	require.NoError(t, c.HSet(ctx, twin, "f123456", "changed").Err())
	r := run(t, redisEnv(srv), "migrate", "verify", "--redis-only")
	require.Equal(t, 3, r.code, r.stdout)
	issues := issuesOf(t, r, "001_hash_tags")
	require.Len(t, issues, 1)
	require.Equal(t, key, issues[0]["key"])
	require.Equal(t, "f123456", issues[0]["field"])
	require.Equal(t, "field differs", issues[0]["reason"])
}

// samplePeak reads process pid's VmHWM (peak resident memory, KiB) from
// /proc every 2 ms until it exits; the returned function waits for that
// and gives the peak. getrusage's ru_maxrss of a child would not do: os/exec
// starts it with vfork, and Linux carries the parent's peak into the
// child's at exec.
func samplePeak(pid int) func() int64 {
	done := make(chan struct{})
	var peak int64
	go func() {
		defer close(done)
		status := fmt.Sprintf("/proc/%d/status", pid)
		for {
			b, err := os.ReadFile(status)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil && n > peak {
						peak = n
					}
				}
				if strings.HasPrefix(line, "State:") && strings.Contains(line, "zombie") {
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() int64 { <-done; return peak }
}

// runRSS runs the real binary against srv and returns its exit code and
// peak resident memory in KiB (samplePeak: this test process holds a
// 500k-field hash, whose peak ru_maxrss would carry into the child's).
func runRSS(t *testing.T, srv *servertest.RedisServer, args ...string) (int, int64) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_HOST=" + srv.Host, "REDIS_PORT=" + itoa(srv.Port)}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	peakOf := samplePeak(cmd.Process.Pid)
	err := cmd.Wait()
	peak := peakOf()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		require.NoError(t, err)
	}
	out := stdout.String()
	require.NoError(t, report.ValidateJSON([]byte(lastLine(out))), "stderr: %s\nstdout: %s", stderr.String(), out)
	require.Positive(t, peak, "VmHWM was read")
	return cmd.ProcessState.ExitCode(), peak
}
