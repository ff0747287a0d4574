package clickhousephase

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// recorded is the version table's state as the shared bookkeeping reads it.
func (p *Phase) recorded(st dbState) versioned.Recorded {
	return versioned.Recorded{Table: p.prefix + VersionTable + " in ClickHouse", Version: st.Version, Dirty: st.Dirty}
}

// linesFor derives every migration's line from the recorded state; the
// checkpoints tell when a migration was applied and where a dirty one
// stopped.
func (p *Phase) linesFor(st dbState) []report.Migration {
	return p.src.Lines(p.recorded(st), versioned.Ledger[*Migration]{
		AppliedAt: func(m *Migration) string {
			if cp, ok := st.Checkpoints[m.Version]; ok && cp.State == cpDone {
				return cp.UpdatedAt.UTC().Format(time.RFC3339)
			}
			return ""
		},
		Resume: func(m *Migration, l *report.Migration) bool {
			n := len(m.Statements(p.prefix))
			cp, ok := st.resumable(m, n)
			if !ok {
				return false
			}
			l.Progress = &report.Progress{RunID: cp.RunID, UpdatedAt: cp.UpdatedAt.UTC().Format(time.RFC3339),
				Position: fmt.Sprintf("statement %d of %d", cp.Statement+1, n), Done: int64(cp.Statement), Total: int64(n)}
			l.Reason = fmt.Sprintf("version %d was started by this tool (run %s) and stopped before statement %d of %d finished; %s says dirty, and apply resumes it at that statement",
				m.Version, cp.RunID, cp.Statement+1, n, p.prefix+VersionTable)
			return true
		},
	})
}

// Plan implements batch.Phase: Status, and for each pending or partial
// migration how many statements apply would run and, with Config.ShowSQL
// (plan --show-sql), which (from the one a partial run stopped at).
func (p *Phase) Plan(ctx context.Context) ([]report.Migration, error) {
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	for i := range p.src.Migrations {
		m := &p.src.Migrations[i]
		l := &lines[i]
		stmts := m.Statements(p.prefix)
		from := 0
		switch l.State {
		case report.StatePending:
		case report.StatePartial:
			cp, _ := st.resumable(m, len(stmts))
			from = cp.Statement
		default:
			continue
		}
		l.Estimate = &report.Estimate{Units: "statements", Value: int64(len(stmts) - from), Method: "counted"}
		if p.cfg.ShowSQL {
			for j, sql := range stmts[from:] {
				// No transaction: each statement is applied on its own.
				l.Statements = append(l.Statements, report.Statement{Step: fmt.Sprintf("statement %d of %d", from+j+1, len(stmts)), SQL: sql})
			}
		}
	}
	return lines, nil
}

// Verify implements batch.Phase: it compares the live tables with the
// expected schema of the recorded version (columns with types and
// defaults, engine, sorting and partition keys, skip indexes) and lists
// every difference on that version's line ("drift", report.CodeDrift).
// A dirty database cannot be verified (report.CodeDirty); a version newer
// than the source is report.CodeDataRefused.
func (p *Phase) Verify(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	_, resumable := st.resumableAt(p)
	return lines, p.src.Verify(lines, p.recorded(st), resumable, versioned.Against(p.src.Expected, func(want *Schema) ([]report.Issue, error) {
		live, err := Inspect(ctx, p.conn, p.cfg.Database, p.prefix, want)
		if err != nil {
			p.dropConn()
			return nil, classify(ctx, err, report.CodeUnknown, "read the live schema of %s", p.where())
		}
		return Diff(want, live, p.prefix), nil
	}))
}
