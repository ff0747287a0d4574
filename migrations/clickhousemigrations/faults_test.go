package clickhousemigrations

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// A statement that fails in the middle of a migration leaves the version
// dirty with this tool's checkpoint (status "partial", exit 4 for the
// failed run); once the cause is removed, apply resumes at that statement
// and does not run the statements before it again (re-adding the column
// would fail).
func TestFailedStatementResumes(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	mustApply(t, p, "2")
	conn := db.Conn(t, db.Name)
	// Migration 3's second statement adds idx_destination_type: an index of
	// that name already exists, so it fails after the first statement.
	execAll(t, conn, "ALTER TABLE attempts ADD INDEX idx_destination_type topic TYPE bloom_filter GRANULARITY 1")
	ctx := context.Background()
	lines, err := p.Apply(ctx, run(""))
	wantCode(t, err, report.CodeMigrationFailed, 4)
	var e *report.Error
	if !errors.As(err, &e) || e.Details["version"] != 3 || e.Details["statement"] != 2 {
		t.Fatalf("error details: %+v", err)
	}
	if l := lines[2]; l.State != "failed" || !l.Resumable || !strings.Contains(l.Reason, "statement 2 of 2") {
		t.Fatalf("line 3: %s resumable=%v %q", l.State, l.Resumable, l.Reason)
	}
	st, _ := p.Status(ctx)
	if states(st) != "applied,applied,partial" || st[2].Progress == nil || st[2].Progress.Done != 1 {
		t.Fatalf("status: %s %+v", states(st), st[2].Progress)
	}
	_, err = p.Verify(ctx, run(""))
	wantCode(t, err, report.CodeDirty, 4)
	execAll(t, conn, "ALTER TABLE attempts DROP INDEX idx_destination_type")
	lines = mustApply(t, p, "")
	if lines[2].State != "applied" || lines[2].Counts.Changed != 1 {
		t.Fatalf("resumed: %s %+v", lines[2].State, lines[2].Counts)
	}
	if _, err := p.Verify(ctx, run("")); err != nil {
		t.Fatal(err)
	}
}

// A stop requested during apply (a signal, --max-runtime) takes effect
// between statements: the run reports "interrupted", the version stays
// dirty with the checkpoint, and the next apply finishes the job without
// running the done statements again.
func TestStopBetweenStatementsResumes(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	mustApply(t, p, "1")
	stop := make(chan struct{})
	// The run checks the fence before migration 2 and before each of its
	// statements after the first: the third check closes stop, so statements
	// 1 to 3 of 4 run and the run stops before the fourth.
	fence := &countingFence{stopAt: 3, stop: stop}
	r := &batch.Run{ID: "stopped", Command: "apply", Events: progress.Nop, Fence: fence, Stop: stop,
		StopCause: func() error { return report.E(report.CodeTerminated, "terminated") }}
	ctx := context.Background()
	lines, err := p.Apply(ctx, r)
	wantCode(t, err, report.CodeTerminated, 143)
	if lines[1].State != "interrupted" || !lines[1].Resumable || lines[1].Progress.Done != 3 {
		t.Fatalf("line 2: %s resumable=%v %+v", lines[1].State, lines[1].Resumable, lines[1].Progress)
	}
	st, _ := p.Status(ctx)
	if states(st) != "applied,partial,pending" {
		t.Fatalf("status after stop: %s", states(st))
	}
	lines = mustApply(t, p, "")
	if lines[1].Counts.Changed != 1 || lines[2].Counts.Changed != 2 {
		t.Fatalf("resumed run ran %+v and %+v statements", lines[1].Counts, lines[2].Counts)
	}
	if _, err := p.Verify(ctx, run("")); err != nil {
		t.Fatal(err)
	}
}

// countingFence is a lease that is never lost; its stopAt-th Check closes
// stop, as a signal arriving at that moment would.
type countingFence struct {
	calls, stopAt int
	stop          chan struct{}
}

func (f *countingFence) Check(context.Context) error {
	f.calls++
	if f.calls == f.stopAt {
		close(f.stop)
	}
	return nil
}
func (f *countingFence) Token() int64                                          { return 1 }
func (f *countingFence) HSet(context.Context, string, map[string]string) error { return nil }
func (f *countingFence) Del(context.Context, ...string) error                  { return nil }

