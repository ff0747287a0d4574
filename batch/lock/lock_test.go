package lock

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

var _ batch.Fence = (*Lease)(nil)

// recorder is a progress.Sink that keeps events for assertions.
type recorder struct {
	mu     sync.Mutex
	events []progress.Event
}

func (r *recorder) Emit(e progress.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) of(kind string) []progress.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []progress.Event
	for _, e := range r.events {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func holder(run string) report.Holder {
	return report.Holder{RunID: run, Command: "apply", ToolVersion: "v0.0.0-test"}
}

// keyFor gives every test its own deployment prefix, so that parallel tests
// on one server never share a lock.
func keyFor(t *testing.T) string {
	return Key(strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + ":")
}

func requireCode(t *testing.T, want report.Code, err error) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, want, report.CodeOf(err), "error: %v", err)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestLease runs every lease scenario on a standalone server and on a
// three-master cluster.
func TestLease(t *testing.T) {
	scenarios := []struct {
		name string
		fn   func(t *testing.T, c redis.UniversalClient, key string)
	}{
		{"ConcurrentAcquireOneWins", testConcurrentAcquire},
		{"WaiterAcquiresAfterRelease", testWaiterAcquires},
		{"WaitRunsOut", testWaitRunsOut},
		{"TokensIncrease", testTokensIncrease},
		{"RenewalKeepsItHeld", testRenewalKeepsHeld},
		{"LostWhenDeleted", testLostWhenDeleted},
		{"LostWhenOverwrittenFencedByScript", testLostWhenOverwritten},
		{"LostToAnotherRun", testLostToAnotherRun},
		{"CrashedHolderBlocksUntilForceUnlock", testCrashedHolder},
		{"OutpostLockIsForeign", testOutpostForeign},
		{"FencedWrites", testFencedWrites},
		{"OverdueRenewalLosesTheLease", testOverdue},
		{"UndoOfALostAcquisition", testUndo},
	}
	backends := []struct {
		name  string
		start func(t *testing.T) redis.UniversalClient
	}{
		{"standalone", func(t *testing.T) redis.UniversalClient { return servertest.Redis(t).Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return servertest.RedisCluster(t).Client(t) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			c := b.start(t)
			for _, s := range scenarios {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					s.fn(t, c, keyFor(t))
				})
			}
		})
	}
}

func testConcurrentAcquire(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	const n = 8
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		leases [n]*Lease
		errs   [n]error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = Acquire(ctx, c, Options{Key: key, Holder: holder(fmt.Sprintf("r-racer-%d", i))})
		}()
	}
	close(start)
	wg.Wait()

	var winner *Lease
	for i := range n {
		if errs[i] == nil {
			require.Nil(t, winner, "two winners")
			winner = leases[i]
		}
	}
	require.NotNil(t, winner, "no winner: %v", errs)
	defer winner.Release(ctx)
	for i := range n {
		if errs[i] == nil {
			continue
		}
		requireCode(t, report.CodeLockHeld, errs[i])
		d := report.DetailsOf(errs[i])
		require.Equal(t, winner.Holder(), d["holder"], "the loser names the winner")
		require.Contains(t, errs[i].Error(), "held by run "+winner.Holder().RunID)
		require.Contains(t, errs[i].Error(), fmt.Sprintf("pid %d", winner.Holder().PID))
		require.Contains(t, errs[i].Error(), "expires in")
		require.True(t, report.Retryable(report.CodeOf(errs[i])))
	}
	// The value in Redis is the winner's, with the winner's token.
	info, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, StateHeld, info.State)
	require.False(t, info.Foreign)
	require.Equal(t, winner.Holder(), *info.Holder)
	require.Equal(t, winner.Token(), info.Token)
}

