package versioned

import (
	"context"
	"fmt"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/report"
)

// Recorded is what a store's version table says.
type Recorded struct {
	// Table names the version table in messages: "schema_migrations".
	Table string
	// Version is the recorded version, NoVersion when none.
	Version int
	Dirty   bool
}

// Line is the report line of m, its state not yet set.
func (s Store) Line(m *Migration) report.Migration {
	return report.Migration{ID: s.ID(m), Backend: s.Backend, Name: m.Name, Version: m.Version, Description: m.Description,
		Checksum: report.Checksum(m.Up)}
}

// UnknownLines are the lines of a store that cannot be read: every state
// "unknown", with err as the reason.
func (s Set[M, P]) UnknownLines(err error) []report.Migration {
	lines := make([]report.Migration, 0, len(s.Migrations))
	for i := range s.Migrations {
		l := s.Store.Line(s.base(i))
		l.State = report.StateUnknown
		l.Reason = "state unknown: " + err.Error()
		lines = append(lines, l)
	}
	return lines
}

// Ledger is what a phase's own records (its checkpoints) add to the
// version table, for Lines.
type Ledger[P any] struct {
	// AppliedAt is when this tool finished applying m, RFC 3339, or "".
	AppliedAt func(m P) string
	// Resume fills the line of m, the dirty recorded version, when the
	// dirty flag is this tool's and apply resumes it (its progress and
	// reason), and says whether it did.
	Resume func(m P, l *report.Migration) bool
}

// Lines derives every migration's line from rec: pending above the
// recorded version, applied up to it (the recorded one only when clean);
// the dirty recorded version is "partial" when the ledger resumes it and
// "dirty" (dirtyReason) when not. A recorded version newer than the set
// adds an "unknown" line (newerReason). Neither is an error here: apply
// refuses them.
func (s Set[M, P]) Lines(rec Recorded, ledger Ledger[P]) []report.Migration {
	lines := make([]report.Migration, 0, len(s.Migrations)+1)
	for i := range s.Migrations {
		m := P(&s.Migrations[i])
		b := m.Base()
		l := s.Store.Line(b)
		switch {
		case rec.Version == NoVersion || b.Version > rec.Version:
			l.State = report.StatePending
		case b.Version < rec.Version || !rec.Dirty:
			l.State = report.StateApplied
			l.AppliedAt = ledger.AppliedAt(m)
		case ledger.Resume(m, &l):
			l.State = report.StatePartial
			l.Resumable = true
		default:
			l.State = report.StateDirty
			l.Reason = dirtyReason(rec)
		}
		lines = append(lines, l)
	}
	if rec.Version > s.Latest() {
		lines = append(lines, report.Migration{
			ID: fmt.Sprintf("%s/%06d_unknown", s.Store.Backend, rec.Version), Backend: s.Store.Backend, Name: "unknown",
			Version: rec.Version, State: report.StateUnknown, Reason: s.newerReason(rec),
		})
	}
	return lines
}

// newerReason says that rec's version is newer than the set knows.
func (s Set[M, P]) newerReason(rec Recorded) string {
	return fmt.Sprintf("%s records version %d, newer than the newest migration this tool knows (%d): use the tool of the Outpost release that wrote it",
		rec.Table, rec.Version, s.Latest())
}

// dirtyReason says what a foreign dirty flag means and how to resolve it.
func dirtyReason(rec Recorded) string {
	v := rec.Version
	return fmt.Sprintf("%s records version %d as dirty: migration %d started and did not finish "+
		"(golang-migrate, Outpost or a crashed run), and nothing tells how far it got. "+
		"Repair the schema by hand (complete or undo what migration %d changed), then record the version: "+
		"`outpost migrate force %d --yes` if it is complete, `outpost migrate force %d --yes` if you undid it",
		rec.Table, v, v, v, v, v-1)
}

// dirtyError is dirtyReason as a report.CodeDirty error.
func dirtyError(rec Recorded) error {
	return report.E(report.CodeDirty, "%s", dirtyReason(rec)).With("version", rec.Version)
}