// Another writer of the version table between two of this run's writes
// (a second tool, an Outpost starting up) makes apply stop with 75 rather
// than interleave.
func TestConcurrentWriterDetected(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	ctx := context.Background()
	if _, err := p.Status(ctx); err != nil {
		t.Fatal(err)
	}
	conn := db.Conn(t, db.Name)
	golangMigrateSetVersion(t, conn, "schema_migrations", 0, false)
	err := applyAfterForeignWrite(t, p, conn)
	wantCode(t, err, report.CodeLockHeld, 75)
}

// applyAfterForeignWrite lets p read the state, writes a version row as
// someone else, then lets p try to record its own.
func applyAfterForeignWrite(t *testing.T, p *clickhousephase.Phase, conn interface {
	Exec(context.Context, string, ...any) error
}) error {
	t.Helper()
	events := &foreignWrite{write: func() {
		if err := conn.Exec(context.Background(), "INSERT INTO schema_migrations (version, dirty, sequence) VALUES (7, 1, 9000000000000000000)"); err != nil {
			t.Error(err)
		}
	}}
	_, err := p.Apply(context.Background(), &batch.Run{ID: "r", Command: "apply", Events: events})
	return err
}

// foreignWrite runs write once, when the first migration starts (after the
// phase read the state, before it records anything).
type foreignWrite struct {
	write func()
	done  bool
}

func (f *foreignWrite) Emit(e progress.Event) {
	if !f.done && e.Event == progress.MigrationStarted {
		f.done = true
		f.write()
	}
}

// Connection failures are classified: wrong password 77, unknown database
// 78, TLS mismatches 78, a closed port 69.
func TestConnectionErrorsClassified(t *testing.T) {
	srv := servertest.ClickHouse(t, servertest.WithClickHouseTLS(), servertest.WithClickHouseUser("migrator", "S3cr3t-Pa55"))
	ctx := context.Background()
	good := clickhousephase.Config{Addr: srv.Addr(), HTTP: true, Username: "migrator", Password: "S3cr3t-Pa55", Database: "default", TLS: srv.Options("").TLS}
	check := func(name string, cfg clickhousephase.Config, code report.Code, exit int) {
		t.Helper()
		p, err := clickhousephase.New(cfg, Source())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		_, err = p.Status(ctx)
		if report.CodeOf(err) != code || report.ExitCode(code) != exit {
			t.Errorf("%s: %v: code %s, want %s (%d)", name, err, report.CodeOf(err), code, exit)
		}
		if err != nil && strings.Contains(err.Error(), "S3cr3t-Pa55") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	p, _ := clickhousephase.New(good, Source())
	if lines := mustApply(t, p, ""); states(lines) != "applied,applied,applied" {
		t.Fatalf("apply over TLS: %s", states(lines))
	}
	_ = p.Close()
	wrong := good
	wrong.Password = "nope"
	check("wrong password", wrong, report.CodePermission, 77)
	nodb := good
	nodb.Database = "missing_db"
	check("unknown database", nodb, report.CodeConfig, 78)
	plain := good
	plain.TLS = nil
	check("plaintext to TLS", plain, report.CodeConfig, 78)
	otherCA := good
	otherCA.TLS = servertest.ClickHouse(t, servertest.WithClickHouseTLS()).Options("").TLS
	check("another CA", otherCA, report.CodeConfig, 78)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	gone := good
	gone.Addr = closed
	check("closed port", gone, report.CodeUnreachable, 69)
	tlsToPlain := clickhousephase.Config{Addr: servertest.ClickHouseDB(t).Addr(), HTTP: true, Database: "default", TLS: good.TLS}
	check("TLS to plaintext", tlsToPlain, report.CodeConfig, 78)
}

// Version rows no migration of this tool wrote: a version newer than it
// knows is refused with 65 (status adds an "unknown" line), a dirty version
// 0 with 4; neither is touched.
func TestUnexpectedVersionRows(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	conn := db.Conn(t, db.Name)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	ctx := context.Background()
	golangMigrateSetVersion(t, conn, "schema_migrations", 9, false)
	st, err := p.Status(ctx)
	if err != nil || states(st) != "applied,applied,applied,unknown" {
		t.Fatalf("status at 9: %v %s", err, states(st))
	}
	_, err = p.Apply(ctx, run(""))
	wantCode(t, err, report.CodeDataRefused, 65)
	_, err = p.Verify(ctx, run(""))
	wantCode(t, err, report.CodeDataRefused, 65)
	golangMigrateSetVersion(t, conn, "schema_migrations", 0, true)
	_, err = p.Apply(ctx, run(""))
	wantCode(t, err, report.CodeDirty, 4)
	if got := tables(t, conn, db.Name); len(got) != 1 {
		t.Fatalf("apply created tables: %v", got)
	}
}