func testWaiterAcquires(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	first, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-first")})
	require.NoError(t, err)

	rec := &recorder{}
	type result struct {
		l   *Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-waiter"), Wait: 20 * time.Second, Events: rec})
		got <- result{l, err}
	}()
	time.Sleep(700 * time.Millisecond)
	require.NoError(t, first.Release(ctx))
	released := time.Now()

	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the lock after it was released")
	}
	require.NoError(t, r.err)
	defer r.l.Release(ctx)
	// The waiter backs off at most 5 s between attempts.
	require.Less(t, time.Since(released), 6*time.Second)
	require.GreaterOrEqual(t, r.l.Info().Waited, int64(600))
	require.Greater(t, r.l.Token(), first.Token())

	waiting := rec.of(progress.LockWaiting)
	require.NotEmpty(t, waiting)
	require.Equal(t, "r-first", waiting[0].Fields["holder_run_id"])
	require.Contains(t, waiting[0].Msg, "held by run r-first")
	require.Len(t, rec.of(progress.LockAcquired), 1)
}

func testWaitRunsOut(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-holder")})
	require.NoError(t, err)
	defer l.Release(ctx)

	start := time.Now()
	_, err = Acquire(ctx, c, Options{Key: key, Holder: holder("r-late"), Wait: 800 * time.Millisecond})
	took := time.Since(start)
	requireCode(t, report.CodeLockHeld, err)
	require.GreaterOrEqual(t, took, 800*time.Millisecond)
	require.Less(t, took, 3*time.Second)
	require.Contains(t, err.Error(), "gave up after waiting")
	require.GreaterOrEqual(t, report.DetailsOf(err)["waited_ms"], int64(800))

	// A cancelled context ends the wait with its cause.
	cause := report.E(report.CodeInterrupted, "interrupted")
	cctx, cancel := context.WithCancelCause(ctx)
	time.AfterFunc(300*time.Millisecond, func() { cancel(cause) })
	_, err = Acquire(cctx, c, Options{Key: key, Holder: holder("r-late"), Wait: time.Minute})
	requireCode(t, report.CodeInterrupted, err)
	require.Contains(t, err.Error(), "held by run r-holder")
}

func testTokensIncrease(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	var last int64
	for i := range 6 {
		l, err := Acquire(ctx, c, Options{Key: key, Holder: holder(fmt.Sprintf("r-%d", i))})
		require.NoError(t, err)
		require.Greater(t, l.Token(), last)
		last = l.Token()
		info, err := Inspect(ctx, c, key)
		require.NoError(t, err)
		require.Equal(t, last, info.Token)
		require.Equal(t, last, info.Holder.Token)
		if i%2 == 0 {
			require.NoError(t, l.Release(ctx))
		} else {
			// A forced unlock does not reset the counter.
			l.stopRenewal()
			removed, err := ForceUnlock(ctx, c, key)
			require.NoError(t, err)
			require.Equal(t, last, removed.Token)
		}
	}
	// Failed acquisitions spend no token.
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-hold")})
	require.NoError(t, err)
	for range 3 {
		_, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-busy")})
		requireCode(t, report.CodeLockHeld, err)
	}
	require.NoError(t, l.Release(ctx))
	next, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-next")})
	require.NoError(t, err)
	defer next.Release(ctx)
	require.Equal(t, l.Token()+1, next.Token())
}

func testRenewalKeepsHeld(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	rec := &recorder{}
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-long"), TTL: time.Second, RenewEvery: 300 * time.Millisecond, Events: rec})
	require.NoError(t, err)
	time.Sleep(3 * time.Second)

	require.False(t, isClosed(l.Lost()), "lost: %v", l.Err())
	require.NoError(t, l.Err())
	require.NoError(t, l.Check(ctx))
	pttl, err := c.PTTL(ctx, key).Result()
	require.NoError(t, err)
	require.Greater(t, pttl, time.Duration(0))
	require.LessOrEqual(t, pttl, time.Second)
	info := l.Info()
	require.Equal(t, StateAcquired, info.State)
	require.GreaterOrEqual(t, info.Renewals, int64(7))
	require.Len(t, rec.of(progress.LockRenewed), int(info.Renewals))

	// Someone else's SET NX (Outpost's migrator) still fails.
	ok, err := c.SetNX(ctx, key, "outpost-token", time.Hour).Result()
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, l.Release(ctx))
	require.NoError(t, l.Release(ctx), "Release is idempotent")
	require.Equal(t, StateReleased, l.Info().State)
	require.False(t, isClosed(l.Lost()))
	n, err := c.Exists(ctx, key).Result()
	require.NoError(t, err)
	require.Zero(t, n)
	requireCode(t, report.CodeInternal, l.Check(ctx))
	require.Len(t, rec.of(progress.LockReleased), 1)
}

