package sqlmigrations

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) {
	// The kill -9 test runs this binary again as the process it kills.
	if url := os.Getenv(crashChildEnv); url != "" {
		os.Exit(crashChild(url))
	}
	servertest.Main(m)
}

// The versions and names of the storage spec.
var specNames = []string{
	"init", "delivery_response", "event_delivery_index", "delivery_manual_attempt", "denormalize_attempts",
	"data_jsonb_to_text", "matched_destination_ids", "attempt_destination_type", "response_data_jsonb_to_text",
	"rename_attempts_pkey",
}

func TestSourceMatchesTheSpec(t *testing.T) {
	src := Source()
	if len(src.Migrations) != len(specNames) || src.Latest() != 10 {
		t.Fatalf("%d migrations, latest %d", len(src.Migrations), src.Latest())
	}
	for i, m := range src.Migrations {
		if m.Version != i+1 || m.Name != specNames[i] {
			t.Errorf("migration %d = %d %s, want %s", i+1, m.Version, m.Name, specNames[i])
		}
		if strings.TrimSpace(m.Down) == "" || m.Description == "" {
			t.Errorf("%s: down file or description missing", m.Key())
		}
		if m.Version != 5 && m.Stepped() {
			t.Errorf("%s is stepped; only 5 should be", m.Key())
		}
	}
	m5 := src.Migrations[4]
	if m5.ID() != "sql/000005_denormalize_attempts" || len(m5.Steps) != 3 {
		t.Fatalf("migration 5 = %+v", m5)
	}
	for i, name := range []string{"add_columns", "backfill", "finish"} {
		if m5.Steps[i].Name != name || (m5.Steps[i].Batched != nil) != (name == "backfill") {
			t.Errorf("migration 5 step %d = %q (batched %v)", i, m5.Steps[i].Name, m5.Steps[i].Batched != nil)
		}
	}
	for v := 0; v <= 10; v++ {
		if s, ok := Expected(v); !ok || s == nil {
			t.Errorf("Expected(%d) missing", v)
		}
	}
	if _, ok := Expected(11); ok {
		t.Error("Expected(11) should not exist")
	}
	if s, _ := Expected(10); len(s.Tables) != 4 || s.Table("attempts") == nil || s.Table("events_default") == nil {
		t.Errorf("Expected(10) tables = %+v", s.Tables)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPhase(t *testing.T, url string, opts sqlphase.Options) *sqlphase.Phase {
	t.Helper()
	p, err := sqlphase.New(context.Background(), url, Source(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func exec(t *testing.T, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%.80s: %v", q, err)
		}
	}
}

func wantCode(t *testing.T, err error, code report.Code) {
	t.Helper()
	if got := report.CodeOf(err); err == nil || got != code {
		t.Fatalf("err = %v (code %q), want %s", err, got, code)
	}
}

// schemaDiff compares the live schema with Expected(version).
func schemaDiff(t *testing.T, conn *pgx.Conn, version int) []report.Issue {
	t.Helper()
	live, err := sqlphase.Inspect(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	want, ok := Expected(version)
	if !ok {
		t.Fatalf("no expected schema for %d", version)
	}
	return sqlphase.Diff(want, live)
}

func requireSchema(t *testing.T, conn *pgx.Conn, version int) {
	t.Helper()
	if d := schemaDiff(t, conn, version); len(d) > 0 {
		var b strings.Builder
		for _, i := range d {
			fmt.Fprintf(&b, "\n  %s %s: %s: expected %q, actual %q", i.Object, i.Field, i.Reason, i.Expected, i.Actual)
		}
		t.Fatalf("schema at version %d differs from the expected one:%s", version, b.String())
	}
}

func recorded(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var v int64
	var dirty bool
	err := conn.QueryRow(context.Background(), `SELECT version, dirty FROM schema_migrations`).Scan(&v, &dirty)
	if err == pgx.ErrNoRows {
		return "none"
	}
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d/%v", v, dirty)
}

func states(lines []report.Migration) string {
	var s []string
	for _, l := range lines {
		s = append(s, strconv.Itoa(l.Version)+":"+string(l.State))
	}
	return strings.Join(s, " ")
}

func allStates(n int, state string) string {
	var s []string
	for v := 1; v <= n; v++ {
		s = append(s, strconv.Itoa(v)+":"+state)
	}
	return strings.Join(s, " ")
}

// TestEveryVersionHasTheExpectedSchema applies 1, then 2, ... then 10 with
// a target version, comparing the live schema object by object with the
// expected schema after each; then runs the down files back to nothing,
// comparing again.
func TestEveryVersionHasTheExpectedSchema(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, sqlphase.Options{})
	requireSchema(t, conn, 0)
	for v := 1; v <= 10; v++ {
		lines, err := p.Apply(ctx, &batch.Run{ID: "r", Target: strconv.Itoa(v)})
		if err != nil {
			t.Fatalf("apply to %d: %v", v, err)
		}
		if lines[v-1].State != report.StateApplied || (v < 10 && lines[v].State != report.StatePending) {
			t.Fatalf("apply to %d: %s", v, states(lines))
		}
		if got := recorded(t, conn); got != fmt.Sprintf("%d/false", v) {
			t.Fatalf("recorded %s after applying %d", got, v)
		}
		requireSchema(t, conn, v)
		if _, err := p.Verify(ctx, &batch.Run{}); err != nil {
			t.Fatalf("verify at %d: %v", v, err)
		}
	}
	// The down files undo each version (for people who roll back by hand).
	src := Source()
	for v := 10; v >= 1; v-- {
		exec(t, conn, src.Migrations[v-1].Down)
		requireSchema(t, conn, v-1)
	}
}

func TestFreshDatabaseToLatest(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, sqlphase.Options{})
	lines, err := p.Plan(ctx)
	if err != nil || states(lines) != allStates(10, "pending") {
		t.Fatalf("plan = %s, %v", states(lines), err)
	}
	if e := lines[4].Estimate; e == nil || e.Value != 0 || e.Units != "rows" {
		t.Errorf("plan estimate of 5 on a fresh database = %+v", e)
	}
	validLines(t, report.KindPlan, "plan", report.OutcomePending, lines, nil)
	lines, err = p.Apply(ctx, &batch.Run{ID: "r"})
	if err != nil || states(lines) != allStates(10, "applied") || recorded(t, conn) != "10/false" {
		t.Fatalf("apply = %s, %v, %s", states(lines), err, recorded(t, conn))
	}
	requireSchema(t, conn, 10)
	lines, err = p.Verify(ctx, &batch.Run{})
	if err != nil || states(lines) != allStates(10, "verified") {
		t.Fatalf("verify = %s, %v", states(lines), err)
	}
}

// applyFiles runs the up files from..to as golang-migrate or psql would:
// each file whole, in one implicit transaction, no checkpoint table.
func applyFiles(t *testing.T, conn *pgx.Conn, from, to int) {
	t.Helper()
	names, err := fs.Glob(Files(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		v, _ := strconv.Atoi(name[:6])
		if v < from || v > to {
			continue
		}
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, conn, string(b))
	}
}

// TestDatabaseMigratedByAnotherTool: files run unsplit (golang-migrate's
// way, here also over data), schema_migrations written by hand.
func TestDatabaseMigratedByAnotherTool(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	applyFiles(t, conn, 1, 4)
	exec(t, conn, seedSQL(20, 40, 3))
	applyFiles(t, conn, 5, 10)
	exec(t, conn,
		`CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)`,
		`INSERT INTO schema_migrations VALUES (10, false)`)
	requireSchema(t, conn, 10)
	checkBackfill(t, conn, 40)

	p := newPhase(t, db.URL, sqlphase.Options{})
	lines, err := p.Status(ctx)
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("status = %s, %v", states(lines), err)
	}
	lines, err = p.Plan(ctx)
	if err != nil || states(lines) != allStates(10, "applied") || lines[4].Estimate != nil {
		t.Fatalf("plan = %s, %v", states(lines), err)
	}
	lines, err = p.Apply(ctx, &batch.Run{ID: "r"})
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("apply = %s, %v", states(lines), err)
	}
	for _, l := range lines {
		if l.DurationMS != 0 {
			t.Errorf("apply ran %s on an up-to-date database", l.ID)
		}
	}
	if _, err := p.Verify(ctx, &batch.Run{}); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// Dirty from the other tool: refused, explained, repaired by force.
	exec(t, conn, `UPDATE schema_migrations SET version = 7, dirty = true`)
	lines, err = p.Status(ctx)
	if err != nil || lines[6].State != report.StateDirty || !strings.Contains(lines[6].Reason, "force 7 --yes") {
		t.Fatalf("status of dirty 7 = %s %q, %v", states(lines), lines[6].Reason, err)
	}
	validLines(t, report.KindStatus, "status", report.OutcomeDirty, lines, nil)
	_, err = p.Apply(ctx, &batch.Run{ID: "r"})
	wantCode(t, err, report.CodeDirty)
	if report.ExitCode(report.CodeOf(err)) != 4 || !strings.Contains(err.Error(), "outpost migrate force 7 --yes") {
		t.Errorf("dirty error = %v", err)
	}
	if err := p.Force(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if recorded(t, conn) != "7/false" {
		t.Fatalf("recorded after force = %s", recorded(t, conn))
	}
	exec(t, conn, `UPDATE schema_migrations SET version = 10`)

	// Drift: a column dropped by hand.
	exec(t, conn, `ALTER TABLE attempts DROP COLUMN destination_type`)
	lines, err = p.Verify(ctx, &batch.Run{})
	wantCode(t, err, report.CodeDrift)
	if report.ExitCode(report.CodeOf(err)) != 3 || lines[9].State != report.StateDrift {
		t.Fatalf("verify after drop = %s, %v", states(lines), err)
	}
	found := map[string]bool{}
	for _, is := range lines[9].Issues {
		found[is.Object+"|"+is.Reason] = true
	}
	for _, want := range []string{
		"column attempts.destination_type|column missing",
		"column attempts_default.destination_type|column missing",
		"index idx_attempts_tenant_desttype_time on attempts|index missing",
		"index attempts_default_tenant_id_destination_type_time_id_idx on attempts_default|index missing",
	} {
		if !found[want] {
			t.Errorf("verify issues lack %q: %+v", want, lines[9].Issues)
		}
	}
	validLines(t, report.KindVerify, "verify", "", lines, err)
	if lines[9].IssuesTotal != 4 {
		t.Errorf("issues total = %d, want 4", lines[9].IssuesTotal)
	}
}
