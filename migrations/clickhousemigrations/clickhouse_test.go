package clickhousemigrations

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// A fresh database migrated to version 3 has, object by object, the schema
// written independently in Expected(3); the version is recorded as
// golang-migrate records it; verify passes; a second apply changes nothing.
func TestFreshDatabaseToVersion3(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	ctx := context.Background()
	plan, err := p.Plan(ctx)
	if err != nil || states(plan) != "pending,pending,pending" {
		t.Fatalf("plan: %v %s", err, states(plan))
	}
	if got := plan[1].Statements; len(got) != 4 || !strings.HasPrefix(got[0].SQL, "ALTER TABLE events ADD COLUMN matched_destination_ids") || got[3].Step != "statement 4 of 4" {
		t.Fatalf("plan statements of 2: %+v", got)
	}
	lines := mustApply(t, p, "")
	if states(lines) != "applied,applied,applied" || lines[2].Counts == nil {
		t.Fatalf("apply: %s", states(lines))
	}
	want, _ := Expected(3)
	live, err := clickhousephase.Inspect(ctx, db.Conn(t, ""), db.Name, "", want)
	if err != nil {
		t.Fatal(err)
	}
	sortIndexes(live)
	sortIndexes(want)
	if !reflect.DeepEqual(live, want) {
		t.Fatalf("live schema at 3:\n%+v\nwant:\n%+v", live, want)
	}
	conn := db.Conn(t, db.Name)
	var v int64
	var dirty uint8
	if err := conn.QueryRow(ctx, "SELECT version, dirty FROM schema_migrations ORDER BY sequence DESC LIMIT 1").Scan(&v, &dirty); err != nil || v != 3 || dirty != 0 {
		t.Fatalf("schema_migrations: %d %d %v", v, dirty, err)
	}
	if vl, err := p.Verify(ctx, run("")); err != nil || states(vl) != "verified,verified,verified" {
		t.Fatalf("verify: %v %s", err, states(vl))
	}
	again := mustApply(t, p, "")
	for _, l := range again {
		if l.Counts != nil {
			t.Fatalf("second apply applied %s", l.ID)
		}
	}
}

// Each version's schema, reached step by step with --target, is the one
// Expected describes.
func TestEachVersionMatchesExpected(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	for v := 1; v <= 3; v++ {
		mustApply(t, p, string(rune('0'+v)))
		want, _ := Expected(v)
		live, err := clickhousephase.Inspect(context.Background(), db.Conn(t, ""), db.Name, "", want)
		if err != nil {
			t.Fatal(err)
		}
		if issues := clickhousephase.Diff(want, live, ""); len(issues) > 0 {
			t.Fatalf("version %d: %+v", v, issues)
		}
	}
}

// A database built by running Outpost's SQL files directly, plus the
// version row golang-migrate writes, is up to date: the tool continues
// where Outpost left it.
func TestOutpostMigratedDatabaseIsUpToDate(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	conn := db.Conn(t, db.Name)
	for v := 1; v <= 3; v++ {
		golangMigrateSetVersion(t, conn, "schema_migrations", v, true)
		execAll(t, conn, outpostStatements(t, v, "")...)
		golangMigrateSetVersion(t, conn, "schema_migrations", v, false)
	}
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	ctx := context.Background()
	st, err := p.Status(ctx)
	if err != nil || states(st) != "applied,applied,applied" {
		t.Fatalf("status: %v %s", err, states(st))
	}
	if vl, err := p.Verify(ctx, run("")); err != nil {
		t.Fatalf("verify of Outpost's own schema: %v %+v", err, vl)
	}
	for _, l := range mustApply(t, p, "") {
		if l.Counts != nil {
			t.Fatalf("apply on an up-to-date database applied %s", l.ID)
		}
	}
}

