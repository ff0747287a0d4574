package versioned

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/outpost-migrate/outpost/report"
)

// mig is a phase's migration type as the phases declare theirs.
type mig struct {
	Migration
	extra string
}

type set = Set[mig, *mig]

var testStore = Store{Backend: "sql", Label: "SQL"}

func threeMigrations(t *testing.T) set {
	t.Helper()
	read, err := testStore.Read(fstest.MapFS{
		"000001_init.up.sql":   {Data: []byte("-- 000001_init: creates t.\n-- Second line.\n\n-- not this\nCREATE TABLE t (id int);\n")},
		"000001_init.down.sql": {Data: []byte("DROP TABLE t;")},
		"000002_more.up.sql":   {Data: []byte("-- adds b\n-- +outpost step x\nALTER TABLE t ADD b int;")},
		"000003_last.up.sql":   {Data: []byte("SELECT 1;")},
		"notes.txt":            {Data: []byte("ignored")},
	}, ".")
	if err != nil {
		t.Fatal(err)
	}
	s := set{Store: testStore}
	for _, r := range read {
		s.Migrations = append(s.Migrations, mig{Migration: r, extra: r.Name})
	}
	return s
}

func TestReadOrdersDescribesAndLooksUp(t *testing.T) {
	s := threeMigrations(t)
	if s.Latest() != 3 || s.At(2).extra != "more" || s.At(0) != nil || s.At(4) != nil {
		t.Fatalf("set: %+v", s.Migrations)
	}
	m1 := s.At(1)
	if m1.Key() != "000001_init" || testStore.ID(&m1.Migration) != "sql/000001_init" || m1.Down == "" ||
		m1.Description != "creates t. Second line." || s.At(2).Description != "adds b" {
		t.Fatalf("migration 1: %+v; 2: %q", m1.Migration, s.At(2).Description)
	}
	for target, v := range map[string]int{"sql/000002_more": 2, "000002_more": 2, "more": 2, "2": 2, "000003": 3, "sql/1": 1} {
		if got, ok := s.Lookup(target); !ok || got != v {
			t.Errorf("Lookup(%q) = %d %v, want %d", target, got, ok, v)
		}
	}
	for _, target := range []string{"", "0", "4", "clickhouse/000001_init", "redis/001_hash_tags", "sql/000004_x"} {
		if _, ok := s.Lookup(target); ok {
			t.Errorf("Lookup(%q) found a migration", target)
		}
	}
}

func TestReadRefusesInvalidSets(t *testing.T) {
	f := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for want, fsys := range map[string]fstest.MapFS{
		"not named":          {"1-a.up.sql": f("SELECT 1")},
		"positive integer":   {"000000_a.up.sql": f("SELECT 1")},
		"without gaps":       {"000001_a.up.sql": f("SELECT 1"), "000003_c.up.sql": f("SELECT 1")},
		"two names":          {"000001_a.up.sql": f("SELECT 1"), "000001_b.down.sql": f("")},
		"two up files":       {"000001_a.up.sql": f("SELECT 1"), "01_a.up.sql": f("SELECT 2")},
		"is empty":           {"000001_a.up.sql": f(" \n")},
		"has no up file":     {"000001_a.down.sql": f("SELECT 1")},
		"read SQL migration": {},
	} {
		dir := "."
		if len(fsys) == 0 {
			dir = "missing"
		}
		_, err := testStore.Read(fsys, dir)
		if report.CodeOf(err) != report.CodeDataRefused || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "SQL migration") {
			t.Errorf("%s: %v", want, err)
		}
	}
}

func states(lines []report.Migration) string {
	var b []string
	for _, l := range lines {
		b = append(b, fmt.Sprintf("%d:%s", l.Version, l.State))
	}
	return strings.Join(b, " ")
}

