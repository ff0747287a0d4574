package main

// Issue #10, faults: the tool is killed (kill -9) at random points of apply
// and of cleanup over many runs, eight applies race for one keyspace, and
// Redis goes away in the middle of a run. Each test ends by checking the
// keyspace key by key against what one clean run must produce
// (seedtest.Expect / seedtest.ExpectAfterCleanup) and by `migrate verify`.
//
// The random points come from a fixed seed, logged; OUTPOST_FAULT_SEED
// replays another.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
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
)

const (
	// faultKills is how many times each of apply and cleanup is killed.
	faultKills = 8
	// faultMinDelay, faultMaxDelay bound how long a run lives before kill
	// -9: from before it has connected to well into its pass.
	faultMinDelay = 50 * time.Millisecond
	faultMaxDelay = 400 * time.Millisecond
	// faultTenants makes apply take a few seconds (about 100k legacy keys):
	// eight kills land all over it, most of them in the first pass.
	faultTenants = 20_000
	// faultSmallTenants is for the tests that need a run in progress, not
	// a long one.
	faultSmallTenants = 6_000
)

// faultRand is the test's random source, seeded from OUTPOST_FAULT_SEED
// or a fixed default, logged so that a failure can be replayed.
func faultRand(t *testing.T) *rand.Rand {
	s := uint64(20251001)
	if v, ok := os.LookupEnv("OUTPOST_FAULT_SEED"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "OUTPOST_FAULT_SEED")
		s = n
	}
	t.Logf("random seed %d (replay with OUTPOST_FAULT_SEED=%d)", s, s)
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// faultSeed writes a legacy (v0) keyspace of n tenants.
func faultSeed(t *testing.T, c redis.UniversalClient, n int) seed.Options {
	t.Helper()
	o := seedOptions(n)
	o.Seed = 10
	_, err := seed.Write(context.Background(), c, o)
	require.NoError(t, err)
	return o
}

// faultRequireData checks every key against expect and runs verify: the
// end of every fault test.
func faultRequireData(t *testing.T, c redis.UniversalClient, envs map[string]string, o seed.Options, expect seedtest.ExpectFunc) {
	t.Helper()
	requireKeyspace(t, c, o, expect)
	v := run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, v.code, v.stdout)
	require.Equal(t, "verified", v.rep["outcome"])
}

// faultKillLoop runs args faultKills times, each killed with SIGKILL after
// a random delay (or left to finish, if it is quicker), then removes the
// lock the dead run left, as an operator would. Between runs nothing may be
// lost: the keyspace never shrinks below floor keys.
func faultKillLoop(t *testing.T, rng *rand.Rand, c redis.UniversalClient, envs map[string]string, floor int64, args ...string) {
	t.Helper()
	ctx := context.Background()
	for i := range faultKills {
		delay := faultMinDelay + time.Duration(rng.Int64N(int64(faultMaxDelay-faultMinDelay)+1))
		p := startJSON(t, envs, args...)
		var how string
		select {
		case <-p.done:
			r := p.wait(t)
			require.Equal(t, 0, r.code, "a run that was not killed must succeed:\n%s\n%s", r.stdout, r.stderr)
			how = "finished (" + r.rep["outcome"].(string) + ")"
		case <-time.After(delay):
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
			<-p.done
			ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				how = "killed"
			} else {
				r := p.wait(t)
				require.Equal(t, 0, r.code, r.stdout)
				how = "finished as killed (" + r.rep["outcome"].(string) + ")"
			}
		}
		t.Logf("run %d: %s after %s; checkpoint: %s", i+1, how, delay, faultCheckpoint(t, c, args[1]))

		n, err := c.DBSize(ctx).Result()
		if cc, ok := c.(*redis.ClusterClient); ok {
			n, err = faultClusterSize(ctx, cc)
		}
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, floor, "keys were lost after run %d", i+1)
		require.Empty(t, faultLitter(t, c), "a killed run left probe keys in the user's keyspace (run %d)", i+1)

		u := run(t, envs, "migrate", "unlock", "--yes")
		require.Equal(t, 0, u.code, u.stdout)
	}
}

