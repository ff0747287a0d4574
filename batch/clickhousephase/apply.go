package clickhousephase

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/versioned"
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
	run = versioned.RunOf(run)
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	var resume *checkpoint
	first, last, err := p.src.Span(p.recorded(st), run.Target, func() bool {
		cp, ok := st.resumableAt(p)
		resume = &cp
		return ok
	})
	if err != nil || first > last {
		return lines, err
	}
	conn := p.conn
	// Only now, with work to do: an up-to-date database is left as it is.
	if err := p.ensureTables(ctx, conn); err != nil {
		p.dropConn()
		return lines, classify(ctx, err, report.CodeUnknown, "create %s and %s in %s", p.prefix+VersionTable, p.prefix+CheckpointTable, p.where())
	}
	for v := first; v <= last; v++ {
		m := p.src.At(v)
		line, err := p.applyOne(ctx, conn, run, m, resume)
		lines[v-1] = line
		if err != nil {
			return lines, err
		}
		resume = nil
	}
	return lines, nil
}

// applyOne runs one migration from its first statement, or from resume's.
func (p *Phase) applyOne(ctx context.Context, conn driver.Conn, run *batch.Run, m *Migration, resume *checkpoint) (report.Migration, error) {
	line := store.Line(&m.Migration)
	begin := time.Now()
	stmts := m.Statements(p.prefix)
	cp := checkpoint{Version: m.Version, Statements: len(stmts), State: cpRunning, RunID: run.ID, FenceToken: versioned.FenceToken(run)}
	msg := "applying"
	if resume != nil {
		cp.Statement = resume.Statement
		msg = fmt.Sprintf("resuming at statement %d of %d", cp.Statement+1, len(stmts))
	}
	store.Started(run, &m.Migration, msg)
	marked := resume != nil
	fail := func(err error) (report.Migration, error) {
		err = p.failed(run, m, &line, begin, cp, marked, err)
		return line, err
	}
	if err := versioned.Halt(ctx, run, false); err != nil {
		return fail(err)
	}
	if !marked {
		// golang-migrate's order: the version dirty first, then the SQL.
		if err := p.markStarted(ctx, conn, cp); err != nil {
			return fail(classify(ctx, err, report.CodeMigrationFailed, "ClickHouse migration %s: mark started", m.Key()))
		}
		marked = true
	}
	first := cp.Statement
	for i := first; i < len(stmts); i++ {
		if i > first || resume != nil {
			if err := versioned.Halt(ctx, run, false); err != nil {
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
	line.AppliedAt = time.Now().UTC().Format(time.RFC3339)
	line.Counts = &report.Counts{Scanned: int64(len(stmts)), Changed: int64(len(stmts) - resumeStart(resume))}
	store.Applied(run, &m.Migration, &line, begin)
	return line, nil
}

// markStarted records the version dirty with this tool's checkpoint: from
// here a stop is resumable.
func (p *Phase) markStarted(ctx context.Context, conn driver.Conn, cp checkpoint) error {
	if err := p.setVersion(ctx, conn, cp.Version, true); err != nil {
		return err
	}
	return p.saveCheckpoint(ctx, conn, cp)
}

func resumeStart(resume *checkpoint) int {
	if resume == nil {
		return 0
	}
	return resume.Statement
}

// failed fills the line of a migration that stopped and returns err with
// the version and statement in its details.
func (p *Phase) failed(run *batch.Run, m *Migration, line *report.Migration, begin time.Time, cp checkpoint, marked bool, err error) error {
	if marked {
		line.Resumable = true
		line.Progress = &report.Progress{RunID: cp.RunID, Position: fmt.Sprintf("statement %d of %d", cp.Statement+1, cp.Statements),
			Done: int64(cp.Statement), Total: int64(cp.Statements)}
		line.Reason = fmt.Sprintf("stopped before statement %d of %d finished: %v; version %d stays dirty with this tool's checkpoint, and apply resumes it at that statement",
			cp.Statement+1, cp.Statements, err, m.Version)
	} else {
		line.Reason = fmt.Sprintf("not started: %v", err)
	}
	return store.Failed(run, &m.Migration, line, begin, err, "statement", cp.Statement+1)
}

// Force records version as applied and clean after a manual repair, as
// golang-migrate's force does (0 or NoVersion: no version), and marks this
// tool's unfinished checkpoints forced: the person who repaired the schema
// decided where it stands. A version the source does not know is
// report.CodeUsage.
func (p *Phase) Force(ctx context.Context, version int) error {
	version, err := p.src.ForceVersion(version)
	if err != nil {
		return err
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
