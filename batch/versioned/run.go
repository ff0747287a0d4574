package versioned

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// RunOf returns run ready for use: a plain apply when nil, its events
// discarded when it has no sink.
func RunOf(run *batch.Run) *batch.Run {
	if run == nil {
		run = &batch.Run{Command: "apply"}
	}
	if run.Events == nil {
		run.Events = progress.Nop
	}
	return run
}

// Stopped returns the reason the run must stop before its next unit of
// work (a signal, --max-runtime, a lost lease), if any. first exempts
// --max-runtime for the first unit of a run, so that a rerun on exit 75
// always gets somewhere.
func Stopped(run *batch.Run, first bool) error {
	err := run.Stopped()
	if err != nil && first && report.CodeOf(err) == report.CodeTimeout {
		return nil
	}
	return err
}

// Halt is Stopped, then the fence: a run that lost its lease starts no
// further work.
func Halt(ctx context.Context, run *batch.Run, first bool) error {
	if err := Stopped(run, first); err != nil {
		return err
	}
	if run.Fence != nil {
		return run.Fence.Check(ctx)
	}
	return nil
}

// FenceToken is the fencing token of run's lease, 0 when it holds none;
// checkpoints record it.
func FenceToken(run *batch.Run) int64 {
	if run.Fence == nil {
		return 0
	}
	return run.Fence.Token()
}

// Started announces that m starts; doing says how ("applying", "resuming
// at ...").
func (s Store) Started(run *batch.Run, m *Migration, doing string) {
	run.Emit(progress.Event{Level: "info", Event: progress.MigrationStarted, Migration: s.ID(m),
		Msg: fmt.Sprintf("%s migration %s: %s", s.Label, m.Key(), doing)})
}

// Applied closes the line of m, applied since begin, and announces it.
func (s Store) Applied(run *batch.Run, m *Migration, line *report.Migration, begin time.Time) {
	line.State = report.StateApplied
	line.DurationMS = time.Since(begin).Milliseconds()
	run.Emit(progress.Event{Level: "info", Event: progress.MigrationFinished, Migration: s.ID(m),
		Msg: fmt.Sprintf("%s migration %s applied", s.Label, m.Key()), Counts: line.Counts, ElapsedMS: line.DurationMS})
}

// Failed closes the line of m, stopped by err since begin (state "failed",
// or "interrupted" for a stop), announces it and returns err with m's
// version and where it stopped (at, under key: "step", "statement"; left
// out when at is "") in its details. The caller has set the line's reason.
func (s Store) Failed(run *batch.Run, m *Migration, line *report.Migration, begin time.Time, err error, key string, at any) error {
	line.DurationMS = time.Since(begin).Milliseconds()
	line.State = report.StopState(err)
	level := "error"
	if report.IsStop(err) {
		level = "warn"
	}
	run.Emit(progress.Event{Level: level, Event: progress.MigrationFinished, Migration: s.ID(m),
		Msg: fmt.Sprintf("%s migration %s %s: %v", s.Label, m.Key(), line.State, err), ElapsedMS: line.DurationMS})
	var e *report.Error
	if errors.As(err, &e) {
		e.With("version", m.Version)
		if at != "" {
			e.With(key, at)
		}
	}
	return err
}

// Span returns the versions an apply runs, first to last: from the one
// after the recorded version to target when that names one of the set's
// migrations, else to the newest; first > last: nothing to do. A dirty
// recorded version is where the span starts when resumes says that this
// tool left it half-done (the caller resumes it) and a report.CodeDirty
// error when not; a recorded version newer than the set is a
// report.CodeDataRefused error.
func (s Set[M, P]) Span(rec Recorded, target string, resumes func() bool) (first, last int, err error) {
	if rec.Version > s.Latest() {
		return 0, 0, report.E(report.CodeDataRefused, "%s", s.newerReason(rec)).With("version", rec.Version)
	}
	first = max(rec.Version+1, 1)
	if rec.Dirty {
		if !resumes() {
			return 0, 0, dirtyError(rec)
		}
		first = rec.Version
	}
	last = s.Latest()
	if v, ok := s.Lookup(target); ok {
		last = v
	}
	return first, last, nil
}

// ForceVersion checks the version force is asked to record: 0 or NoVersion
// record none (returned as NoVersion); a version the set does not know is
// a report.CodeUsage error.
func (s Set[M, P]) ForceVersion(version int) (int, error) {
	if version == 0 {
		version = NoVersion
	}
	if version != NoVersion && (version < 1 || version > s.Latest()) {
		return 0, report.E(report.CodeUsage, "cannot force version %d: this tool knows %s versions 1 to %d (0 records no version)",
			version, s.Store.Label, s.Latest()).With("version", version)
	}
	return version, nil
}
