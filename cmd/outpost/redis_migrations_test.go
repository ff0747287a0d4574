package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// rmLine returns the report line of migration id ("redis/001_hash_tags").
func rmLine(t *testing.T, r *result, id string) map[string]any {
	t.Helper()
	ms, _ := r.rep["migrations"].([]any)
	for _, m := range ms {
		if l := m.(map[string]any); l["id"] == id {
			return l
		}
	}
	t.Fatalf("no line %s in %s", id, r.stdout)
	return nil
}

func rmCounts(l map[string]any) map[string]any {
	c, _ := l["counts"].(map[string]any)
	return c
}

func rmIssueKeys(l map[string]any) []string {
	var out []string
	is, _ := l["issues"].([]any)
	for _, i := range is {
		out = append(out, i.(map[string]any)["key"].(string))
	}
	return out
}

func rmSeedOptions(tenants int) seed.Options {
	o := seed.DefaultOptions()
	o.Tenants = tenants
	o.UnrelatedKeys = 20
	return o
}

func rmSeedRedis(t *testing.T, srv *servertest.RedisServer, tenants int) seed.Stats {
	t.Helper()
	st, err := seed.Write(context.Background(), srv.Client(t), rmSeedOptions(tenants))
	require.NoError(t, err)
	return st
}

// TestRedisCleanupRefusedBeforeApply: cleanup exits 65 while 001 is not
// applied, and removes nothing.
func TestRedisCleanupRefusedBeforeApply(t *testing.T) {
	srv := servertest.Redis(t)
	st := rmSeedRedis(t, srv, 20)
	envs := redisEnv(srv)
	r := run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 65, r.code, r.stdout)
	require.Equal(t, "DATA_REFUSED", errorCode(r))
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "001_hash_tags is not applied")
	keys, err := srv.Client(t).Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	n := 0
	for _, k := range keys {
		if !seedtest.IsToolKey(k) {
			n++
		}
	}
	require.Equal(t, st.Keys, n, "nothing removed, nothing written but the lock's fence counter")
}

// TestRedisVerifyDriftAndSample: verify is a full pass with exact counts;
// a hand edit makes it exit 3 listing the key; --sample checks fewer keys
// and says it was a spot check.
func TestRedisVerifyDriftAndSample(t *testing.T) {
	srv := servertest.Redis(t)
	st := rmSeedRedis(t, srv, 300)
	legacy := st.Keys - st.Unrelated
	envs := redisEnv(srv)

	r := run(t, envs, "migrate", "plan", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	est := rmLine(t, r, "redis/001_hash_tags")["estimate"].(map[string]any)
	require.EqualValues(t, legacy, est["value"])
	require.Equal(t, "counted", est["method"])

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)

	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	c := rmCounts(rmLine(t, r, "redis/001_hash_tags"))
	require.EqualValues(t, legacy, c["checked"], "a full pass checks every legacy key")
	require.EqualValues(t, legacy, c["passed"])

	// Drift on three twins: exit 3, each key listed, exact counts.
	ctx := context.Background()
	cl := srv.Client(t)
	var edited []string
	require.NoError(t, seed.ForEachTenant(rmSeedOptions(300), func(tn seed.Tenant) error {
		if len(edited) < 3 && !tn.Deleted {
			twin := "tenant:{" + tn.ID + "}:tenant"
			if err := cl.HSet(ctx, twin, "metadata", `{"edited":"by hand"}`).Err(); err != nil {
				return err
			}
			edited = append(edited, tn.Key.Name)
		}
		return nil
	}))
	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 3, r.code, r.stdout)
	require.Equal(t, "DRIFT", errorCode(r))
	l := rmLine(t, r, "redis/001_hash_tags")
	require.Equal(t, "drift", l["state"])
	require.EqualValues(t, 3, rmCounts(l)["failed"])
	require.EqualValues(t, legacy-3, rmCounts(l)["passed"])
	require.EqualValues(t, 3, l["issues_total"])
	require.ElementsMatch(t, edited, rmIssueKeys(l))
	require.Equal(t, "verified", rmLine(t, r, "redis/002_timestamps")["state"])

	// A spot check.
	r = run(t, envs, "migrate", "verify", "--redis-only", "--sample", "25")
	l = rmLine(t, r, "redis/001_hash_tags")
	checked := rmCounts(l)["checked"].(float64)
	require.Positive(t, checked)
	require.Less(t, checked, float64(legacy)/2, "a sample of about 25 keys, not a full pass")
	require.Contains(t, l["reason"], "spot check")
}