// Verify checks that the schema at rec can be verified: not when the
// version is newer than the set (report.CodeDataRefused) nor dirty
// (report.CodeDirty; resumable: the dirty version is this tool's
// half-applied migration). Then, unless diff is nil (no expected schema),
// it compares: diff returns the differences between the live schema and
// the schema of version v. The applied lines become "verified"; the
// differences go on v's line (the work of every migration up to v; the
// first line when no version is recorded yet), state "drift", returned as
// a report.CodeDrift error.
func (s Set[M, P]) Verify(lines []report.Migration, rec Recorded, resumable bool, diff func(v int) ([]report.Issue, error)) error {
	switch {
	case rec.Version > s.Latest():
		return report.E(report.CodeDataRefused, "cannot verify: %s", s.newerReason(rec)).With("version", rec.Version)
	case rec.Dirty && resumable:
		return report.E(report.CodeDirty, "cannot verify: %s migration %d is half-applied; run apply to finish it", s.Store.Label, rec.Version).With("version", rec.Version)
	case rec.Dirty:
		return dirtyError(rec)
	case diff == nil:
		return nil
	}
	v := max(rec.Version, 0)
	issues, err := diff(v)
	if err != nil {
		return err
	}
	return s.Store.drift(lines, v, issues)
}

// Against is verify's diff for a source that expects a schema T at each
// version: expected returns it (nil expected: nothing to compare, and the
// result is nil); live reads the live schema and lists how it differs from
// want. A version expected does not describe is report.CodeInternal.
func Against[T any](expected func(version int) (*T, bool), live func(want *T) ([]report.Issue, error)) func(v int) ([]report.Issue, error) {
	if expected == nil {
		return nil
	}
	return func(v int) ([]report.Issue, error) {
		want, ok := expected(v)
		if !ok || want == nil {
			return nil, report.E(report.CodeInternal, "no expected schema for version %d", v)
		}
		return live(want)
	}
}

// drift records verify's result on lines (see Verify).
func (s Store) drift(lines []report.Migration, v int, issues []report.Issue) error {
	for i := range lines {
		if lines[i].State == report.StateApplied {
			lines[i].State = report.StateVerified
		}
	}
	if len(issues) == 0 {
		return nil
	}
	at := max(v-1, 0)
	if at >= len(lines) {
		return report.E(report.CodeDrift, "the live %s schema differs from the schema of version %d in %d places", s.Label, v, len(issues))
	}
	l := &lines[at]
	l.State = report.StateDrift
	l.Reason = fmt.Sprintf("the live %s schema differs from the schema of version %d in %d places", s.Label, v, len(issues))
	for _, is := range issues {
		l.AddIssue(is)
	}
	return report.E(report.CodeDrift, "%s", l.Reason).With("version", v).With("issues", len(issues))
}

// Reader is what a phase over a versioned store answers alike from one read
// of its store: batch.Phase's Status and Cleanup, and Version. Read returns
// the lines and the recorded state; when the store cannot be read, every
// line is "unknown" (UnknownLines), the version NoVersion, and the error is
// returned.
type Reader struct {
	Read func(ctx context.Context) ([]report.Migration, Recorded, error)
}

// Status implements batch.Phase: one line per migration (see Set.Lines).
// A dirty version or one newer than the set is no error here: apply
// refuses them.
func (r Reader) Status(ctx context.Context) ([]report.Migration, error) {
	lines, _, err := r.Read(ctx)
	return lines, err
}

// Cleanup implements batch.Phase: a versioned store's migrations preserve
// nothing to clean up; it returns the status lines and changes nothing.
func (r Reader) Cleanup(ctx context.Context, _ *batch.Run) ([]report.Migration, error) {
	return r.Status(ctx)
}

// Version returns the recorded version (NoVersion when none) and whether it
// is dirty.
func (r Reader) Version(ctx context.Context) (version int, dirty bool, err error) {
	_, rec, err := r.Read(ctx)
	return rec.Version, rec.Dirty, err
}
