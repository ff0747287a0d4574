package main

// Issue #3 through the real command line: one migration at a time, with a
// leased, fenced lock that names its holder. Every invocation's report is
// validated against its schema (run and proc.wait go through checkReport).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
)

const (
	// bigTenants makes apply take a couple of seconds on a test server:
	// long enough for every concurrent run to meet the winner's lock and
	// for the test to look at the lock while the winner holds it.
	bigTenants = 10000
	// hugeTenants makes apply take several seconds: several times a lease
	// of --lock-ttl 1s.
	hugeTenants = 20000
	// smallTenants gives a run several chunks per node after its first
	// checkpoint, time enough to act on it mid-run.
	smallTenants = 3000
)

// lockStore is a Redis target: a standalone server or a three-master
// cluster, with the environment the CLI reads and a client for the test.
type lockStore struct {
	env    map[string]string
	client redis.UniversalClient
}

// lockModes runs a test on a standalone server and on a cluster, each
// started fresh for it.
var lockModes = []struct {
	name  string
	start func(t *testing.T) lockStore
}{
	{"standalone", func(t *testing.T) lockStore {
		srv := servertest.Redis(t)
		return lockStore{env: redisEnv(srv), client: srv.Client(t)}
	}},
	{"cluster", func(t *testing.T) lockStore {
		c := servertest.RedisCluster(t)
		// The CLI is given one node, as Outpost is; it discovers the rest.
		env := map[string]string{"REDIS_CLUSTER_ENABLED": "true", "REDIS_HOST": c.Host, "REDIS_PORT": itoa(c.Ports[0])}
		return lockStore{env: env, client: c.Client(t)}
	}},
}

// obj walks a report: obj(r.rep, "error", "details", "holder").
func obj(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, _ := m[k].(map[string]any)
		if next == nil {
			return nil
		}
		m = next
	}
	return m
}