// faultCheckpoint summarises the saved checkpoint of a command (apply,
// cleanup): per node, the cursor and how many keys the run had scanned.
func faultCheckpoint(t *testing.T, c redis.UniversalClient, command string) string {
	t.Helper()
	h, err := c.HGetAll(context.Background(), "{.outpost:migration_lock}:checkpoint:"+command).Result()
	require.NoError(t, err)
	var parts []string
	for f, v := range h {
		if id, ok := strings.CutPrefix(f, "node:"); ok {
			var n struct {
				Cursor  string `json:"cursor"`
				Scanned int64  `json:"scanned"`
				Done    bool   `json:"done"`
			}
			_ = json.Unmarshal([]byte(v), &n)
			parts = append(parts, fmt.Sprintf("%s cursor %s scanned %d done %v", id[:min(len(id), 10)], n.Cursor, n.Scanned, n.Done))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// faultLitter lists the tool's temporary keys found right after a kill:
// there must be none, even before any TTL could have expired them.
func faultLitter(t *testing.T, c redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var found []string
	scan := func(ctx context.Context, n *redis.Client) error {
		keys, _, err := n.Scan(ctx, 0, "*outpost:migrate:restore-probe:*", 1_000_000).Result()
		mu.Lock()
		found = append(found, keys...)
		mu.Unlock()
		return err
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		require.NoError(t, cc.ForEachMaster(ctx, scan))
	} else {
		require.NoError(t, scan(ctx, c.(*redis.Client)))
	}
	return found
}

func faultClusterSize(ctx context.Context, cc *redis.ClusterClient) (int64, error) {
	var mu sync.Mutex
	var total int64
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		total += n
		mu.Unlock()
		return err
	})
	return total, err
}

// TestFaultKill9Apply: apply killed at eight random points, resumed each
// time; the run after the last kill completes and every key is right.
func TestFaultKill9Apply(t *testing.T) {
	t.Parallel()
	rng := faultRand(t)
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := faultSeed(t, c, faultTenants)
	seeded, err := c.DBSize(context.Background()).Result()
	require.NoError(t, err)

	faultKillLoop(t, rng, c, envs, seeded, "migrate", "apply", "--yes", "--redis-only")

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Contains(t, []any{"applied", "up_to_date"}, r.rep["outcome"])
	faultRequireData(t, c, envs, o, seedtest.Expect)
}

// TestFaultKill9Cleanup: after a complete apply, cleanup killed at eight
// random points; the run after the last kill completes, every legacy key is
// gone and every copy is right.
func TestFaultKill9Cleanup(t *testing.T) {
	t.Parallel()
	rng := faultRand(t)
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := faultSeed(t, c, faultTenants)
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)

	// What must survive cleanup: everything but the legacy keys.
	var keep int64
	require.NoError(t, seedtest.ExpectAfterCleanup(o, func(string, seedtest.ExpectedKey) error { keep++; return nil }))

	faultKillLoop(t, rng, c, envs, keep, "migrate", "cleanup", "--yes", "--redis-only")

	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Contains(t, []any{"cleaned", "nothing_to_clean"}, r.rep["outcome"])
	faultRequireData(t, c, envs, o, seedtest.ExpectAfterCleanup)
}

