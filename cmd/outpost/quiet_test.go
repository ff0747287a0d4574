package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

// TestQuietApplySeesNoOtherWrites: with no other client, a real apply
// (lock, lease, fenced write scripts) reports no write by others, runs no
// catch-up and no confirming pass, and reads each record once, whichever
// way it writes: RESTORE batches for 001's copies (layout 0), the
// compare-and-set script for 002/003 (layout 1), on a standalone server
// and on a 3-master cluster. Found: scripts' writes were named by the
// server as another client's, so a quiet 480k-key apply re-read 96k keys
// and past 100k ran the full confirming pass (22 s instead of ~10).
func TestQuietApplySeesNoOtherWrites(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		for _, layout := range []int{seed.LayoutV0, seed.LayoutV1} {
			name := map[bool]string{false: "standalone", true: "cluster"}[cluster] + "/layout" + itoa(layout)
			t.Run(name, func(t *testing.T) {
				c, envs := quietStore(t, cluster)
				o := rmSeedOptions(300)
				o.Layout = layout
				st, err := seed.Write(context.Background(), c, o)
				require.NoError(t, err)
				if layout == seed.LayoutV1 {
					// As Outpost leaves it after 001 (its record
					// written): the names are then not ambiguous.
					require.NoError(t, c.HSet(context.Background(), "outpost:migration:001_hash_tags", "status", "applied", "applied_at", "2026-01-01T00:00:00Z").Err())
				}
				resetStats(t, c)
				r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "-o", "json")
				require.Equal(t, 0, r.code, r.stdout)
				// The pass's watch is reported on its first line.
				first := "redis/001_hash_tags"
				if layout == seed.LayoutV1 {
					first = "redis/002_timestamps"
				}
				others, ok := rmLine(t, r, first)["others"].(map[string]any)
				require.True(t, ok, r.stdout)
				require.EqualValues(t, 1160, rmCounts(rmLine(t, r, "redis/003_entity"))["changed"], "the pass did the work")
				require.Equal(t, "client_tracking", others["detection"], others["reason"])
				require.EqualValues(t, 0, others["keys_changed"], "writes by others on a quiet keyspace: %v", others)
				require.EqualValues(t, 0, others["rounds"], "catch-up rounds")
				require.Equal(t, false, others["confirming_pass"])
				// No second look: a copy reads each legacy record once
				// (HGETALL); an update reads each hash-tagged record at
				// most twice (HMGET: once to tell an ambiguous name's
				// layout by its content, once for the compare-and-set).
				reads := commandCalls(t, c, "hgetall") + commandCalls(t, c, "hmget")
				perKey := int64(1)
				if layout == seed.LayoutV1 {
					perKey = 2
				}
				require.LessOrEqual(t, reads, perKey*int64(st.Keys), "reads of %d keys", st.Keys)
			})
		}
	}
}

func quietStore(t *testing.T, cluster bool) (goredis.UniversalClient, map[string]string) {
	if !cluster {
		srv := servertest.Redis(t)
		return srv.Client(t), redisEnv(srv)
	}
	cl := servertest.RedisCluster(t)
	return cl.Client(t), map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(cl.Ports[0]), "REDIS_CLUSTER_ENABLED": "true"}
}

// resetStats zeroes INFO commandstats on every master.
func resetStats(t *testing.T, c goredis.UniversalClient) {
	ctx := context.Background()
	if cc, ok := c.(*goredis.ClusterClient); ok {
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return m.ConfigResetStat(ctx).Err() }))
		return
	}
	require.NoError(t, c.ConfigResetStat(ctx).Err())
}

// commandCalls sums a command's calls over the masters since resetStats.
func commandCalls(t *testing.T, c goredis.UniversalClient, name string) int64 {
	ctx := context.Background()
	var n int64
	one := func(m *goredis.Client) error {
		n += statCalls(t, m.Info(ctx, "commandstats").Val(), name)
		return nil
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		var ms []*goredis.Client
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { ms = append(ms, m); return nil }))
		for _, m := range ms {
			require.NoError(t, one(m))
		}
		return n
	}
	require.NoError(t, one(c.(*goredis.Client)))
	return n
}

// statCalls reads a command's calls from INFO commandstats.
func statCalls(t *testing.T, info, cmd string) int64 {
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_"+cmd+":calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}
