package clickhousephase

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/report"
)

// linesFor derives every migration's line from the recorded state.
func (p *Phase) linesFor(st dbState) []report.Migration {
	lines := make([]report.Migration, 0, len(p.src.Migrations)+1)
	for i := range p.src.Migrations {
		m := &p.src.Migrations[i]
		l := p.baseLine(m)
		switch {
		case st.Version == NoVersion || m.Version > st.Version:
			l.State = StatePending
		case m.Version < st.Version || !st.Dirty:
			l.State = StateApplied
			if cp, ok := st.Checkpoints[m.Version]; ok && cp.State == cpDone {
				l.AppliedAt = cp.UpdatedAt.UTC().Format(time.RFC3339)
			}
		default:
			n := len(m.Statements(p.prefix))
			if cp, ok := st.resumable(m, n); ok {
				l.State = StatePartial
				l.Resumable = true
				l.Progress = &report.Progress{RunID: cp.RunID, UpdatedAt: cp.UpdatedAt.UTC().Format(time.RFC3339),
					Position: fmt.Sprintf("statement %d of %d", cp.Statement+1, n), Done: int64(cp.Statement), Total: int64(n)}
				l.Reason = fmt.Sprintf("version %d was started by this tool (run %s) and stopped before statement %d of %d finished; %s says dirty, and apply resumes it at that statement",
					m.Version, cp.RunID, cp.Statement+1, n, p.prefix+VersionTable)
			} else {
				l.State = StateDirty
				l.Reason = p.dirtyReason(m.Version)
			}
		}
		lines = append(lines, l)
	}
	if latest := p.src.Latest(); st.Version > latest {
		lines = append(lines, report.Migration{
			ID: fmt.Sprintf("%s/%06d_unknown", Backend, st.Version), Backend: Backend, Name: "unknown", Version: st.Version,
			State: StateUnknown,
			Reason: fmt.Sprintf("%s records version %d, newer than the newest ClickHouse migration this tool knows (%d): use the tool of the Outpost release that wrote it",
				p.prefix+VersionTable, st.Version, latest),
		})
	}
	return lines
}

// dirtyReason says what a foreign dirty flag means and how to resolve it.
func (p *Phase) dirtyReason(v int) string {
	return fmt.Sprintf("%s records version %d as dirty: migration %d started and did not finish "+
		"(golang-migrate, Outpost or a crashed run), and nothing tells which of its statements ran. "+
		"Repair the schema by hand (complete or undo what migration %d changes), then record the version: "+
		"`outpost migrate force %d --yes` if it is complete, `outpost migrate force %d --yes` if you undid it",
		p.prefix+VersionTable, v, v, v, v, v-1)
}

func (p *Phase) dirtyError(v int) error {
	return report.E(report.CodeDirty, "%s", p.dirtyReason(v)).With("version", v)
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
		case StatePending:
		case StatePartial:
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

// Cleanup implements batch.Phase: ClickHouse migrations preserve nothing.
func (p *Phase) Cleanup(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	return p.Status(ctx)
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
	if st.Version > p.src.Latest() {
		return lines, report.E(report.CodeDataRefused, "cannot verify: %s", lines[len(lines)-1].Reason).With("version", st.Version)
	}
	if st.Dirty {
		if _, ok := st.resumableAt(p); ok {
			return lines, report.E(report.CodeDirty, "cannot verify: ClickHouse migration %d is half-applied; run apply to finish it", st.Version).With("version", st.Version)
		}
		return lines, p.dirtyError(st.Version)
	}
	if p.src.Expected == nil {
		return lines, nil
	}
	v := max(st.Version, 0)
	want, ok := p.src.Expected(v)
	if !ok || want == nil {
		return lines, report.E(report.CodeInternal, "no expected ClickHouse schema for version %d", v)
	}
	live, err := Inspect(ctx, p.conn, p.cfg.Database, p.prefix, want)
	if err != nil {
		p.dropConn()
		return lines, classify(ctx, err, report.CodeUnknown, "read the live schema of %s", p.where())
	}
	issues := Diff(want, live, p.prefix)
	for i := range lines {
		if lines[i].State == StateApplied {
			lines[i].State = StateVerified
		}
	}
	if len(issues) == 0 {
		return lines, nil
	}
	at := max(v-1, 0)
	l := &lines[at]
	l.State = StateDrift
	l.Reason = fmt.Sprintf("the live ClickHouse schema differs from the schema of version %d in %d places", v, len(issues))
	for _, is := range issues {
		l.AddIssue(is)
	}
	return lines, report.E(report.CodeDrift, "%s", l.Reason).With("version", v).With("issues", len(issues))
}
