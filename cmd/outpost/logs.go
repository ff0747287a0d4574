package main

import (
	"fmt"
	"io"
	"time"

	"github.com/outpost-migrate/outpost/batch/progress"
)

// defaultProgressEvery is the period of progress lines when stderr is not
// a terminal: often enough to see a run is alive, rarely enough that a log
// collector is not flooded (OUTPOST_PROGRESS_INTERVAL overrides).
const defaultProgressEvery = 5 * time.Second

// newEvents builds the stderr sink: JSON events (every one), or logfmt
// lines with a progress display on a terminal or periodic progress lines
// otherwise. It emits run_started.
func (inv *invocation) newEvents(stderr io.Writer) progress.Sink {
	logger := progress.NewLogger(stderr, inv.c.logFormat == "json", inv.rep.RunID, inv.rep.Command)
	logger.Verbose = inv.c.verbose
	var sink progress.Sink = logger
	if inv.c.logFormat == "text" {
		logger.Quiet = true
		every := defaultProgressEvery
		if v, ok := inv.e.lookupEnv("OUTPOST_PROGRESS_INTERVAL"); ok {
			if d, err := parseDuration(v); err == nil && d > 0 {
				every = d
			}
		}
		inv.console = &console{w: stderr, log: logger, tty: inv.e.stderrTTY, width: inv.e.stderrWidth, every: every}
		sink = inv.console
	}
	sink.Emit(progress.Event{Level: "info", Event: progress.RunStarted, Msg: fmt.Sprintf("%s started", inv.cmd.path),
		Fields: map[string]any{"version": version, "kind": inv.cmd.kind}})
	return sink
}

// endProgress clears the progress display and emits run_finished, before
// the report is printed.
func (inv *invocation) endProgress(outcome string, exit int) {
	if inv.cmd == nil {
		return
	}
	if inv.console != nil {
		inv.console.end()
	}
	level := "info"
	if exit != 0 {
		level = "warn"
	}
	inv.events.Emit(progress.Event{Level: level, Event: progress.RunFinished, Msg: fmt.Sprintf("%s finished: %s (exit %d)", inv.cmd.path, outcome, exit),
		ElapsedMS: time.Since(inv.rep.StartedAt).Milliseconds(), Fields: map[string]any{"outcome": outcome, "exit_code": exit}})
}
