package sqlphase

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// Apply implements batch.Phase. Under golang-migrate's advisory lock it
// applies the pending migrations in order, stopping after run.Target when
// that names one of them (see Source.Lookup; a target of another phase
// applies them all). It first resumes a migration this tool left
// half-done; any other dirty version is refused with report.CodeDirty.
// When run.Fence is set it is checked before each migration and before
// every commit, and a lost lease stops the run with the fence's error.
//
// Lines of migrations applied by this call have State "applied" with
// AppliedAt and DurationMS set (and counts and progress for batched
// steps); lines applied before keep State "applied" without DurationMS.
// A failure leaves the failed line "failed" (or "interrupted" on
// cancellation or a lost lease), with Resumable telling whether a rerun
// continues from a checkpoint; cancellation returns ctx.Err() wrapped.
func (p *Phase) Apply(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	run = versioned.RunOf(run)
	conn, err := p.connect(ctx)
	if err != nil {
		return p.src.UnknownLines(err), err
	}
	release, err := p.lockAdvisory(ctx, conn, run)
	if err != nil {
		p.dropConn()
		lines, _, serr := p.status(ctx)
		if serr != nil {
			lines = p.src.UnknownLines(err)
		}
		return lines, err
	}
	defer release()

	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	var resume *checkpoint
	first, last, err := p.src.Span(recordedState(st), run.Target, func() bool {
		cp, ok := st.resumable(p.src.At(st.Version))
		resume = &cp
		return ok
	})
	if err != nil || first > last {
		return lines, err
	}
	// Only now, with work to do: an up-to-date database is left as it is,
	// even for a role that may not create tables.
	if _, err := conn.Exec(ctx, createVersionTable+"; "+createCheckpointTable); err != nil {
		p.dropConn()
		return lines, classify(ctx, err, report.CodeUnknown, "create schema_migrations and %s in %s", checkpointTable, p.where())
	}
	for v := first; v <= last; v++ {
		m := p.src.At(v)
		// --max-runtime lets the first migration of a run start: a rerun
		// on exit 75 always gets somewhere.
		if err := versioned.Halt(ctx, run, v == first); err != nil {
			return lines, fmt.Errorf("before SQL migration %s: %w", m.Key(), err)
		}
		line, err := p.applyOne(ctx, conn, run, m, resume)
		if line.Counts == nil && line.State == report.StateApplied {
			// batch.Phase: Counts marks the lines this run applied.
			line.Counts = &report.Counts{}
		}
		lines[v-1] = line
		if err != nil {
			p.dropConn()
			return lines, err
		}
		resume = nil
	}
	return lines, nil
}

// applying is one migration under way: the checkpoint as last committed,
// and whether schema_migrations records the version dirty beside it
// (marked), so that a stop from then on is resumable.
type applying struct {
	m       *Migration
	cp      checkpoint
	marked  bool
	resumed bool
}

// applyOne runs one migration from its first step, or from resume's.
func (p *Phase) applyOne(ctx context.Context, conn *pgx.Conn, run *batch.Run, m *Migration, resume *checkpoint) (report.Migration, error) {
	line := store.Line(&m.Migration)
	begin := time.Now()
	a := &applying{m: m, cp: checkpoint{Migration: m.Key(), Version: m.Version, StepName: m.Steps[0].Name, StartedAt: begin}}
	msg := "applying"
	if resume != nil {
		a.cp, a.marked, a.resumed = *resume, true, true
		msg = fmt.Sprintf("resuming at step %q", a.cp.StepName)
	}
	a.cp.RunID, a.cp.FenceToken = run.ID, versioned.FenceToken(run)
	store.Started(run, &m.Migration, msg)
	lock := p.lockOf(ctx, conn, m)
	for i := a.cp.Step; i < len(m.Steps); i++ {
		run.Emit(stepStarted(m, &m.Steps[i], lock))
		if err := p.runStep(ctx, conn, run, a, i); err != nil {
			err = a.failed(run, &line, begin, m.Steps[i].Name, err)
			return line, err
		}
	}
	if a.cp.FinishedAt != nil {
		line.AppliedAt = a.cp.FinishedAt.UTC().Format(time.RFC3339)
	}
	a.progress(&line)
	store.Applied(run, &m.Migration, &line, begin)
	return line, nil
}

