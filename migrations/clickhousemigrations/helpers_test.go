package clickhousemigrations

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) {
	defer servertest.StopSharedClickHouse()
	m.Run()
}

// newPhase is the phase for db with deployment id dep, over HTTP (the
// protocol the test endpoint speaks).
func newPhase(t *testing.T, srv *servertest.ClickHouseServer, database, dep string) *clickhousephase.Phase {
	t.Helper()
	cfg := clickhousephase.Config{Addr: srv.Addr(), HTTP: true, Username: srv.User, Password: srv.Password,
		Database: database, DeploymentID: dep, ShowSQL: true}
	if srv.TLS != nil {
		cfg.TLS = srv.Options("").TLS
	}
	p, err := clickhousephase.New(cfg, Source())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func run(target string) *batch.Run {
	return &batch.Run{ID: "test-run", Command: "apply", Target: target, Events: progress.Nop}
}

func mustApply(t *testing.T, p *clickhousephase.Phase, target string) []report.Migration {
	t.Helper()
	lines, err := p.Apply(context.Background(), run(target))
	if err != nil {
		t.Fatalf("apply: %v\nlines: %+v", err, lines)
	}
	return lines
}

// wantCode fails unless err carries code (and so exit, per report/codes.go).
func wantCode(t *testing.T, err error, code report.Code, exit int) {
	t.Helper()
	if report.CodeOf(err) != code || report.ExitCode(report.CodeOf(err)) != exit {
		t.Fatalf("error %v: code %s (exit %d), want %s (exit %d)", err, report.CodeOf(err), report.ExitCode(report.CodeOf(err)), code, exit)
	}
}

func states(lines []report.Migration) string {
	var s []string
	for _, l := range lines {
		s = append(s, string(l.State))
	}
	return strings.Join(s, ",")
}

// outpostStatements reads an up file of Outpost's as golang-migrate runs it
// with x-multi-statement=true: {deployment_prefix} replaced, split at ";",
// blank parts skipped. Written here, apart from clickhousephase's own
// splitting, so that the tests do not trust the code under test.
func outpostStatements(t *testing.T, version int, prefix string) []string {
	t.Helper()
	matches, err := fs.Glob(Files(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range matches {
		if !strings.HasPrefix(name, "00000"+string(rune('0'+version))+"_") {
			continue
		}
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range strings.Split(strings.ReplaceAll(string(b), "{deployment_prefix}", prefix), ";") {
			if strings.TrimSpace(q) != "" {
				out = append(out, q)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no statements for version %d", version)
	}
	return out
}

// execAll runs statements on conn, failing the test on an error.
func execAll(t *testing.T, conn driver.Conn, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%q: %v", q, err)
		}
	}
}

// golangMigrateSetVersion does what golang-migrate's ClickHouse driver
// does, with Outpost's MergeTree engine: create the table if missing, then
// append (version, dirty, now in ns).
func golangMigrateSetVersion(t *testing.T, conn driver.Conn, table string, version int, dirty bool) {
	t.Helper()
	execAll(t, conn, "CREATE TABLE IF NOT EXISTS "+table+" (version Int64, dirty UInt8, sequence UInt64) Engine=MergeTree ORDER BY sequence")
	var d uint8
	if dirty {
		d = 1
	}
	if err := conn.Exec(context.Background(), "INSERT INTO "+table+" (version, dirty, sequence) VALUES (?, ?, ?)", int64(version), d, uint64(time.Now().UnixNano())); err != nil {
		t.Fatal(err)
	}
}

// tables lists the tables of database.
func tables(t *testing.T, conn driver.Conn, database string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.tables WHERE database = ? ORDER BY name", database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}
