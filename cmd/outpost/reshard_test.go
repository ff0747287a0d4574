package main

// Issue #15, item 1: resharding during apply. A 3-master cluster has slots
// moved by `redis-cli --cluster reshard` in a loop while apply runs; every
// run must end in 0 with every key right, or in 75 TEMPORARY ("the
// cluster is resharding") and be right after one rerun once the
// resharding stopped. Never 0 with a key wrong, never 1 or 4.
// OUTPOST_RESHARD_RUNS sets the number of runs (default 4; 20 for the
// issue's full check).

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

func reshardRuns(t *testing.T) int {
	n := 4
	if v := os.Getenv("OUTPOST_RESHARD_RUNS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err, "OUTPOST_RESHARD_RUNS")
	}
	return n
}

// resharder moves slots between the masters until stopped, one
// `redis-cli --cluster reshard` at a time (never killed mid-move: a slot
// left in flight would need a manual fix).
type resharder struct {
	stop  chan struct{}
	done  chan struct{}
	moves atomic.Int64
	err   atomic.Value
}

func startResharder(t *testing.T, cl *servertest.Cluster, ids []string, slots int) *resharder {
	cli, err := servertest.FindBinary("redis-cli")
	require.NoError(t, err)
	r := &resharder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for i := 0; ; i++ {
			select {
			case <-r.stop:
				return
			default:
			}
			from, to := ids[i%len(ids)], ids[(i+1)%len(ids)]
			out, err := exec.Command(cli, "--cluster", "reshard", cl.Addrs[0], "--cluster-from", from, "--cluster-to", to,
				"--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
			if err != nil {
				r.err.Store(string(out))
				return
			}
			r.moves.Add(1)
			// Pauses between moves, so that some passes see a cluster
			// standing still and some runs can finish.
			select {
			case <-r.stop:
				return
			case <-time.After(time.Duration(i%4) * 250 * time.Millisecond):
			}
		}
	}()
	return r
}

func (r *resharder) halt(t *testing.T) int64 {
	close(r.stop)
	<-r.done
	if v := r.err.Load(); v != nil {
		t.Fatalf("redis-cli --cluster reshard failed: %v", v)
	}
	return r.moves.Load()
}

func clusterIDs(t *testing.T, cl *servertest.Cluster) []string {
	var ids []string
	for _, n := range cl.Nodes {
		id, err := n.Client(t).Do(context.Background(), "CLUSTER", "MYID").Text()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return ids
}

// flushCluster empties every master.
func flushCluster(t *testing.T, cc *redis.ClusterClient) {
	require.NoError(t, cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	}))
}

func TestReliabilityReshardDuringApply(t *testing.T) {
	cl := servertest.RedisCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	ids := clusterIDs(t, cl)
	envs := map[string]string{"REDIS_CLUSTER_ENABLED": "true", "REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0])}
	slow := []string{"migrate", "apply", "--yes", "--redis-only", "--parallel", "1", "--window", "1", "--scan-count", "200"}
	var zero, temp, moves int64
	var mu sync.Mutex
	for i := range reshardRuns(t) {
		flushCluster(t, cc)
		o := seedOptions(2_000)
		o.Seed = int64(100 + i)
		_, err := seed.Write(ctx, cc, o)
		require.NoError(t, err)

		rs := startResharder(t, cl, ids, 40)
		r := run(t, envs, slow...)
		n := rs.halt(t)
		mu.Lock()
		moves += n
		mu.Unlock()
		switch r.code {
		case 0:
			zero++
			require.Equal(t, "applied", r.rep["outcome"], r.stdout)
		case 75:
			temp++
			require.Equal(t, "TEMPORARY", errorCode(r), r.stdout)
			require.Contains(t, r.stdout, "resharding")
			require.True(t, r.rep["error"].(map[string]any)["retryable"].(bool))
			// The rerun once the cluster stands still.
			r2 := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 0, r2.code, "rerun after the resharding stopped:\n%s\n%s", r2.stdout, r2.stderr)
		default:
			t.Fatalf("run %d: exit %d (only 0 or 75 are allowed while the cluster reshards):\n%s\n%s", i+1, r.code, r.stdout, lastLines(r.stderr, 20))
		}
		t.Logf("run %d: exit %d after %d reshards", i+1, r.code, n)
		requireMigrated(t, cc, o)
		v := run(t, envs, "migrate", "verify", "--redis-only")
		require.Equal(t, 0, v.code, v.stdout)
	}
	t.Logf("%d runs exited 0, %d exited 75; %d reshards of 40 slots during the applies", zero, temp, moves)
	require.Positive(t, moves, "the cluster must have moved during the applies")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