func TestLinesFromTheRecordedVersion(t *testing.T) {
	s := threeMigrations(t)
	ours := false
	ledger := Ledger[*mig]{
		AppliedAt: func(m *mig) string { return "at " + m.extra },
		Resume: func(m *mig, l *report.Migration) bool {
			l.Reason = "resumes " + m.extra
			return ours
		},
	}
	rec := Recorded{Table: "schema_migrations", Version: NoVersion}
	if got := states(s.Lines(rec, ledger)); got != "1:pending 2:pending 3:pending" {
		t.Errorf("no version: %s", got)
	}
	rec.Version = 2
	lines := s.Lines(rec, ledger)
	if got := states(lines); got != "1:applied 2:applied 3:pending" || lines[1].AppliedAt != "at more" || lines[0].ID != "sql/000001_init" || lines[0].Checksum == "" {
		t.Errorf("clean 2: %s %+v", got, lines[1])
	}
	rec.Dirty = true
	lines = s.Lines(rec, ledger)
	if got := states(lines); got != "1:applied 2:dirty 3:pending" || !strings.Contains(lines[1].Reason, "schema_migrations records version 2 as dirty") ||
		!strings.Contains(lines[1].Reason, "`outpost migrate force 1 --yes` if you undid it") {
		t.Errorf("foreign dirty 2: %s %q", got, lines[1].Reason)
	}
	ours = true
	lines = s.Lines(rec, ledger)
	if got := states(lines); got != "1:applied 2:partial 3:pending" || !lines[1].Resumable || lines[1].Reason != "resumes more" {
		t.Errorf("our dirty 2: %s %+v", got, lines[1])
	}
	rec = Recorded{Table: "schema_migrations", Version: 5}
	lines = s.Lines(rec, ledger)
	if got := states(lines); got != "1:applied 2:applied 3:applied 5:unknown" || lines[3].ID != "sql/000005_unknown" ||
		!strings.Contains(lines[3].Reason, "schema_migrations records version 5, newer than the newest migration this tool knows (3)") {
		t.Errorf("newer 5: %s %+v", got, lines[3])
	}
	lines = s.UnknownLines(errors.New("refused"))
	if got := states(lines); got != "1:unknown 2:unknown 3:unknown" || lines[2].Reason != "state unknown: refused" {
		t.Errorf("unknown: %s %q", got, lines[2].Reason)
	}
}

func TestSpan(t *testing.T) {
	s := threeMigrations(t)
	yes := func() bool { return true }
	no := func() bool { return false }
	for _, c := range []struct {
		rec         Recorded
		target      string
		resumes     func() bool
		first, last int
		code        report.Code
	}{
		{rec: Recorded{Version: NoVersion}, first: 1, last: 3},
		{rec: Recorded{Version: 1}, target: "000002_more", first: 2, last: 2},
		{rec: Recorded{Version: 1}, target: "redis/002_timestamps", first: 2, last: 3},
		{rec: Recorded{Version: 3}, first: 4, last: 3},
		{rec: Recorded{Version: 2, Dirty: true}, resumes: yes, first: 2, last: 3},
		{rec: Recorded{Version: 2, Dirty: true}, resumes: no, code: report.CodeDirty},
		{rec: Recorded{Version: 4}, code: report.CodeDataRefused},
	} {
		first, last, err := s.Span(c.rec, c.target, c.resumes)
		if c.code != "" {
			if report.CodeOf(err) != c.code || report.DetailsOf(err)["version"] != c.rec.Version {
				t.Errorf("%+v: %v, want %s", c.rec, err, c.code)
			}
			continue
		}
		if err != nil || first != c.first || last != c.last {
			t.Errorf("%+v %q: %d..%d %v, want %d..%d", c.rec, c.target, first, last, err, c.first, c.last)
		}
	}
	if v, err := s.ForceVersion(0); err != nil || v != NoVersion {
		t.Errorf("force 0: %d %v", v, err)
	}
	if _, err := s.ForceVersion(4); report.CodeOf(err) != report.CodeUsage {
		t.Errorf("force 4: %v", err)
	}
}

