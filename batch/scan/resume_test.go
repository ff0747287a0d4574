package scan_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// crashResume runs a pass whose step fails after recording a few chunks
// (writes half done, checkpoint not moved: what kill -9 leaves behind),
// then a second pass from the checkpoint, and checks that every key was
// seen and that the keys seen twice are, per node, at most the window
// chunks that node was working on when the first pass died.
func crashResume(t *testing.T, c redis.UniversalClient, want []string, window int, nodeOf func(key string) string) {
	ctx := context.Background()
	store := &scan.Store{Client: c, LockKey: lockKey}
	first := newRecorder()
	crash := errors.New("crash")
	first.fail = func(n int) error {
		if n >= 5 {
			return crash
		}
		return nil
	}
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: store, Name: fmt.Sprintf("crash-%d", window), Fingerprint: "m", RunID: "r-1", Window: window}
	res, err := ex.Pass(ctx, first.step)
	require.ErrorIs(t, err, crash)
	require.False(t, res.Complete)

	second := newRecorder()
	ex.RunID = "r-2"
	res, err = ex.Pass(ctx, second.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.True(t, res.Resumed)
	for _, n := range res.Nodes {
		if n.ResumedFrom != "" {
			require.NotEqual(t, "0", n.ResumedFrom, "a node cut short resumes from its cursor")
		}
	}

	all := map[string]bool{}
	for _, k := range first.keys() {
		all[k] = true
	}
	for _, k := range second.keys() {
		all[k] = true
	}
	require.Len(t, all, len(want), "nothing lost")

	// The last window chunks each node handed to the first pass.
	byNode := map[string][][]string{}
	for _, ch := range first.chunks {
		byNode[nodeOf(ch[0])] = append(byNode[nodeOf(ch[0])], ch)
	}
	last := map[string]map[string]bool{}
	for node, chs := range byNode {
		m := map[string]bool{}
		for _, ch := range chs[max(0, len(chs)-window):] {
			for _, k := range ch {
				m[k] = true
			}
		}
		last[node] = m
	}
	repeated := map[string]int{}
	for k := range second.seen {
		if first.seen[k] > 0 {
			node := nodeOf(k)
			require.True(t, last[node][k], "%s was repeated but was not in the chunks %s was working on", k, node)
			repeated[node]++
		}
	}
	require.NotEmpty(t, repeated, "the chunk that failed is done again")
	for node, n := range repeated {
		require.LessOrEqual(t, n, len(last[node]), node)
	}
}

func TestCrashRepeatsAtMostOneChunk(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	want := fill(t, c, "tenant:", 10_000)
	crashResume(t, c, want, 1, func(string) string { return "standalone" })
}

func TestCrashRepeatsAtMostWindowChunks(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	want := fill(t, c, "tenant:", 10_000)
	crashResume(t, c, want, 2, func(string) string { return "standalone" })
}

func TestCancelledPassResumes(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	want := fill(t, c, "tenant:", 10_000)
	store := &scan.Store{Client: c, LockKey: lockKey}
	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder()
	rec.fail = func(n int) error {
		if n == 4 {
			cancel()
		}
		return nil
	}
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: store, Name: "c", Fingerprint: "m", Window: 1}
	_, err := ex.Pass(ctx, rec.step)
	require.ErrorIs(t, err, context.Canceled)
	saved, err := store.Load(context.Background(), "c")
	require.NoError(t, err)
	require.False(t, saved.Nodes["standalone"].Done)

	inFlight := map[string]bool{}
	for _, k := range rec.chunks[3] {
		inFlight[k] = true
	}
	rec.fail = nil
	res, err := ex.Pass(context.Background(), rec.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.Equal(t, sorted(want), rec.keys())
	for k, n := range rec.seen {
		if n > 1 {
			require.True(t, inFlight[k], "%s repeated, but only the chunk in flight may be", k)
		}
	}
}

