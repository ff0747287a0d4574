package progress

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/report"
)

func chunk(label, node string, scanned, total int64) Event {
	return Event{Event: ChunkDone, Migration: label, Node: node, TotalEstimate: total, Counts: &report.Counts{Scanned: scanned}}
}

// TestTrackerPercentNeverGoesBack: the estimate grows while a pass scans
// the copies it writes; the percentage holds instead of falling, and it
// does not claim 100% before the pass ends.
func TestTrackerPercentNeverGoesBack(t *testing.T) {
	var tr Tracker
	t0 := time.Unix(1000, 0)
	prev := -1.0
	for i, total := range []int64{100, 100, 300, 300, 300, 300} {
		tr.Update(chunk("001_hash_tags+002_timestamps", "n1", int64(80*(i+1)), total), t0.Add(time.Duration(i)*time.Second))
		s := tr.Snapshot(t0.Add(time.Duration(i) * time.Second))
		require.GreaterOrEqual(t, s.Pct, prev, "step %d", i)
		require.LessOrEqual(t, s.Pct, 0.99)
		prev = s.Pct
	}
	require.Equal(t, "001+002", tr.Snapshot(t0).Label)
}

// TestTrackerRate: no rate in the first second (a first chunk's keys over
// microseconds is the nonsense the issue saw), then keys of this run per
// second since its first event, never more than the keys scanned so far
// per elapsed second.
func TestTrackerRate(t *testing.T) {
	var tr Tracker
	t0 := time.Unix(1000, 0)
	tr.Update(chunk("verify", "a", 2000, 10_000), t0)
	tr.Update(chunk("verify", "b", 2000, 10_000), t0.Add(time.Millisecond))
	s := tr.Snapshot(t0.Add(time.Millisecond))
	require.Zero(t, s.Rate)
	require.Zero(t, s.ETA)
	now := t0.Add(2 * time.Second)
	tr.Update(chunk("verify", "a", 4000, 10_000), now)
	s = tr.Snapshot(now)
	require.InDelta(t, 2000, s.Rate, 1, "4,000 keys more than at the first event, in 2 s")
	require.LessOrEqual(t, s.Rate, float64(s.Done)/s.Elapsed.Seconds())
	require.Equal(t, 2*time.Second, s.ETA, "4,000 keys left at 2,000/s")
	require.Len(t, s.Nodes, 2)
	require.Equal(t, int64(6000), s.Done)
	// A new label is a new pass.
	tr.Update(chunk("confirm verify", "a", 10, 0), now)
	s = tr.Snapshot(now)
	require.Equal(t, int64(10), s.Done)
	require.Equal(t, -1.0, s.Pct, "no total, no percentage")
}

func TestShortLabel(t *testing.T) {
	for in, want := range map[string]string{
		"001_hash_tags+002_timestamps+003_entity":         "001+002+003",
		"confirm 001_hash_tags+002_timestamps+003_entity": "confirm 001+002+003",
		"sql/000005_denormalize_attempts":                 "sql 000005",
		"verify":                                          "verify",
		"cleanup":                                         "cleanup",
	} {
		require.Equal(t, want, ShortLabel(in))
	}
}