// runStep runs step i of the migration: a SQL step in one transaction, a
// batched step in many. Each commit moves the checkpoint with it, and the
// version is recorded dirty from the first commit of a stepped migration
// until its last.
func (p *Phase) runStep(ctx context.Context, conn *pgx.Conn, run *batch.Run, a *applying, i int) error {
	m, step := a.m, &a.m.Steps[i]
	if step.Batched != nil {
		if !a.marked {
			if err := p.markStarted(ctx, conn, run, a, step.Name); err != nil {
				return classify(ctx, err, report.CodeMigrationFailed, "SQL migration %s: mark started", m.Key())
			}
		}
		return p.runBatched(ctx, conn, run, m, i, &a.cp, a.resumed)
	}
	last := i == len(m.Steps)-1
	next := a.cp
	next.Step, next.StepName = i+1, stepName(m, i+1)
	err := p.inTx(ctx, conn, run, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, step.SQL); err != nil {
			return err
		}
		if last || !a.marked {
			// Dirty from the first step's commit, clean with the last's.
			if err := setVersion(ctx, tx, m.Version, !last); err != nil {
				return err
			}
		}
		return saveCheckpoint(ctx, tx, &next, last)
	})
	if err != nil {
		what := "SQL migration " + m.Key()
		if step.Name != "" {
			what += " step " + step.Name
		}
		return classify(ctx, err, report.CodeMigrationFailed, "%s", what)
	}
	a.cp = next
	a.marked = a.marked || !last
	return nil
}

// markStarted records the version dirty beside this tool's checkpoint
// before a batched step's first batch: from here a stop is resumable.
func (p *Phase) markStarted(ctx context.Context, conn *pgx.Conn, run *batch.Run, a *applying, step string) error {
	next := a.cp
	next.StepName = step
	err := p.inTx(ctx, conn, run, func(tx pgx.Tx) error {
		if err := setVersion(ctx, tx, a.m.Version, true); err != nil {
			return err
		}
		return saveCheckpoint(ctx, tx, &next, false)
	})
	if err != nil {
		return err
	}
	a.cp, a.marked = next, true
	return nil
}

// stepName is the name of step i of m, "" past the last.
func stepName(m *Migration, i int) string {
	if i >= len(m.Steps) {
		return ""
	}
	return m.Steps[i].Name
}

// progress puts a stepped migration's checkpoint on its line.
func (a *applying) progress(line *report.Migration) {
	if !a.m.Stepped() {
		return
	}
	line.Progress = progressOf(a.cp, a.resumed)
	if a.cp.Done > 0 || a.cp.Total > 0 {
		line.Counts = countsOf(a.cp)
	}
}

// failed fills the line of a migration stopped in step by err and returns
// err with the version and step in its details.
func (a *applying) failed(run *batch.Run, line *report.Migration, begin time.Time, step string, err error) error {
	if a.m.Stepped() && a.marked {
		line.Resumable = true
		a.progress(line)
		line.Reason = fmt.Sprintf("stopped in step %q: %v; version %d stays dirty with this tool's checkpoint, and apply resumes it", step, err, a.m.Version)
	} else {
		line.Reason = fmt.Sprintf("rolled back: %v; the recorded version stays %d and a rerun applies it again", err, a.m.Version-1)
	}
	return store.Failed(run, &a.m.Migration, line, begin, err, "step", step)
}

