package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// TestRenderProgressFitsAnyWidth: whatever the width, the line fits; what
// does not fit is dropped in order (per-node counts, ETA, rate), never the
// percentage and count.
func TestRenderProgressFitsAnyWidth(t *testing.T) {
	s := progress.Snapshot{Label: "confirm 001+002+003", Unit: "keys", Done: 123_456, Total: 480_000, Pct: 0.25,
		Rate: 48_200, ETA: 7 * time.Second, Nodes: []progress.NodeDone{{Node: "a", Done: 41_000}, {Node: "b", Done: 40_000}, {Node: "c", Done: 42_456}}}
	for width := 20; width <= 200; width++ {
		line := renderProgress(s, width)
		require.LessOrEqual(t, utf8.RuneCountInString(line), width, "width %d: %q", width, line)
		if width >= 50 {
			require.Contains(t, line, "25% 123.5k/~480.0k keys", "width %d", width)
		}
	}
	wide := renderProgress(s, 119)
	require.Contains(t, wide, "48.2k keys/s")
	require.Contains(t, wide, "eta 7s")
	require.Contains(t, wide, "#1 41.0k #2 40.0k #3 42.5k", "per-node detail where it fits")
	narrow := renderProgress(s, 79)
	require.Contains(t, narrow, "eta 7s")
	require.NotContains(t, narrow, "#1")
	require.True(t, strings.HasPrefix(narrow, "confirm 001+002+003 ["))
}

// TestProgressLinesEveryFewSeconds: without a terminal, per-chunk events
// become one logfmt progress line per period, not one per chunk.
func TestProgressLinesEveryFewSeconds(t *testing.T) {
	var buf strings.Builder
	log := progress.NewLogger(&buf, false, "r-1", "apply")
	log.Quiet = true
	c := &console{w: &buf, log: log, every: 150 * time.Millisecond}
	for i := 0; i < 40; i++ {
		c.Emit(progressEvent{Event: progress.ChunkDone, Migration: "verify", Node: "n", TotalEstimate: 40_000, Counts: &report.Counts{Scanned: int64(1000 * (i + 1))}})
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.GreaterOrEqual(t, len(lines), 1)
	require.LessOrEqual(t, len(lines), 4, "40 chunks in ~0.4 s, one line per 150 ms: %s", buf.String())
	require.Contains(t, lines[0], `msg="verify: `)
	require.NotContains(t, buf.String(), "chunk_done")
}
