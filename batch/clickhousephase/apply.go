package clickhousephase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// Apply implements batch.Phase: it applies the pending migrations in order,
// stopping after run.Target when that names one of them, each statement on
// its own. It first resumes a migration this tool left half-done (at the
// statement that did not finish); any other dirty version is refused with
// report.CodeDirty. run.Fence and run.Stopped are checked before every
// statement: a stop leaves the version dirty with this tool's checkpoint,
// and the next apply resumes it.
func (p *Phase) Apply(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	if run == nil {
		run = &batch.Run{Command: "apply"}
	}
	if run.Events == nil {
		run.Events = progress.Nop
	}
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	latest := p.src.Latest()
	if st.Version > latest {
		return lines, report.E(report.CodeDataRefused, "%s", lines[len(lines)-1].Reason).With("version", st.Version)
	}
	target := latest
	if run.Target != "" {
		if v, ok := p.src.Lookup(run.Target); ok {
			target = v
		}
	}
	next := max(st.Version+1, 1)
	var resume *checkpoint
	if st.Dirty {
		cp, ok := st.resumableAt(p)
		if !ok {
			return lines, p.dirtyError(st.Version)
		}
		resume, next = &cp, st.Version
	}
	if next > target {
		return lines, nil
	}
	conn := p.conn
	// Only now, with work to do: an up-to-date database is left as it is.
	if err := p.ensureTables(ctx, conn); err != nil {
		p.dropConn()
		return lines, classify(ctx, err, report.CodeUnknown, "create %s and %s in %s", p.prefix+VersionTable, p.prefix+CheckpointTable, p.where())
	}
	for v := next; v <= target; v++ {
		m := &p.src.Migrations[v-1]
		line, err := p.applyOne(ctx, conn, run, m, resume)
		lines[v-1] = line
		if err != nil {
			return lines, err
		}
		resume = nil
	}
	return lines, nil
}

// checkRun returns the reason to stop before the next statement, if any.
func checkRun(ctx context.Context, run *batch.Run) error {
	if err := run.Stopped(); err != nil {
		return err
	}
	if run.Fence != nil {
		return run.Fence.Check(ctx)
	}
	return nil
}

// applyOne runs one migration from its first statement, or from resume's.
func (p *Phase) applyOne(ctx context.Context, conn driver.Conn, run *batch.Run, m *Migration, resume *checkpoint) (report.Migration, error) {
	line := p.baseLine(m)
	begin := time.Now()
	stmts := m.Statements(p.prefix)
	cp := checkpoint{Version: m.Version, Statements: len(stmts), State: cpRunning, RunID: run.ID}
	if run.Fence != nil {
		cp.FenceToken = run.Fence.Token()
	}
	msg := "applying"
	if resume != nil {
		cp.Statement = resume.Statement
		msg = fmt.Sprintf("resuming at statement %d of %d", cp.Statement+1, len(stmts))
	}
	run.Emit(progress.Event{Level: "info", Event: progress.MigrationStarted, Migration: m.ID(),
		Msg: fmt.Sprintf("ClickHouse migration %s: %s", m.Key(), msg)})
	marked := resume != nil
	fail := func(err error) (report.Migration, error) {
		return p.failed(run, m, line, begin, cp, marked, err)
	}
	if err := checkRun(ctx, run); err != nil {
		return fail(err)
	}
	if !marked {
		// golang-migrate's order: the version dirty first, then the SQL.
		if err := p.setVersion(ctx, conn, m.Version, true); err != nil {
			return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s: mark started", m.Key()))
		}
		if err := p.saveCheckpoint(ctx, conn, cp); err != nil {
			return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s: mark started", m.Key()))
		}
		marked = true
	}
	first := cp.Statement
	for i := first; i < len(stmts); i++ {
		if i > first || resume != nil {
			if err := checkRun(ctx, run); err != nil {
				return fail(err)
			}
		}
		if err := conn.Exec(ctx, stmts[i]); err != nil {
			return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s statement %d of %d", m.Key(), i+1, len(stmts)))
		}
		cp.Statement = i + 1
		if err := p.saveCheckpoint(ctx, conn, cp); err != nil {
			return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s", m.Key()))
		}
	}
	if err := p.setVersion(ctx, conn, m.Version, false); err != nil {
		return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s: record it applied", m.Key()))
	}
	cp.State = cpDone
	if err := p.saveCheckpoint(ctx, conn, cp); err != nil {
		return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s", m.Key()))
	}
	line.State = StateApplied
	line.DurationMS = time.Since(begin).Milliseconds()
	line.AppliedAt = time.Now().UTC().Format(time.RFC3339)
	line.Counts = &report.Counts{Scanned: int64(len(stmts)), Changed: int64(len(stmts) - resumeStart(resume))}
	run.Emit(progress.Event{Level: "info", Event: progress.MigrationFinished, Migration: m.ID(),
		Msg: fmt.Sprintf("ClickHouse migration %s applied", m.Key()), Counts: line.Counts, ElapsedMS: line.DurationMS})
	return line, nil
}

