package redismigrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

// TestCleanup: refused while 001 is not applied; removes only legacy keys
// whose twins verify, keeps one changed after it was compared; resumes
// after a stop.
func TestCleanup(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(300)
	st, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacy := int64(st.Keys - st.Unrelated)
	p := phaseFor(c, "", redisphase.Options{ScanCount: 50})

	_, err = p.Cleanup(ctx, runFor("cleanup"))
	require.Equal(t, report.CodeDataRefused, report.CodeOf(err))
	require.Equal(t, report.ExitDataErr, report.ExitCode(report.CodeOf(err)))
	require.Len(t, dumpLegacy(t, ctx, c), int(legacy), "nothing removed")

	run := runFor("apply")
	run.Target = "001"
	_, err = p.Apply(ctx, run)
	require.NoError(t, err)

	// A legacy key changed between the comparison and the delete is kept;
	// and the run is stopped during its first chunk: it stops at the next
	// safe point, with that chunk done and its checkpoint saved.
	stop := make(chan struct{})
	var victim string
	var victimMu sync.Mutex // chunks are worked on concurrently
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		victimMu.Lock()
		defer victimMu.Unlock()
		if victim == "" {
			// A legacy tenant record (its id is its name's), so that the
			// late write is a field difference whatever SCAN returns first.
			for _, k := range keys {
				if id, err := c.HGet(ctx, k, "id").Result(); err == nil && "tenant:"+id == k {
					victim = k
					break
				}
			}
			if victim == "" {
				return
			}
			noErr(t, c.HSet(ctx, victim, "metadata", `{"late":"write"}`).Err())
			close(stop)
		}
	})
	crun := runFor("cleanup")
	crun.Stop = stop
	lines, err := p.Cleanup(ctx, crun)
	restore()
	require.Error(t, err)
	l := line(t, lines, redismigrations.HashTags)
	require.Equal(t, report.State("interrupted"), l.State)
	require.True(t, l.Resumable)
	first := l.Counts
	require.Positive(t, first.Deleted)
	require.Less(t, first.Deleted, legacy)
	require.EqualValues(t, 1, first.Failed, "the key changed after the comparison")
	require.EqualValues(t, 1, c.Exists(ctx, victim).Val())

	lines, err = p.Cleanup(ctx, runFor("cleanup"))
	require.Equal(t, report.CodeDrift, report.CodeOf(err), "the changed key was kept: the run says so")
	l = line(t, lines, redismigrations.HashTags)
	require.True(t, l.Progress.Resumed)
	require.Equal(t, legacy-1, l.Counts.Deleted, "counts carry over the resumed checkpoint")
	require.EqualValues(t, 1, l.Counts.Failed)
	require.Equal(t, []string{victim}, keysOf(dumpLegacy(t, ctx, c)))

	// A fresh run compares it again: it no longer matches its twin.
	lines, err = p.Cleanup(ctx, runFor("cleanup"))
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	l = line(t, lines, redismigrations.HashTags)
	require.False(t, l.Progress.Resumed)
	require.Equal(t, report.Counts{Scanned: 1, Checked: 1, Failed: 1}, *l.Counts)
	require.Equal(t, victim, l.Issues[0].Key)
	require.Equal(t, "metadata", l.Issues[0].Field)

	// The operator removes it; 002 and 003 finish; the keyspace is the
	// current layout and the unrelated keys, nothing else.
	require.NoError(t, c.Del(ctx, victim).Err())
	lines, err = p.Cleanup(ctx, runFor("cleanup"))
	require.NoError(t, err)
	require.Zero(t, line(t, lines, redismigrations.HashTags).Counts.Checked)
	_, err = p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.ExpectAfterCleanup)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "after cleanup")
}

// noErr reports err from a goroutine that is not the test's.