// runBatched runs the batched step i of m from cp's position until it is
// done, one transaction per batch; each commit moves cp.
func (p *Phase) runBatched(ctx context.Context, conn *pgx.Conn, run *batch.Run, m *Migration, i int, cp *checkpoint, resumed bool) error {
	step := &m.Steps[i]
	last := i == len(m.Steps)-1
	if cp.Total == 0 && cp.Done == 0 {
		est, err := step.Batched.Estimate(ctx, conn, p.opts.CountBelow)
		if err != nil {
			return classify(ctx, err, report.CodeMigrationFailed, "SQL migration %s step %s: count rows", m.Key(), step.Name)
		}
		cp.Total, cp.TotalMethod = est.Value, est.Method
	}
	start := time.Now()
	var rowsThisRun int64
	// --max-runtime stops only after one batch of this run (a signal at
	// once), so that reruns on exit 75 always advance the checkpoint.
	batches := 0
	limit := p.opts.BatchSize
	var longest time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("SQL migration %s step %s: stopped after %d rows (checkpoint at %q): %w", m.Key(), step.Name, cp.Done, cp.Position, err)
		}
		// A signal, --max-runtime or a lost lease: stop between batches,
		// with the last batch's checkpoint committed.
		if err := versioned.Stopped(run, batches == 0); err != nil {
			return fmt.Errorf("SQL migration %s step %s: stopped after %d rows (checkpoint at %q): %w", m.Key(), step.Name, cp.Done, cp.Position, err)
		}
		next := *cp
		var res BatchResult
		batchStart := time.Now()
		err := p.inTx(ctx, conn, run, func(tx pgx.Tx) error {
			var err error
			res, err = step.Batched.Batch(ctx, tx, cp.Position, limit)
			if err != nil {
				return err
			}
			if res.Position != "" {
				next.Position = res.Position
			}
			next.Done += res.Rows
			next.Changed += res.Changed
			next.Deleted += res.Deleted
			if res.Done {
				next.Step, next.StepName = i+1, stepName(m, i+1)
				if last {
					if err := setVersion(ctx, tx, m.Version, false); err != nil {
						return err
					}
				}
			}
			return saveCheckpoint(ctx, tx, &next, res.Done && last)
		})
		if err != nil {
			return classify(ctx, err, report.CodeMigrationFailed, "SQL migration %s step %s: batch after %q", m.Key(), step.Name, cp.Position)
		}
		*cp = next
		took := time.Since(batchStart)
		longest = max(longest, took)
		rowsThisRun += res.Rows
		batches++
		ev := batchDone(m, step, cp, res, time.Since(start), rowsThisRun)
		ev.Fields["resumed"] = resumed
		ev.Fields["batch_ms"], ev.Fields["batch_limit"] = took.Milliseconds(), limit
		ev.Fields["longest_batch_ms"] = longest.Milliseconds()
		run.Emit(ev)
		limit = nextLimit(limit, res.Rows, took, p.opts.BatchBudget)
		if res.Done {
			return nil
		}
	}
}