func TestRestartedServerIsScannedAgain(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)
	ctx := context.Background()
	want := fill(t, c, "tenant:", 8_000)
	store := &scan.Store{Client: c, LockKey: lockKey}
	rec := newRecorder()
	stop := report.E(report.CodeInterrupted, "stop")
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: store, Name: "apply", Fingerprint: "m",
		Stop: func() error {
			if len(rec.chunks) >= 3 {
				return stop
			}
			return nil
		}}
	_, err := ex.Pass(ctx, rec.step)
	require.ErrorIs(t, err, stop)
	oldRun := runID(t, c)

	srv.Restart(t)
	require.NotEqual(t, oldRun, runID(t, c))

	ex.Stop = nil
	again := newRecorder()
	res, err := ex.Pass(ctx, again.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.False(t, res.Resumed)
	require.True(t, res.Nodes[0].Restarted)
	require.Empty(t, res.Nodes[0].ResumedFrom)
	require.Equal(t, sorted(want), again.keys(), "a new server process: scanned again from 0")
}

func TestRestartDuringPassIsDetected(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithPersistence())
	c := srv.Client(t)
	ctx := context.Background()
	want := fill(t, c, "tenant:", 8_000)
	before := runID(t, c)
	rec := newRecorder()
	rec.fail = func(n int) error {
		if n == 3 {
			// The client reconnects on its own and hands the new process
			// the old process's cursor.
			srv.Restart(t)
		}
		return nil
	}
	store := &scan.Store{Client: c, LockKey: lockKey}
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: store, Name: "apply", Fingerprint: "m"}
	res, err := ex.Pass(ctx, rec.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.True(t, res.Nodes[0].Restarted)
	after := runID(t, c)
	require.NotEqual(t, before, after)
	require.Equal(t, after, res.Nodes[0].RunID)
	require.Equal(t, sorted(want), rec.keys())
	saved, err := store.Load(ctx, "apply")
	require.NoError(t, err)
	require.Equal(t, after, saved.Nodes["standalone"].ServerRunID)
}

func TestCheckpointOfAnotherPassIsIgnored(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	want := fill(t, c, "tenant:", 5_000)
	store := &scan.Store{Client: c, LockKey: lockKey}
	rec := newRecorder()
	stop := report.E(report.CodeInterrupted, "stop")
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: store, Name: "apply", Fingerprint: "001",
		Stop: func() error {
			if len(rec.chunks) >= 2 {
				return stop
			}
			return nil
		}}
	_, err := ex.Pass(ctx, rec.step)
	require.ErrorIs(t, err, stop)

	ex2 := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: store, Name: "apply", Fingerprint: "002"}
	again := newRecorder()
	res, err := ex2.Pass(ctx, again.step)
	require.NoError(t, err)
	require.False(t, res.Resumed)
	require.Equal(t, sorted(want), again.keys())
	saved, err := store.Load(ctx, "apply")
	require.NoError(t, err)
	require.Equal(t, "002", saved.Meta.Fingerprint)
}

func TestCheckpointWritesAreFenced(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	fill(t, c, "tenant:", 6_000)
	lease, err := lock.Acquire(ctx, c, lock.Options{Key: lockKey, Holder: report.Holder{RunID: "r-1", Command: "apply"}})
	require.NoError(t, err)
	defer func() { _ = lease.Release(ctx) }()
	store := &scan.Store{Client: c, LockKey: lockKey, Writer: lease}
	var before *scan.Saved
	rec := newRecorder()
	rec.fail = func(n int) error {
		if n == 3 {
			// Another run takes the lock (after a forced unlock): this run
			// must not move the checkpoint any more.
			var err error
			before, err = store.Load(ctx, "apply")
			require.NoError(t, err)
			_, err = lock.ForceUnlock(ctx, c, lockKey)
			require.NoError(t, err)
			require.NoError(t, c.Set(ctx, lockKey, "someone-else", time.Minute).Err())
		}
		return nil
	}
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: store, Name: "apply", Fingerprint: "m", RunID: "r-1", Window: 1}
	_, err = ex.Pass(ctx, rec.step)
	require.Error(t, err)
	require.Equal(t, report.CodeLockLost, report.CodeOf(err))
	after, err := store.Load(ctx, "apply")
	require.NoError(t, err)
	require.Equal(t, before.Nodes["standalone"].Cursor, after.Nodes["standalone"].Cursor, "the checkpoint did not move after the lease was lost")
	require.Len(t, rec.chunks, 3)
}