func testLostWhenDeleted(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	const every = 300 * time.Millisecond
	rec := &recorder{}
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-victim"), TTL: 10 * time.Second, RenewEvery: every, Events: rec})
	require.NoError(t, err)
	cp := SlotKey(key, "checkpoint")
	other := SlotKey(key, "other")
	require.NoError(t, c.Set(ctx, other, "keep", 0).Err())

	require.NoError(t, c.Del(ctx, key).Err())
	deleted := time.Now()
	select {
	case <-l.Lost():
	case <-time.After(2 * every):
		t.Fatal("the lease did not notice its key was deleted")
	}
	// One renewal period, plus scheduling slack.
	require.Less(t, time.Since(deleted), every+150*time.Millisecond)

	requireCode(t, report.CodeLockLost, l.Err())
	require.Contains(t, l.Err().Error(), "the key is gone")
	requireCode(t, report.CodeLockLost, l.Check(ctx))
	requireCode(t, report.CodeLockLost, l.HSet(ctx, cp, map[string]string{"cursor": "42"}))
	requireCode(t, report.CodeLockLost, l.Del(ctx, other))
	n, err := c.Exists(ctx, cp).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a lost lease wrote its checkpoint")
	require.Equal(t, "keep", c.Get(ctx, other).Val(), "a lost lease deleted a key")

	require.NoError(t, l.Release(ctx))
	require.Equal(t, StateLost, l.Info().State)
	require.Len(t, rec.of(progress.LockLost), 1)
	require.Empty(t, rec.of(progress.LockReleased))
}

// The value is overwritten and no renewal runs before the write: only the
// script's compare stands between the lost lease and the checkpoint.
func testLostWhenOverwritten(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-victim")})
	require.NoError(t, err)
	cp := SlotKey(key, "checkpoint")
	require.NoError(t, l.HSet(ctx, cp, map[string]string{"cursor": "1"}))

	require.NoError(t, c.Set(ctx, key, "0f8c1e9e-3a4b-4b7e-9c1d-2f3e4a5b6c7d", redis.KeepTTL).Err())
	require.False(t, isClosed(l.Lost()))
	err = l.HSet(ctx, cp, map[string]string{"cursor": "2", "extra": "x"})
	requireCode(t, report.CodeLockLost, err)
	require.Contains(t, err.Error(), "did not write")
	require.True(t, isClosed(l.Lost()))
	require.Equal(t, map[string]string{"cursor": "1"}, c.HGetAll(ctx, cp).Val(), "the fenced write went through")
	requireCode(t, report.CodeLockLost, l.Del(ctx, cp))
	require.Equal(t, int64(1), c.Exists(ctx, cp).Val())

	// Release leaves the other value in place.
	require.NoError(t, l.Release(ctx))
	require.Equal(t, "0f8c1e9e-3a4b-4b7e-9c1d-2f3e4a5b6c7d", c.Get(ctx, key).Val())
	require.Equal(t, StateLost, l.Info().State)
}

func testLostToAnotherRun(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	a, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-a")})
	require.NoError(t, err)
	removed, err := ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, "r-a", removed.Holder.RunID)
	b, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-b")})
	require.NoError(t, err)
	defer b.Release(ctx)

	cp := SlotKey(key, "checkpoint")
	err = a.HSet(ctx, cp, map[string]string{"by": "a"})
	requireCode(t, report.CodeLockLost, err)
	require.Contains(t, err.Error(), "now held by run r-b")
	require.NoError(t, b.HSet(ctx, cp, map[string]string{"by": "b"}))
	requireCode(t, report.CodeLockLost, a.Del(ctx, cp))
	require.Equal(t, "b", c.HGet(ctx, cp, "by").Val())

	// A's release must not delete B's lock.
	require.NoError(t, a.Release(ctx))
	require.Equal(t, StateLost, a.Info().State)
	info, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, "r-b", info.Holder.RunID)
	require.NoError(t, b.Check(ctx))
}