// inTx runs fn in a transaction and commits it, checking the fence (when
// there is one) right before the commit, so that a run that lost its lease
// commits nothing.
func (p *Phase) inTx(ctx context.Context, conn *pgx.Conn, run *batch.Run, fn func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	rollback := func() {
		// The caller's context may be cancelled: roll back on our own.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}
	if err := fn(tx); err != nil {
		rollback()
		return err
	}
	if run != nil && run.Fence != nil {
		if err := run.Fence.Check(ctx); err != nil {
			rollback()
			return err
		}
	}
	return tx.Commit(ctx)
}

// Force records version as applied and clean after a manual repair, the way
// golang-migrate's force does (0 or NoVersion: no version at all), under
// the advisory lock. It also discards this tool's unfinished checkpoints:
// the person who repaired the schema decided where it stands. A version
// the source does not know is a report.CodeUsage error.
func (p *Phase) Force(ctx context.Context, version int) error {
	version, err := p.src.ForceVersion(version)
	if err != nil {
		return err
	}
	conn, err := p.connect(ctx)
	if err != nil {
		return err
	}
	run := &batch.Run{Command: "force", Events: progress.Nop}
	release, err := p.lockAdvisory(ctx, conn, run)
	if err != nil {
		p.dropConn()
		return err
	}
	defer release()
	if _, err := conn.Exec(ctx, createVersionTable+"; "+createCheckpointTable); err != nil {
		p.dropConn()
		return classify(ctx, err, report.CodeUnknown, "create schema_migrations in %s", p.where())
	}
	err = p.inTx(ctx, conn, nil, func(tx pgx.Tx) error {
		if err := setVersion(ctx, tx, version, false); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM outpost_migrate_checkpoint WHERE finished_at IS NULL`); err != nil {
			return fmt.Errorf("discard unfinished checkpoints: %w", err)
		}
		return nil
	})
	if err != nil {
		p.dropConn()
		return classify(ctx, err, report.CodeUnknown, "force version %d in %s", version, p.where())
	}
	return nil
}

// Bounds of an adapted batch size, in rows.
const (
	minBatch = 100
	maxBatch = 1_000_000
)

// nextLimit scales the batch size so that the next batch takes about
// budget, given that the last one visited rows rows in took. It moves by at
// most a factor of two per batch, so one slow or fast batch (a checkpoint
// of the server, a page cache miss) does not swing it. A negative budget
// keeps the size.
func nextLimit(limit int, rows int64, took, budget time.Duration) int {
	if budget <= 0 || rows <= 0 || took <= 0 {
		return limit
	}
	want := float64(rows) * float64(budget) / float64(took)
	want = min(max(want, float64(limit)/2), float64(limit)*2)
	return int(min(max(want, minBatch), maxBatch))
}

// lockOf is the source's estimate of the lock m holds, measured on the
// database as it is now. It only informs (the step_started event), so an
// error leaves it out rather than stopping the migration.
func (p *Phase) lockOf(ctx context.Context, conn *pgx.Conn, m *Migration) *report.ExclusiveLock {
	if p.src.Locks == nil {
		return nil
	}
	lock, err := p.src.Locks(ctx, conn, m.Version)
	if err != nil {
		return nil
	}
	return lock
}

// stepStarted announces a step; a step that holds lock says so, with the
// tables and the expected duration, for as long as it runs.
func stepStarted(m *Migration, step *Step, lock *report.ExclusiveLock) progress.Event {
	name := step.Name
	if name == "" {
		name = m.Name
	}
	ev := progress.Event{Level: "info", Event: progress.StepStarted, Migration: m.ID(),
		Msg:    fmt.Sprintf("SQL migration %s: step %s", m.Key(), name),
		Fields: map[string]any{"step": name, "batched": step.Batched != nil}}
	if lock != nil && (lock.Step == "" || lock.Step == step.Name) {
		ev.Msg = fmt.Sprintf("SQL migration %s: step %s holds %s on %s until it commits (estimated %s)",
			m.Key(), name, lock.Mode, strings.Join(lock.Tables, ", "), time.Duration(lock.EstimatedMS)*time.Millisecond)
		ev.Fields["lock"] = lock.Mode
		ev.Fields["tables"] = lock.Tables
		ev.Fields["estimated_ms"] = lock.EstimatedMS
	}
	return ev
}

// batchDone is the progress of a batched step after a batch: rows done of
// rows to do, and the rate and time left at this run's pace so far.
func batchDone(m *Migration, step *Step, cp *checkpoint, res BatchResult, elapsed time.Duration, rowsThisRun int64) progress.Event {
	ev := progress.Event{
		Level: "info", Event: progress.BatchDone, Migration: m.ID(),
		Msg:           fmt.Sprintf("SQL migration %s step %s: %d of ~%d rows done", m.Key(), step.Name, cp.Done, max(cp.Total, cp.Done)),
		Cursor:        cp.Position,
		Counts:        countsOf(*cp),
		TotalEstimate: max(cp.Total, cp.Done),
		ElapsedMS:     elapsed.Milliseconds(),
		Fields:        map[string]any{"step": step.Name, "batch_rows": res.Rows},
	}
	if s := elapsed.Seconds(); s > 0 && rowsThisRun > 0 {
		ev.RatePerS = float64(rowsThisRun) / s
		if left := cp.Total - cp.Done; left > 0 && !res.Done {
			ev.ETAS = float64(left) / ev.RatePerS
		}
	}
	return ev
}