// TestRedisCorruptedApply: keys apply cannot migrate make it exit 4 with
// the keys listed, leave the migration unmarked, and migrate the rest.
func TestRedisCorruptedApply(t *testing.T) {
	srv := servertest.Redis(t)
	rmSeedRedis(t, srv, 50)
	ctx := context.Background()
	cl := srv.Client(t)
	require.NoError(t, cl.RPush(ctx, "tenant:wrongtype", "x").Err())
	require.NoError(t, cl.HSet(ctx, "tenant:tx:destinations", "d1", "{broken").Err())
	require.NoError(t, cl.HSet(ctx, "tenant:tb", "id", "tb", "created_at", "last tuesday").Err())
	envs := redisEnv(srv)

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 4, r.code, r.stdout)
	require.Equal(t, "MIGRATION_FAILED", errorCode(r))
	l := rmLine(t, r, "redis/001_hash_tags")
	require.Equal(t, "failed", l["state"])
	require.ElementsMatch(t, []string{"tenant:wrongtype", "tenant:tx:destinations"}, rmIssueKeys(l))
	require.ElementsMatch(t, []string{"tenant:{tb}:tenant"}, rmIssueKeys(rmLine(t, r, "redis/002_timestamps")))
	for _, n := range []string{"001_hash_tags", "002_timestamps", "003_entity"} {
		require.Empty(t, cl.HGet(ctx, "outpost:migration:"+n, "status").Val(), n)
	}
	require.Equal(t, "list", cl.Type(ctx, "tenant:wrongtype").Val(), "left as it was")
	// The rest was copied.
	require.EqualValues(t, 1, cl.Exists(ctx, "tenant:{tb}:tenant").Val())
	n := 0
	require.NoError(t, seed.ForEachTenant(rmSeedOptions(50), func(tn seed.Tenant) error {
		n += int(cl.Exists(ctx, "tenant:{"+tn.ID+"}:tenant").Val())
		return nil
	}))
	require.Equal(t, 50, n)

	r = run(t, envs, "migrate", "status", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code, "still pending")
}

// TestRedisDeploymentID: with DEPLOYMENT_ID, 001 is recorded not_applicable
// with a reason, 002/003 apply to the prefixed keys, cleanup has nothing
// to do.
func TestRedisDeploymentID(t *testing.T) {
	srv := servertest.Redis(t)
	o := seed.DefaultOptions()
	o.Tenants = 40
	o.Layout = seed.LayoutV1
	o.DeploymentID = "dp_001"
	ctx := context.Background()
	cl := srv.Client(t)
	_, err := seed.Write(ctx, cl, o)
	require.NoError(t, err)
	envs := redisEnv(srv)
	envs["DEPLOYMENT_ID"] = "dp_001"

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	l := rmLine(t, r, "redis/001_hash_tags")
	require.Equal(t, "not_applicable", l["state"])
	require.Contains(t, l["reason"], "DEPLOYMENT_ID")
	st := cl.HGetAll(ctx, "dp_001:outpost:migration:001_hash_tags").Val()
	require.Equal(t, "not_applicable", st["status"])
	require.NotEmpty(t, st["checked_at"])
	require.NotEmpty(t, st["reason"])
	require.Equal(t, "applied", rmLine(t, r, "redis/002_timestamps")["state"])
	diffs, _, err := seedtest.Check(ctx, cl, o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)

	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "nothing_to_clean", r.rep["outcome"])

	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.EqualValues(t, 0, rmCounts(rmLine(t, r, "redis/003_entity"))["failed"])
	require.Positive(t, rmCounts(rmLine(t, r, "redis/003_entity"))["checked"])
}