func resumeStart(resume *checkpoint) int {
	if resume == nil {
		return 0
	}
	return resume.Statement
}

// failed fills the line of a migration that stopped and returns err with
// the version in its details.
func (p *Phase) failed(run *batch.Run, m *Migration, line report.Migration, begin time.Time, cp checkpoint, marked bool, err error) (report.Migration, error) {
	line.DurationMS = time.Since(begin).Milliseconds()
	line.State = report.StopState(err)
	level := "error"
	if report.IsStop(err) {
		level = "warn"
	}
	if marked {
		line.Resumable = true
		line.Progress = &report.Progress{RunID: cp.RunID, Position: fmt.Sprintf("statement %d of %d", cp.Statement+1, cp.Statements),
			Done: int64(cp.Statement), Total: int64(cp.Statements)}
		line.Reason = fmt.Sprintf("stopped before statement %d of %d finished: %v; version %d stays dirty with this tool's checkpoint, and apply resumes it at that statement",
			cp.Statement+1, cp.Statements, err, m.Version)
	} else {
		line.Reason = fmt.Sprintf("not started: %v", err)
	}
	run.Emit(progress.Event{Level: level, Event: progress.MigrationFinished, Migration: m.ID(),
		Msg: fmt.Sprintf("ClickHouse migration %s %s: %v", m.Key(), line.State, err), ElapsedMS: line.DurationMS})
	var e *report.Error
	if errors.As(err, &e) {
		e.With("version", m.Version).With("statement", cp.Statement+1)
	}
	return line, err
}

// Force records version as applied and clean after a manual repair, as
// golang-migrate's force does (0 or NoVersion: no version), and marks this
// tool's unfinished checkpoints forced: the person who repaired the schema
// decided where it stands. A version the source does not know is
// report.CodeUsage.
func (p *Phase) Force(ctx context.Context, version int) error {
	if version == 0 {
		version = NoVersion
	}
	if version != NoVersion && (version < 1 || version > p.src.Latest()) {
		return report.E(report.CodeUsage, "cannot force version %d: this tool knows ClickHouse versions 1 to %d (0 records no version)", version, p.src.Latest()).With("version", version)
	}
	_, st, err := p.status(ctx)
	if err != nil {
		return err
	}
	conn := p.conn
	if err := p.ensureTables(ctx, conn); err != nil {
		p.dropConn()
		return classify(ctx, err, report.CodeUnknown, "create %s in %s", p.prefix+VersionTable, p.where())
	}
	if err := p.setVersion(ctx, conn, version, false); err != nil {
		p.dropConn()
		return classify(ctx, err, report.CodeUnknown, "force version %d in %s", version, p.where())
	}
	for _, cp := range st.Checkpoints {
		if cp.State != cpRunning {
			continue
		}
		cp.State, cp.RunID = cpForced, "force"
		if err := p.saveCheckpoint(ctx, conn, cp); err != nil {
			p.dropConn()
			return classify(ctx, err, report.CodeUnknown, "discard the unfinished checkpoint of version %d", cp.Version)
		}
	}
	return nil
}
