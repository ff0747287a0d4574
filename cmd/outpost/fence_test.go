package main

// Issue #15, item 2: every data write is fenced. A run stopped with SIGSTOP
// past its lease, while another run completes and the new-layout keys are
// then changed and deleted (as the new server does), must write nothing
// when it is continued: every key is as the test left it, and the run
// exits 75 LOCK_LOST.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// keyspaceSnapshot is every data key (the tool's own keys left out) with
// its fields and whether it has a TTL, one string per key, sorted.
func keyspaceSnapshot(t *testing.T, c redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	require.NoError(t, seedtest.ScanAll(ctx, c, func(keys []string) error {
		pipe := c.Pipeline()
		types := make([]*redis.StatusCmd, len(keys))
		hs := make([]*redis.MapStringStringCmd, len(keys))
		ttls := make([]*redis.DurationCmd, len(keys))
		for i, k := range keys {
			types[i] = pipe.Type(ctx, k)
			hs[i] = pipe.HGetAll(ctx, k)
			ttls[i] = pipe.PTTL(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		for i, k := range keys {
			if seedtest.IsToolKey(k) || types[i].Val() == "none" {
				continue
			}
			fs := make([]string, 0, len(hs[i].Val()))
			for f, x := range hs[i].Val() {
				fs = append(fs, f+"="+x)
			}
			sort.Strings(fs)
			out = append(out, fmt.Sprintf("%q %s %s ttl=%v", k, types[i].Val(), strings.Join(fs, "&"), ttls[i].Val() > 0))
		}
		return nil
	}))
	sort.Strings(out)
	return out
}

// actAsNewServer changes every tenth new-layout key and deletes the rest.
func actAsNewServer(t *testing.T, c redis.UniversalClient) (changed, deleted int) {
	t.Helper()
	ctx := context.Background()
	var names []string
	require.NoError(t, seedtest.ScanAll(ctx, c, func(keys []string) error {
		for _, k := range keys {
			if strings.HasPrefix(k, "tenant:{") {
				names = append(names, k)
			}
		}
		return nil
	}))
	for i, k := range names {
		if i%10 == 0 {
			require.NoError(t, c.HSet(ctx, k, "written_by", "new-server").Err())
			changed++
		} else {
			require.NoError(t, c.Del(ctx, k).Err())
			deleted++
		}
	}
	return changed, deleted
}

func testPausedRunWritesNothing(t *testing.T, c redis.UniversalClient, envs map[string]string) {
	engSeed(t, c, 10_000)
	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only", "--lock-ttl", "6s")
	p.waitEvent(t, "checkpoint_saved", 30*time.Second)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
	stopped := true
	defer func() {
		if stopped {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	time.Sleep(6500 * time.Millisecond) // past the lease's TTL: Redis expires it

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	changed, deleted := actAsNewServer(t, c)
	require.Positive(t, deleted)
	before := keyspaceSnapshot(t, c)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGCONT))
	stopped = false
	res := p.waitWithin(t, 60*time.Second)
	require.Equal(t, 75, res.code, res.stdout)
	require.Equal(t, "LOCK_LOST", errorCode(res), res.stdout)
	after := keyspaceSnapshot(t, c)
	require.Equal(t, len(before), len(after), "the paused run created or deleted keys after it lost its lease")
	diff := 0
	for i := range before {
		if before[i] != after[i] {
			diff++
			if diff < 5 {
				t.Errorf("changed after the lease was lost: %s -> %s", before[i], after[i])
			}
		}
	}
	require.Zero(t, diff, "keys written after the lease was lost")
	t.Logf("%d keys unchanged after SIGCONT; %d new-layout keys changed and %d deleted by the 'new server' stayed so", len(after), changed, deleted)
}

func TestReliabilityPausedRunWritesNothingStandalone(t *testing.T) {
	srv := servertest.Redis(t)
	testPausedRunWritesNothing(t, srv.Client(t), redisEnv(srv))
}

func TestReliabilityPausedRunWritesNothingCluster(t *testing.T) {
	cl := servertest.RedisCluster(t)
	envs := map[string]string{"REDIS_CLUSTER_ENABLED": "true", "REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0])}
	testPausedRunWritesNothing(t, cl.Client(t), envs)
}
