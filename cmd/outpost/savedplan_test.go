package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

// keyspaceDigest hashes every key with its content and TTL presence,
// the tool's own keys left out: equal digests mean an untouched store.
func keyspaceDigest(t *testing.T, c *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		if seedtest.IsToolKey(k) {
			continue
		}
		// A hashtable-encoded hash DUMPs its fields in dict order, which a
		// read can change (incremental rehashing): compare sorted fields.
		var dump string
		if c.Type(ctx, k).Val() == "hash" {
			fields := c.HGetAll(ctx, k).Val()
			names := make([]string, 0, len(fields))
			for f := range fields {
				names = append(names, f)
			}
			sort.Strings(names)
			for _, f := range names {
				dump += f + "\x00" + fields[f] + "\x00"
			}
		} else {
			var err error
			dump, err = c.Dump(ctx, k).Result()
			require.NoError(t, err)
		}
		ttl := c.PTTL(ctx, k).Val() > 0
		_, _ = h.Write([]byte(k + "\x00" + dump + "\x00" + map[bool]string{true: "ttl", false: "-"}[ttl] + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func savePlan(t *testing.T, envs map[string]string, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.json")
	r := run(t, envs, append([]string{"migrate", "plan", "--out", path}, args...)...)
	require.Equal(t, 0, r.code, r.stdout)
	require.Contains(t, r.rep["msg"], "plan saved to "+path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = report.ReadSavedPlan(strings.NewReader(string(b)))
	require.NoError(t, err, "the saved plan validates against schemas/savedplan.json and its digest")
	return path
}

// TestSavedPlanAppliedUnchanged: a plan saved and applied to an unchanged
// store gives the same keyspace as a plain apply, without a prompt.
func TestSavedPlanAppliedUnchanged(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	o := seedTenants(t, c, 300)
	envs := redisEnv(srv)
	path := savePlan(t, envs, "--redis-only")

	r := run(t, envs, "migrate", "apply", "--redis-only", "--yes", "--plan", path)
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	require.EqualValues(t, 3, r.rep["summary"].(map[string]any)["applied"])
	requireMigrated(t, c, o)

	// The same plan again: the stores no longer match (nothing is pending).
	r = run(t, envs, "migrate", "apply", "--redis-only", "--yes", "--plan", path)
	require.Equal(t, 65, r.code, r.stdout)
	require.Equal(t, "PLAN_MISMATCH", errorCode(r))
}

// TestSavedPlanRefusedWhenStoresChanged: each way the stores can move away
// from a reviewed plan refuses the apply with 65 PLAN_MISMATCH, and the
// store is left exactly as it was.
func TestSavedPlanRefusedWhenStoresChanged(t *testing.T) {
	cases := map[string]func(t *testing.T, srv *servertest.RedisServer, envs map[string]string) map[string]string{
		"another pending set": func(t *testing.T, srv *servertest.RedisServer, envs map[string]string) map[string]string {
			r := run(t, envs, "migrate", "apply", "--redis-only", "--yes", "--target", "001")
			require.Equal(t, 0, r.code, r.stdout)
			return envs
		},
		"keyspace grew past the tolerance": func(t *testing.T, srv *servertest.RedisServer, envs map[string]string) map[string]string {
			o := seedOptions(300)
			o.Seed = 99 // other tenants, same shapes
			_, err := seed.Write(context.Background(), srv.Client(t), o)
			require.NoError(t, err)
			return envs
		},
		"another target": func(t *testing.T, srv *servertest.RedisServer, envs map[string]string) map[string]string {
			other := servertest.Redis(t)
			seedTenants(t, other.Client(t), 300)
			return redisEnv(other)
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			srv := servertest.Redis(t)
			c := srv.Client(t)
			seedTenants(t, c, 300)
			envs := redisEnv(srv)
			path := savePlan(t, envs, "--redis-only")
			applyEnv := change(t, srv, envs)
			target := c
			if applyEnv["REDIS_PORT"] != envs["REDIS_PORT"] {
				target = redis.NewClient(&redis.Options{Addr: applyEnv["REDIS_HOST"] + ":" + applyEnv["REDIS_PORT"]})
				defer target.Close()
			}
			before := keyspaceDigest(t, target)
			r := run(t, applyEnv, "migrate", "apply", "--redis-only", "--yes", "--plan", path)
			require.Equal(t, 65, r.code, r.stdout)
			require.Equal(t, "PLAN_MISMATCH", errorCode(r))
			require.NotEmpty(t, r.rep["error"].(map[string]any)["details"].(map[string]any)["differences"])
			require.Contains(t, r.rep["next"], "plan --out")
			require.Equal(t, before, keyspaceDigest(t, target), "the store is untouched")
		})
	}
}

// TestSavedPlanTamperedOrForeign: a plan edited after it was written, a
// report of another kind and a file that is not JSON are all refused
// before any store is touched.
func TestSavedPlanTamperedOrForeign(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	seedTenants(t, c, 50)
	envs := redisEnv(srv)
	path := savePlan(t, envs, "--redis-only")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	doc["tolerance"] = 1.0 // widen the tolerance by hand
	tampered, _ := json.Marshal(doc)
	statusReport := run(t, envs, "migrate", "status", "--redis-only").stdout

	before := keyspaceDigest(t, c)
	for name, content := range map[string]string{
		"tampered": string(tampered),
		"a report": statusReport,
		"not json": "apply everything",
	} {
		p := filepath.Join(t.TempDir(), "plan.json")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		r := run(t, envs, "migrate", "apply", "--redis-only", "--yes", "--plan", p)
		require.Equal(t, 65, r.code, "%s: %s", name, r.stdout)
		require.Equal(t, "PLAN_MISMATCH", errorCode(r), name)
	}
	r := run(t, envs, "migrate", "apply", "--redis-only", "--yes", "--plan", path, "--target", "001")
	require.Equal(t, 64, r.code, r.stdout)
	require.Equal(t, before, keyspaceDigest(t, c))
}

// TestSavedPlanSQLVersion: a plan saved at one schema version is refused
// once the log store moved to another; --show-sql lists the statements
// with their locks.
func TestSavedPlanSQLVersion(t *testing.T) {
	pg := servertest.Postgres(t)
	envs := map[string]string{"POSTGRES_URL": pg.URL}
	path := savePlan(t, envs, "--sql-only")
	r := run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--target", "sql/000002")
	require.Equal(t, 0, r.code, r.stdout)
	r = run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--plan", path)
	require.Equal(t, 65, r.code, r.stdout)
	require.Equal(t, "PLAN_MISMATCH", errorCode(r))
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "SQL schema is now at version 2")

	r = run(t, envs, "migrate", "plan", "--sql-only", "--show-sql")
	require.Equal(t, 0, r.code, r.stdout)
	l := rmLine(t, r, "sql/000009_response_data_jsonb_to_text")
	stmts := l["statements"].([]any)
	require.NotEmpty(t, stmts)
	var rewrites []string
	for _, s := range stmts {
		st := s.(map[string]any)
		if st["rewrites"] == true {
			rewrites = append(rewrites, st["lock"].(string))
		}
	}
	require.NotEmpty(t, rewrites, "000009 rewrites a table under an exclusive lock")
	require.Contains(t, rewrites[0], "ACCESS EXCLUSIVE")
	require.Nil(t, rmLine(t, r, "sql/000001_init")["statements"], "applied migrations list no statements")
}

// TestVerifyNothingApplied: verify before any apply says so, and exits 2
// under --detailed-exitcode so an `apply; verify` gate notices.
func TestVerifyNothingApplied(t *testing.T) {
	srv := servertest.Redis(t)
	seedTenants(t, srv.Client(t), 20)
	envs := redisEnv(srv)
	r := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "pending", r.rep["outcome"])
	require.Contains(t, r.rep["msg"], "nothing to verify")
	r = run(t, envs, "migrate", "verify", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code, r.stdout)
	require.Equal(t, "pending", r.rep["outcome"])
}

// TestPlanShowExamples: plan --show-examples N shows N real records of each
// kind before and after, the twin named, timestamps converted, entity set,
// and the encrypted credentials masked; the store is untouched.
func TestPlanShowExamples(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	seedTenants(t, c, 40)
	envs := redisEnv(srv)
	before := keyspaceDigest(t, c)
	r := run(t, envs, "migrate", "plan", "--redis-only", "--show-examples", "2")
	require.Equal(t, 0, r.code, r.stdout)
	l := rmLine(t, r, "redis/001_hash_tags")
	require.Regexp(t, `^\d+ keys to create \(copies\), \d+ already right and kept as they are$`, l["estimate"].(map[string]any)["note"])
	require.Regexp(t, `keys to change in place`, rmLine(t, r, "redis/002_timestamps")["estimate"].(map[string]any)["note"])
	ex := l["examples"].([]any)
	kinds, maskedCreds := map[string]int{}, 0
	for _, e := range ex {
		m := e.(map[string]any)
		kinds[m["kind"].(string)]++
		key, after := m["key"].(string), m["after"].(map[string]any)
		require.True(t, strings.HasPrefix(m["after_key"].(string), "tenant:{"), "the twin is hash-tagged: %v", m["after_key"])
		require.False(t, strings.HasPrefix(key, "tenant:{"), "the example is a legacy key: %s", key)
		if m["kind"] == "summary" {
			continue
		}
		if _, ok := m["before"].(map[string]any)["created_at"]; ok {
			require.Regexp(t, `^\d+$`, after["created_at"], "created_at becomes Unix ms")
		}
		require.Equal(t, m["kind"], after["entity"])
		if cred, ok := after["credentials"]; ok {
			require.Regexp(t, `^<masked: \d+ bytes>$`, cred)
			require.Regexp(t, `^<masked: \d+ bytes>$`, m["before"].(map[string]any)["credentials"])
			maskedCreds++
		}
	}
	require.Equal(t, map[string]int{"tenant": 2, "summary": 2, "destination": 2}, kinds)
	require.Positive(t, maskedCreds, "the destinations shown carry credentials, masked")
	require.Equal(t, before, keyspaceDigest(t, c), "plan changes nothing")

	r = run(t, envs, "migrate", "plan", "--redis-only", "--show-examples", "-1")
	require.Equal(t, 64, r.code, r.stdout)
}

// TestPlanCountsWhat000005Deletes: plan counts the deliveries 000005
// deletes (those whose event is gone) exactly, and apply deletes exactly
// that many.
func TestPlanCountsWhat000005Deletes(t *testing.T) {
	pg := servertest.Postgres(t)
	srv := servertest.Redis(t)
	envs := redisEnv(srv)
	envs["POSTGRES_URL"] = pg.URL
	s := run(t, envs, "dev", "seed", "--tenants", "1", "--unrelated", "0", "--pg-version", "4", "--pg-events", "4000")
	require.Equal(t, 0, s.code, s.stdout)

	r := run(t, envs, "migrate", "plan", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	est := rmLine(t, r, "sql/000005_denormalize_attempts")["estimate"].(map[string]any)
	deletes, ok := est["deletes"].(float64)
	require.True(t, ok, "the plan counts the rows 000005 deletes: %v", est)
	require.Positive(t, deletes, "the seeded log has deliveries without an event")

	r = run(t, envs, "migrate", "apply", "--sql-only", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	c := rmCounts(rmLine(t, r, "sql/000005_denormalize_attempts"))
	require.Equal(t, deletes, c["deleted"], "apply deleted exactly what plan counted")
}

// TestPlanMemoryEstimate: plan's estimate of what 001's copies add is
// within 25% of the growth apply then causes, and plan warns when the
// copies would not fit under maxmemory.
func TestPlanMemoryEstimate(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	seedTenants(t, c, 3000)
	envs := redisEnv(srv)
	r := run(t, envs, "migrate", "plan", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	mem, ok := rmLine(t, r, "redis/001_hash_tags")["memory"].(map[string]any)
	require.True(t, ok, "plan shows the memory 001's copies take: %s", r.stdout)
	est := mem["estimated_bytes"].(float64)
	require.Empty(t, mem["warning"], "no maxmemory: nothing to warn about")

	used := func() float64 {
		info := c.Info(ctx, "memory").Val()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				var n float64
				_, err := fmt.Sscan(v, &n)
				require.NoError(t, err)
				return n
			}
		}
		t.Fatal("no used_memory")
		return 0
	}
	before := used()
	r = run(t, envs, "migrate", "apply", "--redis-only", "--yes")
	require.Equal(t, 0, r.code, r.stdout)
	growth := used() - before
	t.Logf("estimated %.0f bytes, measured growth %.0f bytes", est, growth)
	require.InDelta(t, growth, est, 0.25*growth, "the estimate is within 25%% of the measured growth")

	// A maxmemory below what the copies need: plan warns, with the numbers.
	other := servertest.Redis(t)
	oc := other.Client(t)
	seedTenants(t, oc, 3000)
	require.NoError(t, oc.ConfigSet(ctx, "maxmemory", fmt.Sprint(int64(before)+int64(est)/4)).Err())
	r = run(t, redisEnv(other), "migrate", "plan", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	mem = rmLine(t, r, "redis/001_hash_tags")["memory"].(map[string]any)
	require.Contains(t, mem["warning"], "not enough memory")
}