// TestFaultConcurrentApplies: eight applies start together, each willing to
// wait for the lock; all exit 0, exactly one applies, the others find
// nothing left, and the keyspace is what one run makes. On a standalone
// server and on a cluster.
func TestFaultConcurrentApplies(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var c redis.UniversalClient
			var envs map[string]string
			if mode == "cluster" {
				cl := servertest.RedisCluster(t)
				c = cl.Client(t)
				envs = map[string]string{"REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0]), "REDIS_CLUSTER_ENABLED": "true"}
			} else {
				srv := servertest.Redis(t)
				c = srv.Client(t)
				envs = redisEnv(srv)
			}
			o := faultSeed(t, c, 3000)

			procs := make([]*proc, 8)
			for i := range procs {
				procs[i] = startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "60s")
			}
			outcomes := map[string]int{}
			tokens := map[float64]bool{}
			for _, p := range procs {
				r := p.waitWithin(t, 90*time.Second)
				require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
				outcomes[r.rep["outcome"].(string)]++
				l := r.rep["lock"].(map[string]any)
				require.Equal(t, "released", l["state"])
				tokens[l["token"].(float64)] = true
			}
			require.Equal(t, map[string]int{"applied": 1, "up_to_date": 7}, outcomes)
			require.Len(t, tokens, 8, "each run held the lock in turn, with its own fencing token")
			faultRequireData(t, c, envs, o, seedtest.Expect)
		})
	}
}

// TestFaultRedisGoneMidApply: Redis stops in the middle of an apply (and
// comes back with its data: append-only file). The running apply exits 69,
// retryable, with a valid report that says which migrations are unfinished;
// after the operator removes the lock the dead connection could not
// release, the rerun completes and the data is right.
func TestFaultRedisGoneMidApply(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := faultSeed(t, c, faultTenants/2)

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	p.waitEvent(t, "checkpoint_saved", 30*time.Second)
	srv.Stop(t)
	r := p.waitWithin(t, 60*time.Second)
	srv.Start(t)
	c = srv.Client(t)

	require.Contains(t, []int{69, 75}, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	e := r.rep["error"].(map[string]any)
	require.Equal(t, true, e["retryable"])
	if r.code == 69 {
		require.Equal(t, "STORE_UNREACHABLE", e["code"])
	}
	for _, m := range r.rep["migrations"].([]any) {
		require.NotEqual(t, "applied", m.(map[string]any)["state"], "a migration cut short is not applied: %v", m)
	}
	t.Logf("apply with Redis gone: exit %d, %s: %s", r.code, e["code"], e["message"])

	// The run could not release its lease with Redis gone: status names it,
	// and the operator removes it.
	s := run(t, envs, "migrate", "status", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 2, s.code, s.stdout)
	require.Equal(t, "pending", s.rep["outcome"])
	l := s.rep["lock"].(map[string]any)
	require.Equal(t, "held", l["state"], s.stdout)
	require.Equal(t, r.rep["run_id"], l["holder"].(map[string]any)["run_id"])
	u := run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, 0, u.code, u.stdout)
	require.Equal(t, "unlocked", u.rep["outcome"])

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	faultRequireData(t, c, envs, o, seedtest.Expect)
}

// TestFaultRedisRestartMidApply: Redis restarts (stop and start at once)
// under a running apply. The run either rides it out or stops with a
// retryable code; either way the data ends right, and a cursor of the old
// server process is never trusted on the new one.
func TestFaultRedisRestartMidApply(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := faultSeed(t, c, faultSmallTenants)

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	p.waitEvent(t, "checkpoint_saved", 30*time.Second)
	srv.Restart(t)
	r := p.waitWithin(t, 60*time.Second)
	c = srv.Client(t)
	t.Logf("apply across a restart: exit %d, outcome %v, error %v", r.code, r.rep["outcome"], r.rep["error"])
	switch r.code {
	case 0:
		require.Equal(t, "applied", r.rep["outcome"])
	case 69, 75:
		require.Equal(t, true, r.rep["error"].(map[string]any)["retryable"])
		if l, _ := r.rep["lock"].(map[string]any); l == nil || l["state"] != "released" {
			u := run(t, envs, "migrate", "unlock", "--yes")
			require.Equal(t, 0, u.code, u.stdout)
		}
		r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
		require.Equal(t, 0, r.code, r.stdout)
	default:
		t.Fatalf("exit %d is neither success nor retryable:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	faultRequireData(t, c, envs, o, seedtest.Expect)
}