func testCrashedHolder(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	crashed, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-crashed")})
	require.NoError(t, err)
	crashed.stopRenewal() // the process died: no renewal, no release

	_, err = Acquire(ctx, c, Options{Key: key, Holder: holder("r-next")})
	requireCode(t, report.CodeLockHeld, err)
	require.Equal(t, crashed.Holder(), report.DetailsOf(err)["holder"])
	require.Contains(t, err.Error(), "outpost migrate unlock --yes")

	info, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, StateHeld, info.State)
	require.False(t, info.Foreign)
	require.Equal(t, crashed.Holder(), *info.Holder)
	require.NotNil(t, info.AgeMS)
	require.GreaterOrEqual(t, *info.AgeMS, int64(0))
	require.Less(t, *info.AgeMS, int64(60_000))
	require.NotNil(t, info.TTLMS)
	require.Greater(t, *info.TTLMS, int64(3_500_000))
	require.LessOrEqual(t, *info.TTLMS, int64(3_600_000))

	removed, err := ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, StateRemoved, removed.State)
	require.Equal(t, crashed.Holder(), *removed.Holder)
	again, err := ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	require.Nil(t, again, "nothing left to remove")
	free, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, &report.Lock{Key: key, State: StateFree}, free)

	next, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-next")})
	require.NoError(t, err)
	require.NoError(t, next.Release(ctx))
}

// Outpost's migrator writes SET key <uuid> NX EX 3600.
func testOutpostForeign(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	const token = "7d7e4bb6-4c1f-4f3e-9f55-0a8f0c1d2e3f"
	ok, err := c.SetNX(ctx, key, token, time.Hour).Result()
	require.NoError(t, err)
	require.True(t, ok)

	info, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, StateHeld, info.State)
	require.True(t, info.Foreign)
	require.Nil(t, info.Holder)
	require.Nil(t, info.AgeMS)
	require.Greater(t, *info.TTLMS, int64(3_500_000))

	_, err = Acquire(ctx, c, Options{Key: key, Holder: holder("r-tool"), Wait: 300 * time.Millisecond})
	requireCode(t, report.CodeLockHeld, err)
	h, ok := report.DetailsOf(err)["holder"].(map[string]any)
	require.True(t, ok, "details: %v", report.DetailsOf(err))
	require.Equal(t, true, h["foreign"])
	require.Greater(t, h["ttl_ms"], int64(3_500_000))
	require.Contains(t, err.Error(), "did not write")
	require.Equal(t, token, c.Get(ctx, key).Val(), "Acquire touched a foreign lock")

	removed, err := ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	require.True(t, removed.Foreign)
	require.Equal(t, StateRemoved, removed.State)

	// A key of another type is foreign too, and never read as a string.
	require.NoError(t, c.HSet(ctx, key, "f", "v").Err())
	info, err = Inspect(ctx, c, key)
	require.NoError(t, err)
	require.True(t, info.Foreign)
	require.NotNil(t, info.TTLMS)
	require.Equal(t, int64(-1), *info.TTLMS)
	_, err = Acquire(ctx, c, Options{Key: key, Holder: holder("r-tool")})
	requireCode(t, report.CodeLockHeld, err)
	require.Contains(t, err.Error(), "never expires")
	removed, err = ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	require.True(t, removed.Foreign)
}