func TestVerifyPutsDriftOnTheRecordedVersion(t *testing.T) {
	s := threeMigrations(t)
	rec := Recorded{Table: "schema_migrations", Version: 2}
	ledger := Ledger[*mig]{AppliedAt: func(*mig) string { return "" }, Resume: func(*mig, *report.Migration) bool { return false }}
	lines := s.Lines(rec, ledger)
	err := s.Verify(lines, rec, false, func(v int) ([]report.Issue, error) {
		if v != 2 {
			t.Errorf("diff asked for version %d", v)
		}
		return []report.Issue{{Object: "table t", Reason: "table missing"}}, nil
	})
	if report.CodeOf(err) != report.CodeDrift || states(lines) != "1:verified 2:drift 3:pending" || len(lines[1].Issues) != 1 {
		t.Errorf("drift: %v %s", err, states(lines))
	}
	lines = s.Lines(rec, ledger)
	if err := s.Verify(lines, rec, false, nil); err != nil || states(lines) != "1:applied 2:applied 3:pending" {
		t.Errorf("no expected schema: %v %s", err, states(lines))
	}
	rec.Dirty = true
	if err := s.Verify(lines, rec, true, nil); report.CodeOf(err) != report.CodeDirty || !strings.Contains(err.Error(), "half-applied") {
		t.Errorf("our dirty: %v", err)
	}
	if err := s.Verify(lines, Recorded{Version: 9}, false, nil); report.CodeOf(err) != report.CodeDataRefused {
		t.Errorf("newer: %v", err)
	}
}

func TestAgainstTheExpectedSchema(t *testing.T) {
	type schema struct{ tables int }
	if Against[schema](nil, nil) != nil {
		t.Fatal("a source without expected schemas compares")
	}
	expected := func(v int) (*schema, bool) { return &schema{tables: v}, v <= 3 }
	diff := Against(expected, func(want *schema) ([]report.Issue, error) {
		return []report.Issue{{Object: fmt.Sprintf("%d tables", want.tables)}}, nil
	})
	if is, err := diff(2); err != nil || len(is) != 1 || is[0].Object != "2 tables" {
		t.Errorf("version 2: %+v %v", is, err)
	}
	if _, err := diff(4); report.CodeOf(err) != report.CodeInternal {
		t.Errorf("version 4: %v", err)
	}
}

// serverError stands for a driver's server error.
type serverError struct{ code string }

func (e *serverError) Error() string { return "server says " + e.code }

func TestClassifyOrder(t *testing.T) {
	c := Classifier{
		Server: func(err error, fallback report.Code) (report.Code, bool) {
			var se *serverError
			if !errors.As(err, &se) {
				return "", false
			}
			if se.code == "denied" {
				return report.CodePermission, true
			}
			return fallback, true
		},
		Unreachable: func(err error) bool { return strings.Contains(err.Error(), "driver lost it") },
		TLSHint:     "check tls",
		Setting:     "store.tls",
	}
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, tc := range map[string]struct {
		ctx  context.Context
		err  error
		want report.Code
	}{
		"cancelled context":  {cancelled, &serverError{"denied"}, report.CodeUnknown},
		"classified already": {ctx, report.E(report.CodeLockLost, "lease gone"), report.CodeLockLost},
		"server class":       {ctx, fmt.Errorf("q: %w", &serverError{"denied"}), report.CodePermission},
		"server, no class":   {ctx, &serverError{"syntax"}, report.CodeMigrationFailed},
		"tls":                {ctx, errors.New("tls: first record does not look like a TLS handshake"), report.CodeConfig},
		"network":            {ctx, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), report.CodeUnreachable},
		"driver network":     {ctx, errors.New("driver lost it"), report.CodeUnreachable},
		"other":              {ctx, errors.New("odd"), report.CodeMigrationFailed},
	} {
		err := c.Classify(tc.ctx, tc.err, report.CodeMigrationFailed, "step %d", 3)
		if report.CodeOf(err) != tc.want || !strings.HasPrefix(err.Error(), "step 3") {
			t.Errorf("%s: %v (%s), want %s", name, err, report.CodeOf(err), tc.want)
		}
	}
	if err := c.Classify(cancelled, errors.New("x"), report.CodeUnknown, "q"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancellation is not kept: %v", err)
	}
	tlsErr := c.Classify(ctx, errors.New("x509: certificate signed by unknown authority"), report.CodeUnknown, "connect")
	if report.DetailsOf(tlsErr)["setting"] != "store.tls" || !strings.Contains(tlsErr.Error(), "check tls") {
		t.Errorf("tls mismatch: %v %v", tlsErr, report.DetailsOf(tlsErr))
	}
	if c.Classify(ctx, nil, report.CodeUnknown, "q") != nil {
		t.Error("nil error classified")
	}
}
