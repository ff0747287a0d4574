package main

// Issue #22, memory: 001 roughly doubles the tenant keyspace. Against a
// maxmemory limit apply refuses before writing when the copies would not
// fit (65 INSUFFICIENT_MEMORY, the numbers, what to change), stops at a safe
// point on an OOM reply or the first eviction, and a rerun after the fix
// completes.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// memInfo reads one INFO field as a number.
func memInfo(t *testing.T, c *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

// snapshot is every key but the tool's own with its type, content (a
// hash's fields sorted: DUMP's field order changes when Redis resizes a
// hash table) and whether it has a TTL: what "the store is untouched"
// compares.
func snapshot(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	require.NoError(t, seedtest.ScanAll(ctx, c, func(keys []string) error {
		for _, k := range keys {
			if seedtest.IsToolKey(k) {
				continue
			}
			out[k] = describeKey(ctx, c, k)
		}
		return nil
	}))
	return out
}

func describeKey(ctx context.Context, c *redis.Client, k string) string {
	typ := c.Type(ctx, k).Val()
	v := typ
	switch typ {
	case "hash":
		h := c.HGetAll(ctx, k).Val()
		fields := make([]string, 0, len(h))
		for f, x := range h {
			fields = append(fields, strconv.Quote(f)+"="+strconv.Quote(x))
		}
		sort.Strings(fields)
		v += " " + strings.Join(fields, " ")
	case "string":
		v += " " + strconv.Quote(c.Get(ctx, k).Val())
	}
	if c.PTTL(ctx, k).Val() > 0 {
		v += " ttl"
	}
	return v
}

// requireSame fails with the first differences between two snapshots.
func requireSame(t *testing.T, want, got map[string]string, what string) {
	t.Helper()
	var diffs []string
	for k, v := range want {
		if got[k] != v {
			diffs = append(diffs, fmt.Sprintf("%q: was %.80s, now %.80s", k, v, got[k]))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q: new key", k))
		}
	}
	sort.Strings(diffs)
	require.Empty(t, diffs[:min(len(diffs), 10)], "%s: %d keys differ", what, len(diffs))
}

func memDetails(t *testing.T, r *result) map[string]any {
	t.Helper()
	e := r.rep["error"].(map[string]any)
	require.Equal(t, "INSUFFICIENT_MEMORY", e["code"], r.stdout)
	require.Equal(t, false, e["retryable"])
	require.Equal(t, "refused", r.rep["outcome"])
	require.Contains(t, r.rep["next"], "maxmemory")
	return e["details"].(map[string]any)
}

// TestMemoryPreflightNoEviction: maxmemory a little above what Redis uses,
// noeviction: apply refuses with nothing written and says how much memory
// to give; with --skip-memory-check it runs into OOM, stops at a safe point
// with the same code, the lock released and no record lost; once maxmemory
// is raised the rerun completes and every key is right. The estimate is
// compared with the growth measured.
func TestMemoryPreflightNoEviction(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	o := seedTenants(t, c, 4_000)
	before := snapshot(t, c)
	used := memInfo(t, c, "memory", "used_memory")
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+2<<20, 10)).Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 65, r.code, r.stdout)
	d := memDetails(t, r)
	msg := r.rep["error"].(map[string]any)["message"].(string)
	require.Contains(t, msg, "not enough memory")
	require.Contains(t, msg, "Nothing was written")
	require.Contains(t, msg, "CONFIG SET maxmemory")
	require.Equal(t, "noeviction", d["maxmemory_policy"])
	estimate := int64(d["estimated_bytes"].(float64))
	require.Greater(t, d["required_maxmemory"].(float64), d["maxmemory"].(float64))
	requireSame(t, before, snapshot(t, c), "the store must be untouched")
	require.Zero(t, c.Exists(ctx, lockKey).Val())

	// Overridden: Redis refuses a write part-way; a memory stop, not 1.
	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--skip-memory-check", "--scan-count", "500")
	require.Equal(t, 65, r.code, r.stdout)
	memDetails(t, r)
	msg = r.rep["error"].(map[string]any)["message"].(string)
	require.Contains(t, msg, "ran out of memory")
	require.Contains(t, msg, "rerun apply: it resumes")
	require.Contains(t, msg, "OOM")
	require.Zero(t, c.Exists(ctx, lockKey).Val(), "the lock is released")
	after := snapshot(t, c)
	for k := range after {
		if _, ok := before[k]; !ok {
			delete(after, k) // a copy written before the OOM
		}
	}
	requireSame(t, before, after, "no record may be lost or changed")

	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "0").Err())
	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	requireMigrated(t, c, o)
	grown := memInfo(t, c, "memory", "used_memory") - used
	t.Logf("estimated %d bytes for the copies; used_memory grew %d bytes", estimate, grown)
	require.InDelta(t, 1.0, float64(estimate)/float64(grown), 0.5, "the estimate must be within 50%% of the growth")
}

// TestMemoryPreflightEvictionPolicy: with allkeys-lru or volatile-lru (which
// evicts records with a TTL, and the migration lock) a tight maxmemory is
// refused before anything is written; overridden, the first eviction stops
// the run with the memory code and no migration is recorded applied.
func TestMemoryPreflightEvictionPolicy(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"allkeys-lru", "volatile-lru"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			memEvictionCase(t, policy)
		})
	}
}

func memEvictionCase(t *testing.T, policy string) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	seedTenants(t, c, 4_000)
	before := snapshot(t, c)
	used := memInfo(t, c, "memory", "used_memory")
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+2<<20, 10)).Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory-policy", policy).Err())

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 65, r.code, r.stdout)
	d := memDetails(t, r)
	require.Equal(t, policy, d["maxmemory_policy"])
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "would evict keys")
	requireSame(t, before, snapshot(t, c), "the store must be untouched")

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--skip-memory-check", "--scan-count", "500")
	require.Equal(t, 65, r.code, r.stdout)
	d = memDetails(t, r)
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "evicted")
	require.Positive(t, d["evicted_keys"])
	require.Zero(t, c.Exists(ctx, lockKey).Val())
	s := run(t, envs, "migrate", "status", "--redis-only")
	require.Equal(t, "pending", s.rep["outcome"], "nothing may be recorded applied after evictions")
}
