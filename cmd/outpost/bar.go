package main

import (
	"io"
	"sync"

	"github.com/schollz/progressbar/v3"

	"github.com/outpost-migrate/outpost/batch/progress"
)

type progressEvent = progress.Event

func progressWarn(msg string) progress.Event {
	return progress.Event{Level: "warn", Event: progress.Log, Msg: msg}
}

// bar shows a progress bar with rate and ETA on a terminal. It sums the
// per-node positions that chunk and batch events carry.
type bar struct {
	mu    sync.Mutex
	w     io.Writer
	b     *progressbar.ProgressBar
	label string
	max   int64
	nodes map[string]int64
}

func newBar(w io.Writer) *bar { return &bar{w: w, nodes: map[string]int64{}} }

func (b *bar) Emit(e progress.Event) {
	if e.Event != progress.ChunkDone && e.Event != progress.BatchDone {
		if e.Event == progress.PassDone || e.Event == progress.MigrationFinished || e.Event == progress.RunFinished {
			b.finish()
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b == nil || b.label != e.Migration {
		if b.b != nil {
			_ = b.b.Finish()
		}
		max := e.TotalEstimate
		if max <= 0 {
			max = -1
		}
		b.label = e.Migration
		b.max = max
		b.nodes = map[string]int64{}
		b.b = progressbar.NewOptions64(max, progressbar.OptionSetWriter(b.w), progressbar.OptionSetDescription(e.Migration),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("keys"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(200_000_000))
	}
	if b.max > 0 && e.TotalEstimate > b.max {
		// The estimate grew (a pass scans keys that it writes): keep the
		// bar below its end until the pass ends.
		b.max = e.TotalEstimate
		b.b.ChangeMax64(b.max)
	}
	if e.Counts != nil {
		n := e.Counts.Scanned
		if e.Event == progress.BatchDone {
			n = e.Counts.Rows
		}
		b.nodes[e.Node] = n
	}
	var sum int64
	for _, v := range b.nodes {
		sum += v
	}
	_ = b.b.Set64(sum)
}

func (b *bar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b != nil {
		_ = b.b.Finish()
		b.b = nil
	}
}