// A dirty version that is not this tool's (golang-migrate stopped in
// migration 2) is refused with exit 4 by apply and verify; after a manual
// repair, force records the version and apply continues.
func TestForeignDirtyRefusedThenForced(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	conn := db.Conn(t, db.Name)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	mustApply(t, p, "1")
	golangMigrateSetVersion(t, conn, "schema_migrations", 2, true)
	stmts := outpostStatements(t, 2, "")
	execAll(t, conn, stmts[0]) // migration 2 stopped after its first statement
	ctx := context.Background()
	st, _ := p.Status(ctx)
	if states(st) != "applied,dirty,pending" || !strings.Contains(st[1].Reason, "force 2 --yes") {
		t.Fatalf("status: %s %q", states(st), st[1].Reason)
	}
	_, err := p.Apply(ctx, run(""))
	wantCode(t, err, report.CodeDirty, 4)
	_, err = p.Verify(ctx, run(""))
	wantCode(t, err, report.CodeDirty, 4)
	execAll(t, conn, stmts[1:]...) // the repair: finish migration 2 by hand
	if err := p.Force(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if lines := mustApply(t, p, ""); states(lines) != "applied,applied,applied" || lines[2].Counts == nil {
		t.Fatalf("apply after force: %s", states(lines))
	}
	if _, err := p.Verify(ctx, run("")); err != nil {
		t.Fatal(err)
	}
	wantCode(t, p.Force(ctx, 4), report.CodeUsage, 64)
}

// A column dropped behind the tool's back is drift (exit 3), named with its
// table and type; so is a missing skip index.
func TestVerifyFindsDroppedColumn(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "")
	mustApply(t, p, "")
	conn := db.Conn(t, db.Name)
	execAll(t, conn, "ALTER TABLE attempts DROP INDEX idx_destination_type", "ALTER TABLE attempts DROP COLUMN destination_type")
	lines, err := p.Verify(context.Background(), run(""))
	wantCode(t, err, report.CodeDrift, 3)
	l := lines[2]
	if l.State != "drift" || l.IssuesTotal != 2 {
		t.Fatalf("line 3: %s, %d issues: %+v", l.State, l.IssuesTotal, l.Issues)
	}
	found := map[string]bool{}
	for _, is := range l.Issues {
		found[is.Object+"|"+is.Field+"|"+is.Reason+"|"+is.Expected] = true
	}
	if !found["table attempts|column destination_type|column is missing|String"] ||
		!found["table attempts|index idx_destination_type|skip index is missing|destination_type TYPE bloom_filter GRANULARITY 1"] {
		t.Fatalf("issues: %+v", l.Issues)
	}
}

// With DEPLOYMENT_ID every table and the version table carry the prefix,
// and two deployments share a database without touching each other.
func TestDeploymentPrefix(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	prod := newPhase(t, db.ClickHouseServer, db.Name, "prod")
	mustApply(t, prod, "")
	conn := db.Conn(t, db.Name)
	got := strings.Join(tables(t, conn, db.Name), ",")
	if got != "prod_attempts,prod_events,prod_outpost_migrate_checkpoint,prod_schema_migrations" {
		t.Fatalf("tables with DEPLOYMENT_ID=prod: %s", got)
	}
	var v int64
	if err := conn.QueryRow(context.Background(), "SELECT version FROM prod_schema_migrations ORDER BY sequence DESC LIMIT 1").Scan(&v); err != nil || v != 3 {
		t.Fatalf("prod_schema_migrations: %d %v", v, err)
	}
	staging := newPhase(t, db.ClickHouseServer, db.Name, "staging")
	st, err := staging.Status(context.Background())
	if err != nil || states(st) != "pending,pending,pending" {
		t.Fatalf("staging status: %v %s", err, states(st))
	}
	mustApply(t, staging, "1")
	for _, p := range []*clickhousephase.Phase{prod, staging} {
		if _, err := p.Verify(context.Background(), run("")); err != nil {
			t.Fatalf("verify %s: %v", p.Prefix(), err)
		}
	}
	if got := strings.Join(tables(t, conn, db.Name), ","); !strings.Contains(got, "staging_events") || strings.Contains(got, ",events") {
		t.Fatalf("tables: %s", got)
	}
}

// sortIndexes orders skip indexes by name: their order is not part of the
// schema (system.data_skipping_indices lists them by name).
func sortIndexes(s *clickhousephase.Schema) {
	for i := range s.Tables {
		idx := s.Tables[i].Indexes
		sort.Slice(idx, func(a, b int) bool { return idx[a].Name < idx[b].Name })
	}
}