func testFencedWrites(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-writer")})
	require.NoError(t, err)
	defer l.Release(ctx)
	require.NoError(t, l.Check(ctx))

	cp := SlotKey(key, "checkpoint:redis/001_hash_tags")
	big := map[string]string{}
	for i := range 1500 { // more pairs than one unpack slice
		big[fmt.Sprintf("node-%04d", i)] = fmt.Sprint(i)
	}
	require.NoError(t, l.HSet(ctx, cp, big))
	require.Equal(t, big, c.HGetAll(ctx, cp).Val())
	require.NoError(t, l.HSet(ctx, cp, map[string]string{"node-0000": "done"}))
	require.Equal(t, "done", c.HGet(ctx, cp, "node-0000").Val())

	run := SlotKey(key, "run")
	require.NoError(t, c.Set(ctx, run, "x", 0).Err())
	require.NoError(t, l.Del(ctx, cp, run))
	require.Zero(t, c.Exists(ctx, cp, run).Val())

	// Keys outside the lock's slot are refused before reaching Redis.
	requireCode(t, report.CodeInternal, l.HSet(ctx, "elsewhere", map[string]string{"a": "b"}))
	requireCode(t, report.CodeInternal, l.Del(ctx, "elsewhere"))
	require.Zero(t, c.Exists(ctx, "elsewhere").Val())
}

// A renewal that comes after the deadline (the process was suspended) gives
// the lease up even though Redis answers: by Redis's clock the key expired.
func testOverdue(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-sleeper"), TTL: 10 * time.Second, RenewEvery: 200 * time.Millisecond})
	require.NoError(t, err)
	l.mu.Lock()
	l.deadline = time.Now().Add(-time.Second)
	l.mu.Unlock()
	select {
	case <-l.Lost():
	case <-time.After(time.Second):
		t.Fatal("an overdue lease was not given up")
	}
	requireCode(t, report.CodeLockLost, l.Err())
	require.Contains(t, l.Err().Error(), "could not renew")
	requireCode(t, report.CodeLockLost, l.Check(ctx))
}

// undoScript removes exactly the value of one acquisition attempt.
func testUndo(t *testing.T, c redis.UniversalClient, key string) {
	ctx := context.Background()
	h := fillHolder(holder("r-undo"), time.Now())
	pre, post, err := template(h, "nonce-a")
	require.NoError(t, err)
	res, err := acquireScript.Run(ctx, c, []string{key, SlotKey(key, "fence")}, pre, post, "60000").Slice()
	require.NoError(t, err)
	require.Equal(t, int64(1), res[0])

	otherPre, otherPost, err := template(h, "nonce-b")
	require.NoError(t, err)
	undoLostAcquire(ctx, c, key, otherPre, otherPost)
	require.Equal(t, int64(1), c.Exists(ctx, key).Val(), "another attempt's value was removed")
	undoLostAcquire(ctx, c, key, pre, post)
	require.Zero(t, c.Exists(ctx, key).Val())
}

// TestRenewalSurvivesRestart: a Redis restart shorter than the TTL is ridden
// out (renewal errors are retried); an outage longer than the TTL loses the
// lease once the TTL has run out.
func TestRenewalSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)

	l, err := Acquire(ctx, c, Options{Key: Key(""), Holder: holder("r-survivor"), TTL: 6 * time.Second, RenewEvery: 400 * time.Millisecond})
	require.NoError(t, err)
	srv.Stop(t)
	time.Sleep(1200 * time.Millisecond)
	srv.Start(t)
	before := l.Info().Renewals
	time.Sleep(1500 * time.Millisecond)
	require.False(t, isClosed(l.Lost()), "lost: %v", l.Err())
	require.Greater(t, l.Info().Renewals, before)
	require.NoError(t, l.Check(ctx))
	require.NoError(t, l.Release(ctx))

	const ttl = 1500 * time.Millisecond
	l, err = Acquire(ctx, c, Options{Key: Key(""), Holder: holder("r-cut-off"), TTL: ttl, RenewEvery: 300 * time.Millisecond})
	require.NoError(t, err)
	stopped := time.Now()
	srv.Stop(t)
	select {
	case <-l.Lost():
	case <-time.After(ttl + 3*time.Second):
		t.Fatal("the lease was not given up after the TTL ran out")
	}
	require.GreaterOrEqual(t, time.Since(stopped), ttl-300*time.Millisecond, "given up before the TTL could have run out")
	requireCode(t, report.CodeLockLost, l.Err())
	require.Contains(t, l.Err().Error(), "could not renew")
	requireCode(t, report.CodeLockLost, l.HSet(ctx, SlotKey(Key(""), "cp"), map[string]string{"a": "b"}))
}