// heldBy reads the lock value this tool writes: the holder's run id and
// pid; ok is false while the key is absent.
func heldBy(t *testing.T, c redis.UniversalClient, key string) (runID string, pid int, ok bool) {
	t.Helper()
	raw, err := c.Get(context.Background(), key).Result()
	if err == redis.Nil {
		return "", 0, false
	}
	require.NoError(t, err)
	var v struct {
		RunID string `json:"run_id"`
		PID   int    `json:"pid"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &v), raw)
	return v.RunID, v.PID, true
}

// waitHeld polls the lock key until a holder appears.
func waitHeld(t *testing.T, c redis.UniversalClient, timeout time.Duration) (string, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if id, pid, ok := heldBy(t, c, lockKey); ok {
			return id, pid
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("nobody took the lock within %s", timeout)
	return "", 0
}

// requireHolder checks a report.Holder as JSON: this run, this host.
func requireHolder(t *testing.T, h map[string]any, runID string, pid int, command string) {
	t.Helper()
	require.NotNil(t, h)
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, runID, h["run_id"], h)
	require.EqualValues(t, pid, h["pid"], h)
	require.Equal(t, host, h["host"], h)
	require.Equal(t, command, h["command"], h)
	require.NotEmpty(t, h["started_at"], h)
	require.Equal(t, version, h["tool_version"], h)
	require.Positive(t, h["token"], h)
}

func num(v any) float64 { f, _ := v.(float64); return f }

// N runs of apply start together with --lock-timeout 0s: exactly one
// applies, the others exit 75 LOCK_HELD naming it. While the winner holds
// the lock, status shows it, Outpost's own SET NX is refused, and a run with
// --lock-timeout 30s waits and then finds nothing left to do.
func TestLockConcurrentApply(t *testing.T) {
	for _, mode := range lockModes {
		t.Run(mode.name, func(t *testing.T) {
			st := mode.start(t)
			ctx := context.Background()
			seedTenants(t, st.client, bigTenants)

			const n = 8
			procs := make([]*proc, n)
			for i := range procs {
				procs[i] = startJSON(t, st.env, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
			}
			winnerRun, winnerPID := waitHeld(t, st.client, 20*time.Second)
			var winner *proc
			for _, p := range procs {
				if p.pid() == winnerPID {
					winner = p
				}
			}
			require.NotNil(t, winner, "the lock names pid %d, none of ours", winnerPID)

			// status while the run holds the lock names it.
			s := run(t, st.env, "migrate", "status", "--redis-only")
			require.Equal(t, 0, s.code, s.stdout)
			l := obj(s.rep, "lock")
			require.Equal(t, "held", l["state"], l)
			require.Equal(t, lockKey, l["key"])
			require.Equal(t, false, l["foreign"])
			requireHolder(t, obj(l, "holder"), winnerRun, winnerPID, "apply")
			require.GreaterOrEqual(t, num(l["age_ms"]), 0.0)
			require.Greater(t, num(l["ttl_ms"]), 0.0)
			require.LessOrEqual(t, num(l["ttl_ms"]), float64(time.Hour.Milliseconds()))

			// Outpost's migrator takes the same key with SET NX: refused.
			ok, err := st.client.SetNX(ctx, lockKey, "3f1c6a0e-1b2c-4d5e-8f90-a1b2c3d4e5f6", time.Hour).Result()
			require.NoError(t, err)
			require.False(t, ok, "Outpost's SET NX must fail while this tool holds the lock")

			waiter := startJSON(t, st.env, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "30s")

			var winnerToken float64
			for _, p := range procs {
				r := p.wait(t)
				if p == winner {
					require.Equal(t, 0, r.code, r.stderr)
					require.Equal(t, "applied", r.rep["outcome"])
					require.Equal(t, winnerRun, r.rep["run_id"])
					require.Equal(t, "released", obj(r.rep, "lock")["state"])
					winnerToken = num(obj(r.rep, "lock")["token"])
					continue
				}
				require.Equal(t, 75, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
				require.Equal(t, "LOCK_HELD", errorCode(r))
				require.Equal(t, "locked", r.rep["outcome"])
				require.Equal(t, true, obj(r.rep, "error")["retryable"])
				require.Contains(t, obj(r.rep, "error")["message"], winnerRun)
				requireHolder(t, obj(r.rep, "error", "details", "holder"), winnerRun, winnerPID, "apply")
				// The report's lock is what Inspect saw after the refusal:
				// the winner, unless it had finished by then.
				if rl := obj(r.rep, "lock"); rl["state"] == "held" {
					require.Equal(t, winnerRun, obj(rl, "holder")["run_id"])
				}
				require.Zero(t, p.countEvents("lock_acquired"))
			}

			w := waiter.wait(t)
			require.Equal(t, 0, w.code, w.stderr)
			require.Equal(t, "up_to_date", w.rep["outcome"])
			wl := obj(w.rep, "lock")
			require.Equal(t, "released", wl["state"])
			require.Positive(t, num(wl["waited_ms"]))
			require.Greater(t, num(wl["token"]), winnerToken, "the waiter's lease came after the winner's")
			waiting := waiter.waitEvent(t, "lock_waiting", 0)
			require.Equal(t, winnerRun, obj(waiting, "fields")["holder_run_id"])

			require.EqualValues(t, 0, st.client.Exists(ctx, lockKey).Val(), "every run released the lock")
		})
	}
}

// A lease shorter than the run is renewed: with --lock-ttl 1s the key's TTL
// is a second, the run outlives it several times over and still succeeds.
//
// The lease lives on one key whatever the topology, so one standalone server
// shows it; the cluster tests above and below use the same lease.
func TestLockLeaseRenewed(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	seedTenants(t, c, 2*hugeTenants)

	p := startJSON(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only", "--lock-ttl", "1s",
		// Small chunks one at a time: a run of a few seconds here.
		"--scan-count", "200", "--parallel", "1", "--window", "1")
	acq := p.waitEvent(t, "lock_acquired", 10*time.Second)
	require.EqualValues(t, 1000, obj(acq, "fields")["ttl_ms"])
	pttl, err := c.PTTL(ctx, lockKey).Result()
	require.NoError(t, err)
	require.True(t, pttl > 0 && pttl <= time.Second, "the key carries the short TTL; PTTL %s", pttl)
	renewed := p.waitEvent(t, "lock_renewed", 10*time.Second)
	require.EqualValues(t, 1, obj(renewed, "fields")["renewals"])

	r := p.wait(t)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "applied", r.rep["outcome"])
	l := obj(r.rep, "lock")
	require.Equal(t, "released", l["state"])
	t.Logf("apply took %vms under a 1s lease, renewed %v times", r.rep["duration_ms"], l["renewals"])
	require.Greater(t, num(r.rep["duration_ms"]), 2000.0, "the run must outlive its 1s lease twice over to show renewal")
	require.GreaterOrEqual(t, num(l["renewals"]), 2.0, l)
	require.EqualValues(t, p.countEvents("lock_renewed"), l["renewals"])
	require.Zero(t, p.countEvents("lock_lost"))

	// The flag is for tests: hidden from help, and a TTL renewal cannot keep
	// up with is refused.
	out, _ := exec.Command(binary(t), "migrate", "apply", "--help").CombinedOutput()
	require.Contains(t, string(out), "--lock-timeout")
	require.NotContains(t, string(out), "--lock-ttl")
	r = run(t, nil, "migrate", "apply", "--yes", "--redis-only", "--lock-ttl", "10ms")
	require.Equal(t, 64, r.code)
	require.Equal(t, "USAGE", errorCode(r))
}

// A holder whose lock was deleted stops with LOCK_LOST and moves nothing:
// the checkpoint read right after the deletion is the one left at the end,
// because every checkpoint write is fenced by the lock value.
func TestLockLostStopsTheHolder(t *testing.T) {
	for _, mode := range lockModes {
		t.Run(mode.name, func(t *testing.T) {
			st := mode.start(t)
			ctx := context.Background()
			seedTenants(t, st.client, smallTenants)

			p := startJSON(t, st.env, "migrate", "apply", "--yes", "--redis-only")
			p.waitEvent(t, "checkpoint_saved", 10*time.Second)
			require.EqualValues(t, 1, st.client.Del(ctx, lockKey).Val())
			before, err := st.client.HGetAll(ctx, checkpointKey).Result()
			require.NoError(t, err)

			r := p.wait(t)
			require.Equal(t, 75, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			require.Equal(t, "LOCK_LOST", errorCode(r))
			require.Equal(t, "failed", r.rep["outcome"])
			require.Equal(t, "lost", obj(r.rep, "lock")["state"])
			require.Contains(t, r.rep["next"], "rerun")
			require.Positive(t, p.countEvents("lock_lost"))

			after, err := st.client.HGetAll(ctx, checkpointKey).Result()
			require.NoError(t, err)
			require.Equal(t, cursors(t, before), cursors(t, after), "a node's cursor moved after the lock was deleted")
			require.Equal(t, before, after, "the checkpoint changed after the lock was deleted")
			midPass := false
			for _, cur := range cursors(t, before) {
				midPass = midPass || cur != "0"
			}
			require.True(t, midPass, "the lock must be deleted mid-pass: %v", before)
			// Nothing recorded as applied, and the lock stays free: the
			// lost holder neither recreated nor deleted anything there.
			for _, m := range []string{"001_hash_tags", "002_timestamps", "003_entity"} {
				require.NotEqual(t, "applied", st.client.HGet(ctx, "outpost:migration:"+m, "status").Val(), m)
			}
			require.EqualValues(t, 0, st.client.Exists(ctx, lockKey).Val())
		})
	}
}

// cursors maps each node of a checkpoint hash to its saved cursor.
func cursors(t *testing.T, h map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for f, v := range h {
		if !strings.HasPrefix(f, "node:") {
			continue
		}
		var n struct{ Cursor string }
		require.NoError(t, json.Unmarshal([]byte(v), &n), v)
		out[f] = n.Cursor
	}
	return out
}

// A lock left by a run killed with SIGKILL blocks apply, naming the dead
// run, until `unlock --yes` removes it; apply then resumes the dead run's
// checkpoint and finishes the job.
func TestLockLeftByKill9(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := seedTenants(t, c, smallTenants)

	p := startJSON(t, envs, "migrate", "apply", "--yes", "--redis-only")
	ev := p.waitEvent(t, "checkpoint_saved", 10*time.Second)
	dead, _ := ev["run_id"].(string)
	require.NotEmpty(t, dead)
	deadPID := p.pid()
	p.kill(t)

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 75, r.code, r.stdout)
	require.Equal(t, "LOCK_HELD", errorCode(r))
	requireHolder(t, obj(r.rep, "error", "details", "holder"), dead, deadPID, "apply")
	requireHolder(t, obj(r.rep, "lock", "holder"), dead, deadPID, "apply")
	require.Contains(t, obj(r.rep, "error")["message"], "unlock --yes")

	s := run(t, envs, "migrate", "status", "--redis-only")
	require.Equal(t, 0, s.code)
	l := obj(s.rep, "lock")
	require.Equal(t, "held", l["state"])
	requireHolder(t, obj(l, "holder"), dead, deadPID, "apply")
	require.Greater(t, num(l["ttl_ms"]), float64((time.Hour - time.Minute).Milliseconds()), "a dead run's lock lasts up to its hour")
	// The unfinished run shows as partial, resumable.
	for _, m := range s.rep["migrations"].([]any) {
		require.Equal(t, "partial", m.(map[string]any)["state"], m)
	}

	u := run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, 0, u.code, u.stdout)
	require.Equal(t, "unlocked", u.rep["outcome"])
	require.Equal(t, true, u.rep["changed"])
	ul := obj(u.rep, "lock")
	require.Equal(t, "removed", ul["state"])
	requireHolder(t, obj(ul, "holder"), dead, deadPID, "apply")
	require.Contains(t, u.rep["msg"], dead)

	a := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 0, a.code, a.stderr)
	require.Equal(t, "applied", a.rep["outcome"])
	require.Greater(t, num(obj(a.rep, "lock")["token"]), num(obj(ul, "holder")["token"]), "fencing tokens grow")
	for _, m := range a.rep["migrations"].([]any) {
		require.Equal(t, true, obj(m.(map[string]any), "checkpoint")["resumed"], "apply resumes the dead run's checkpoint")
	}
	requireMigrated(t, c, o)
}

// A lock written the way Outpost's own migrator writes it is foreign: status
// shows it with its TTL, and apply waits for it like for any holder.
func TestLockForeignOutpostLock(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	seedTenants(t, c, 50)
	const token = "3f1c6a0e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	ok, err := c.SetNX(ctx, lockKey, token, time.Hour).Result() // SET key token NX EX 3600
	require.NoError(t, err)
	require.True(t, ok)
	keys := c.DBSize(ctx).Val()

	s := run(t, envs, "migrate", "status", "--redis-only")
	require.Equal(t, 0, s.code)
	l := obj(s.rep, "lock")
	require.Equal(t, "held", l["state"])
	require.Equal(t, true, l["foreign"])
	require.Nil(t, l["holder"])
	require.InDelta(t, float64(time.Hour.Milliseconds()), num(l["ttl_ms"]), 10_000)

	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 75, r.code, r.stdout)
	require.Equal(t, "LOCK_HELD", errorCode(r))
	h := obj(r.rep, "error", "details", "holder")
	require.Equal(t, true, h["foreign"], h)
	require.InDelta(t, float64(time.Hour.Milliseconds()), num(h["ttl_ms"]), 10_000)
	require.Equal(t, true, obj(r.rep, "lock")["foreign"])
	require.Contains(t, obj(r.rep, "error")["message"], "did not write")

	// Refused before anything was written: the token is still there and
	// no key was added (not even a fence counter).
	require.Equal(t, token, c.Get(ctx, lockKey).Val())
	require.Equal(t, keys, c.DBSize(ctx).Val())
}

// With DEPLOYMENT_ID=dep the lock is "dep:.outpost:migration_lock": that
// deployment's runs exclude each other and not those of another deployment.
func TestLockKeyFollowsDeploymentID(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	plain := redisEnv(srv)
	dep := redisEnv(srv)
	dep["DEPLOYMENT_ID"] = "dep"
	const depKey = "dep:" + lockKey

	s := run(t, dep, "migrate", "status", "--redis-only")
	require.Equal(t, 0, s.code, s.stdout)
	require.Equal(t, depKey, obj(s.rep, "lock")["key"])
	require.Equal(t, "free", obj(s.rep, "lock")["state"])

	require.NoError(t, c.Set(ctx, depKey, "outpost-token", time.Hour).Err())
	r := run(t, dep, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 75, r.code, r.stdout)
	require.Equal(t, "LOCK_HELD", errorCode(r))
	require.Equal(t, depKey, obj(r.rep, "lock")["key"])

	// Another deployment on the same server is not blocked.
	r = run(t, plain, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, lockKey, obj(r.rep, "lock")["key"])

	require.NoError(t, c.Del(ctx, depKey).Err())
	r = run(t, dep, "migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "0s")
	require.Equal(t, 0, r.code, r.stdout)
	l := obj(r.rep, "lock")
	require.Equal(t, depKey, l["key"])
	require.Equal(t, "released", l["state"])
	// The lease drew its token from the counter beside that key.
	require.Equal(t, fmt.Sprint(num(l["token"])), c.Get(ctx, "{"+depKey+"}:fence").Val())

	u := run(t, dep, "migrate", "unlock", "--yes")
	require.Equal(t, "no_lock", u.rep["outcome"])
	require.Equal(t, depKey, obj(u.rep, "lock")["key"])
}

// The SQL phase holds golang-migrate's advisory lock: a session holding it
// (golang-migrate or an older Outpost migrating) makes apply --sql-only fail
// with 75 at once under --lock-timeout 0s, and wait for it otherwise.
func TestLockSQLAdvisory(t *testing.T) {
	db := servertest.Postgres(t)
	ctx := context.Background()
	envs := map[string]string{"POSTGRES_URL": db.URL}
	holder := db.Connect(t)
	var schema, dbName string
	var backend int
	require.NoError(t, holder.QueryRow(ctx, `SELECT current_schema(), current_database(), pg_backend_pid()`).Scan(&schema, &dbName, &backend))
	id := sqlphase.AdvisoryLockID(schema, "schema_migrations", dbName)
	_, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, id)
	require.NoError(t, err)

	r := run(t, envs, "migrate", "apply", "--yes", "--sql-only", "--lock-timeout", "0s")
	require.Equal(t, 75, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Equal(t, "LOCK_HELD", errorCode(r))
	d := obj(r.rep, "error", "details")
	require.EqualValues(t, id, d["advisory_lock_id"])
	require.EqualValues(t, backend, d["holder_pid"])
	adv := obj(r.rep, "lock", "advisory")
	require.EqualValues(t, id, adv["id"], r.rep["lock"])
	require.Equal(t, "held", adv["state"])
	s := run(t, envs, "migrate", "status", "--sql-only")
	require.Equal(t, "held", obj(s.rep, "lock", "advisory")["state"], s.rep["lock"])
	var tables int
	require.NoError(t, holder.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'`).Scan(&tables))
	require.Zero(t, tables, "refused before migrating anything")

	// With a wait, apply proceeds once the session lets go.
	start := time.Now()
	released := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_, err := holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, id)
		released <- err
	}()
	r = run(t, envs, "--log-format", "json", "migrate", "apply", "--yes", "--sql-only", "--lock-timeout", "30s")
	require.NoError(t, <-released)
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Equal(t, "applied", r.rep["outcome"])
	require.Greater(t, time.Since(start), 1500*time.Millisecond)
	require.Contains(t, r.stderr, `"event":"lock_waiting"`)
	require.Equal(t, "released", obj(r.rep, "lock", "advisory")["state"], r.rep["lock"])
}
