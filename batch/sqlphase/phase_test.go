package sqlphase

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// The toy source: items, then a stepped migration that copies v into a new
// column w in batches, then an index. The finish step refuses to run while
// a row holds 'poison', to make a late step fail on demand.
var toyFiles = fstest.MapFS{
	"000001_items.up.sql":   file("-- 000001_items: the items table.\nCREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL);\n"),
	"000001_items.down.sql": file("DROP TABLE items;\n"),
	"000002_fill_w.up.sql": file(`-- 000002_fill_w: copy v into a new column w.
-- +outpost step add
ALTER TABLE items ADD COLUMN w text;
-- +outpost batched copy
UPDATE items SET w = v;
-- +outpost step finish
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM items WHERE v = 'poison') THEN RAISE EXCEPTION 'poison row'; END IF;
END $$;
ALTER TABLE items ALTER COLUMN w SET NOT NULL;
`),
	"000003_index.up.sql": file("CREATE INDEX items_w_idx ON items (w);\n"),
}

// copyStep is migration 2's batched step: w = v in id order.
type copyStep struct{}

func (copyStep) Estimate(ctx context.Context, q Querier, countBelow int64) (report.Estimate, error) {
	return CountRows(ctx, q, "items", countBelow)
}

func (copyStep) Batch(ctx context.Context, tx pgx.Tx, position string, limit int) (BatchResult, error) {
	after := -1
	if position != "" {
		var err error
		if after, err = strconv.Atoi(position); err != nil {
			return BatchResult{}, err
		}
	}
	var res BatchResult
	var last *int
	err := tx.QueryRow(ctx, `
		WITH b AS (SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2),
		     u AS (UPDATE items AS i SET w = i.v FROM b WHERE i.id = b.id RETURNING 1)
		SELECT (SELECT count(*) FROM b), (SELECT count(*) FROM u), (SELECT max(id) FROM b)`, after, limit).
		Scan(&res.Rows, &res.Changed, &last)
	if err != nil {
		return res, err
	}
	if last != nil {
		res.Position = strconv.Itoa(*last)
	}
	res.Done = res.Rows < int64(limit)
	return res, nil
}

func toyExpected(v int) (*Schema, bool) {
	if v < 0 || v > 3 {
		return nil, false
	}
	s := &Schema{}
	if v == 0 {
		return s, true
	}
	items := Table{Name: "items",
		Columns:     []Column{{Name: "id", Type: "integer", NotNull: true}, {Name: "v", Type: "text", NotNull: true}},
		Indexes:     []Index{{Name: "items_pkey", Def: "btree (id)", Unique: true, Primary: true}},
		Constraints: []Constraint{{Name: "items_pkey", Def: "PRIMARY KEY (id)"}},
	}
	if v >= 2 {
		items.Columns = append(items.Columns, Column{Name: "w", Type: "text", NotNull: true})
	}
	if v >= 3 {
		items.Indexes = append(items.Indexes, Index{Name: "items_w_idx", Def: "btree (w)"})
	}
	s.Tables = append(s.Tables, items)
	return s, true
}

func toySource(t *testing.T) Source {
	t.Helper()
	src, err := Load(toyFiles, ".", map[string]BatchedStep{"000002_fill_w/copy": copyStep{}}, toyExpected)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPhase(t *testing.T, url string, src Source, opts Options) *Phase {
	t.Helper()
	p, err := New(context.Background(), url, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// recorder is a progress.Sink that keeps events and may react to them.
type recorder struct {
	mu     sync.Mutex
	events []progress.Event
	on     func(progress.Event)
}

func (r *recorder) Emit(e progress.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if r.on != nil {
		r.on(e)
	}
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Event == kind {
			n++
		}
	}
	return n
}

func (r *recorder) last(kind string) progress.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Event == kind {
			return r.events[i]
		}
	}
	return progress.Event{}
}

func states(lines []report.Migration) string {
	var s []string
	for _, l := range lines {
		s = append(s, fmt.Sprintf("%d:%s", l.Version, l.State))
	}
	return strings.Join(s, " ")
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

func exec(t *testing.T, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func wantCode(t *testing.T, err error, code report.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", code)
	}
	if got := report.CodeOf(err); got != code {
		t.Fatalf("code = %s (%v), want %s", got, err, code)
	}
}

func TestApplyInStepsAndBatches(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, toySource(t), Options{BatchSize: 5, BatchBudget: -1})

	lines, err := p.Status(ctx)
	if err != nil || states(lines) != "1:pending 2:pending 3:pending" {
		t.Fatalf("fresh status = %s, %v", states(lines), err)
	}
	lines, err = p.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := lines[1].Estimate; e == nil || e.Value != 0 || e.Method != "counted" || !strings.Contains(e.Note, "does not exist yet") {
		t.Errorf("plan estimate on a fresh database = %+v", e)
	}
	if lines[0].Description != "the items table." {
		t.Errorf("description = %q", lines[0].Description)
	}

	rec := &recorder{}
	js := newJSONEvents()
	run := &batch.Run{ID: "run-1", Command: "apply", Target: "sql/000001_items", Events: progress.Tee{rec, js}}
	lines, err = p.Apply(ctx, run)
	if err != nil || states(lines) != "1:applied 2:pending 3:pending" || recorded(t, conn) != "1/false" {
		t.Fatalf("apply to 1 = %s, %v, recorded %s", states(lines), err, recorded(t, conn))
	}
	exec(t, conn, `INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 12) g`)

	lines, err = p.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := lines[1].Estimate; e == nil || e.Value != 12 || e.Method != "counted" || e.Units != "rows" {
		t.Errorf("plan estimate = %+v", e)
	}
	validLines(t, report.KindPlan, "plan", report.OutcomePending, lines, nil)

	// A second session cannot take golang-migrate's lock while apply holds it.
	other := db.Connect(t)
	lockID, err := p.AdvisoryLockID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var blocked []bool
	rec.on = func(e progress.Event) {
		if e.Event == progress.BatchDone {
			var ok bool
			if err := other.QueryRow(context.Background(), `SELECT pg_try_advisory_lock($1)`, lockID).Scan(&ok); err != nil {
				t.Error(err)
			}
			blocked = append(blocked, !ok)
		}
	}
	run.Target = ""
	lines, err = p.Apply(ctx, run)
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" || recorded(t, conn) != "3/false" {
		t.Fatalf("apply = %s, %v, recorded %s", states(lines), err, recorded(t, conn))
	}
	validLines(t, report.KindApply, "apply", report.OutcomeApplied, lines, nil)
	js.validate(t)
	if len(blocked) != 3 || !blocked[0] || !blocked[1] || !blocked[2] {
		t.Errorf("second session blocked during batches = %v, want 3 times true", blocked)
	}
	if a := p.Advisory(); a == nil || a.ID != lockID || a.State != "released" {
		t.Errorf("advisory after apply = %+v", a)
	}
	var ok bool
	if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockID).Scan(&ok); err != nil || !ok {
		t.Errorf("after apply the lock is still held: %v %v", ok, err)
	}
	exec(t, other, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", lockID))

	if n := rec.count(progress.BatchDone); n != 3 {
		t.Errorf("batch_done events = %d, want 3 (5+5+2 rows)", n)
	}
	last := rec.last(progress.BatchDone)
	if last.Counts == nil || last.Counts.Rows != 12 || last.Counts.Changed != 12 || last.Cursor != "12" ||
		last.TotalEstimate != 12 || last.Migration != "sql/000002_fill_w" || last.RatePerS <= 0 {
		t.Errorf("last batch_done = %+v counts %+v", last, last.Counts)
	}
	l2 := lines[1]
	if l2.Counts == nil || l2.Counts.Rows != 12 || l2.Progress == nil || l2.Progress.Done != 12 || l2.Progress.Total != 12 ||
		l2.Progress.Position != "12" || l2.AppliedAt == "" || l2.Resumable {
		t.Errorf("line 2 = %+v counts %+v progress %+v", l2, l2.Counts, l2.Progress)
	}
	var mismatched int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM items WHERE w IS DISTINCT FROM v`).Scan(&mismatched); err != nil || mismatched != 0 {
		t.Errorf("rows not copied: %d %v", mismatched, err)
	}

	// Nothing left: a rerun changes nothing and says so.
	before := rec.count(progress.MigrationStarted)
	lines, err = p.Apply(ctx, run)
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" || rec.count(progress.MigrationStarted) != before {
		t.Fatalf("second apply = %s, %v", states(lines), err)
	}
	for _, l := range lines {
		if l.DurationMS != 0 || l.AppliedAt == "" {
			t.Errorf("already-applied line %+v", l)
		}
	}
	lines, err = p.Verify(ctx, run)
	if err != nil || states(lines) != "1:verified 2:verified 3:verified" {
		t.Fatalf("verify = %s, %v", states(lines), err)
	}
	lines, err = p.Cleanup(ctx, run)
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" {
		t.Fatalf("cleanup = %s, %v", states(lines), err)
	}

	// Drift: a column dropped by hand.
	exec(t, conn, `DROP INDEX items_w_idx`, `ALTER TABLE items ADD COLUMN extra int`)
	lines, err = p.Verify(ctx, run)
	wantCode(t, err, report.CodeDrift)
	if states(lines) != "1:verified 2:verified 3:drift" || lines[2].IssuesTotal != 2 {
		t.Fatalf("verify after drift = %s, issues %+v", states(lines), lines[2].Issues)
	}
	validLines(t, report.KindVerify, "verify", "", lines, err)
}

func TestLateStepFailureResumesAtThatStep(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, toySource(t), Options{BatchSize: 4, BatchBudget: -1})
	rec := &recorder{}
	run := &batch.Run{ID: "run-1", Events: rec, Target: "1"}
	if _, err := p.Apply(ctx, run); err != nil {
		t.Fatal(err)
	}
	exec(t, conn, `INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g`, `UPDATE items SET v = 'poison' WHERE id = 7`)
	run.Target = ""
	lines, err := p.Apply(ctx, run)
	wantCode(t, err, report.CodeMigrationFailed)
	if d := report.DetailsOf(err); d["version"] != 2 || d["step"] != "finish" || !strings.Contains(err.Error(), "poison row") {
		t.Errorf("error = %v, details %v", err, d)
	}
	if states(lines) != "1:applied 2:failed 3:pending" || !lines[1].Resumable || lines[1].Progress == nil || lines[1].Progress.Done != 10 {
		t.Fatalf("lines = %s %+v", states(lines), lines[1])
	}
	validLines(t, report.KindApply, "apply", "", lines, err)
	if recorded(t, conn) != "2/true" {
		t.Fatalf("recorded = %s, want 2/true", recorded(t, conn))
	}
	lines, err = p.Status(ctx)
	if err != nil || states(lines) != "1:applied 2:partial 3:pending" || !lines[1].Resumable || !strings.Contains(lines[1].Reason, `"finish"`) {
		t.Fatalf("status = %s %+v, %v", states(lines), lines[1], err)
	}
	validLines(t, report.KindStatus, "status", report.OutcomePending, lines, nil)
	// Verify refuses a half-applied version.
	_, err = p.Verify(ctx, run)
	wantCode(t, err, report.CodeDirty)

	exec(t, conn, `UPDATE items SET v = 'v7' WHERE id = 7`)
	batches := rec.count(progress.BatchDone)
	lines, err = p.Apply(ctx, run)
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" || recorded(t, conn) != "3/false" {
		t.Fatalf("resumed apply = %s, %v, recorded %s", states(lines), err, recorded(t, conn))
	}
	if n := rec.count(progress.BatchDone); n != batches {
		t.Errorf("the resumed run ran %d more batches; the backfill was done", n-batches)
	}
	if pr := lines[1].Progress; pr == nil || !pr.Resumed || pr.Done != 10 {
		t.Errorf("resumed line progress = %+v", pr)
	}
}

func TestFailedPlainMigrationRollsBack(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	fsys := fstest.MapFS{
		"000001_a.up.sql": file("CREATE TABLE a (id int);\n"),
		"000002_b.up.sql": file("CREATE TABLE b (id int);\nINSERT INTO nosuch VALUES (1);\n"),
	}
	src, err := Load(fsys, ".", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPhase(t, db.URL, src, Options{})
	lines, err := p.Apply(ctx, &batch.Run{ID: "r"})
	wantCode(t, err, report.CodeMigrationFailed)
	if report.DetailsOf(err)["version"] != 2 {
		t.Errorf("details = %v", report.DetailsOf(err))
	}
	if states(lines) != "1:applied 2:failed" || lines[1].Resumable || !strings.Contains(lines[1].Reason, "rolled back") {
		t.Fatalf("lines = %s %+v", states(lines), lines[1])
	}
	var b *string
	if err := conn.QueryRow(ctx, `SELECT to_regclass('b')::text`).Scan(&b); err != nil || b != nil {
		t.Errorf("table b exists after a failed migration: %v %v", b, err)
	}
	if recorded(t, conn) != "1/false" {
		t.Errorf("recorded = %s, want 1/false", recorded(t, conn))
	}
}

func TestForeignDirtyIsRefusedAndForceRepairs(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, toySource(t), Options{})
	exec(t, conn,
		`CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL, w text)`,
		`CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)`,
		`INSERT INTO schema_migrations VALUES (2, true)`)
	for name, call := range map[string]func() ([]report.Migration, error){
		"status": func() ([]report.Migration, error) { return p.Status(ctx) },
		"plan":   func() ([]report.Migration, error) { return p.Plan(ctx) },
	} {
		lines, err := call()
		if err != nil || states(lines) != "1:applied 2:dirty 3:pending" {
			t.Fatalf("%s = %s, %v", name, states(lines), err)
		}
		if r := lines[1].Reason; !strings.Contains(r, "dirty") || !strings.Contains(r, "outpost migrate force 2 --yes") ||
			!strings.Contains(r, "outpost migrate force 1 --yes") || lines[1].Resumable {
			t.Errorf("%s reason = %q", name, r)
		}
	}
	lines, err := p.Apply(ctx, &batch.Run{ID: "r"})
	wantCode(t, err, report.CodeDirty)
	if !strings.Contains(err.Error(), "force 2 --yes") || report.DetailsOf(err)["version"] != 2 || recorded(t, conn) != "2/true" {
		t.Errorf("apply on dirty: %v, recorded %s", err, recorded(t, conn))
	}
	if states(lines) != "1:applied 2:dirty 3:pending" {
		t.Errorf("apply lines = %s", states(lines))
	}
	validLines(t, report.KindApply, "apply", "", lines, err)
	_, err = p.Verify(ctx, &batch.Run{})
	wantCode(t, err, report.CodeDirty)

	wantCode(t, p.Force(ctx, 4), report.CodeUsage)
	wantCode(t, p.Force(ctx, -2), report.CodeUsage)
	// The repair: complete migration 2 by hand, then record it.
	exec(t, conn, `UPDATE items SET w = v`, `ALTER TABLE items ALTER COLUMN w SET NOT NULL`)
	if err := p.Force(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if recorded(t, conn) != "2/false" {
		t.Fatalf("recorded after force = %s", recorded(t, conn))
	}
	lines, err = p.Apply(ctx, &batch.Run{ID: "r"})
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" {
		t.Fatalf("apply after force = %s, %v", states(lines), err)
	}
	if err := p.Force(ctx, 0); err != nil || recorded(t, conn) != "none" {
		t.Fatalf("force 0: %v, recorded %s", err, recorded(t, conn))
	}
}

func TestNewerVersionIsRefused(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	exec(t, conn, `CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)`,
		`INSERT INTO schema_migrations VALUES (11, false)`)
	p := newPhase(t, db.URL, toySource(t), Options{})
	lines, err := p.Status(ctx)
	if err != nil || states(lines) != "1:applied 2:applied 3:applied 11:unknown" || lines[3].ID != "sql/000011_unknown" {
		t.Fatalf("status = %s, %v", states(lines), err)
	}
	validLines(t, report.KindStatus, "status", report.OutcomeUpToDate, lines, nil)
	_, err = p.Apply(ctx, &batch.Run{})
	wantCode(t, err, report.CodeDataRefused)
	_, err = p.Verify(ctx, &batch.Run{})
	wantCode(t, err, report.CodeDataRefused)
}

func TestAdvisoryLockHeldElsewhere(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	p := newPhase(t, db.URL, toySource(t), Options{AdvisoryLockWait: 300 * time.Millisecond})
	id, err := p.AdvisoryLockID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := golangMigrateLockID(db.Name, "public", "schema_migrations"); id != want {
		t.Fatalf("lock id = %d, want golang-migrate's %d", id, want)
	}
	other := db.Connect(t)
	exec(t, other, `SET application_name = 'golang-migrate-test'`, fmt.Sprintf("SELECT pg_advisory_lock(%d)", id))
	st, err := p.LockStatus(ctx)
	if err != nil || st.State != "held" || st.ID != id {
		t.Fatalf("lock status = %+v, %v", st, err)
	}
	rec := &recorder{}
	lines, err := p.Apply(ctx, &batch.Run{ID: "r", Events: rec})
	wantCode(t, err, report.CodeLockHeld)
	if !strings.Contains(err.Error(), "golang-migrate-test") || report.DetailsOf(err)["advisory_lock_id"] != id {
		t.Errorf("lock held error = %v, details %v", err, report.DetailsOf(err))
	}
	if states(lines) != "1:pending 2:pending 3:pending" || rec.count(progress.LockWaiting) != 1 {
		t.Errorf("lines = %s, lock_waiting events %d", states(lines), rec.count(progress.LockWaiting))
	}
	// Released while we wait: apply proceeds.
	p.opts.AdvisoryLockWait = 10 * time.Second
	unlocked := make(chan error, 1)
	go func() {
		time.Sleep(400 * time.Millisecond)
		_, err := other.Exec(context.Background(), fmt.Sprintf("SELECT pg_advisory_unlock(%d)", id))
		unlocked <- err
	}()
	lines, err = p.Apply(ctx, &batch.Run{ID: "r", Events: rec})
	if uerr := <-unlocked; uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" {
		t.Fatalf("apply after release = %s, %v", states(lines), err)
	}
	if st, err := p.LockStatus(ctx); err != nil || st.State != "free" {
		t.Errorf("lock status after apply = %+v, %v", st, err)
	}
}

func TestCountRows(t *testing.T) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	exec(t, conn,
		`CREATE TABLE parts (t int NOT NULL) PARTITION BY RANGE (t)`,
		`CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (500)`,
		`CREATE TABLE parts_default PARTITION OF parts DEFAULT`,
		`INSERT INTO parts SELECT g FROM generate_series(1, 2000) g`,
		`CREATE TABLE plain (t int)`,
		`INSERT INTO plain SELECT g FROM generate_series(1, 300) g`)

	// Never analyzed: counted, whatever the threshold.
	e, err := CountRows(ctx, conn, "parts", 1)
	if err != nil || e.Method != "counted" || e.Value != 2000 || e.Units != "rows" {
		t.Fatalf("unanalyzed = %+v, %v", e, err)
	}
	exec(t, conn, `ANALYZE parts`, `ANALYZE plain`)
	e, err = CountRows(ctx, conn, "parts", 1000)
	if err != nil || e.Method != "catalog" || e.Value != 2000 {
		t.Fatalf("large by the catalog = %+v, %v", e, err)
	}
	e, err = CountRows(ctx, conn, "parts", 1_000_000)
	if err != nil || e.Method != "counted" || e.Value != 2000 {
		t.Fatalf("small by the catalog = %+v, %v", e, err)
	}
	e, err = CountRows(ctx, conn, "plain", 10)
	if err != nil || e.Method != "catalog" || e.Value != 300 {
		t.Fatalf("plain table = %+v, %v", e, err)
	}
	e, err = CountRows(ctx, conn, "nosuch", 10)
	if err != nil || e.Value != 0 || e.Note == "" {
		t.Fatalf("missing table = %+v, %v", e, err)
	}
}

// TestNextLimit: the batch size moves towards the time budget by at most a
// factor of two a batch, within its bounds, and stays put without a budget
// or without a measurement.
func TestNextLimit(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		limit        int
		rows         int64
		took, budget time.Duration
		want         int
	}{
		{1000, 1000, 50 * ms, 100 * ms, 2000},      // twice as fast as the budget
		{1000, 1000, 10 * ms, 100 * ms, 2000},      // ten times: still only doubled
		{1000, 1000, 200 * ms, 100 * ms, 500},      // twice too slow: halved
		{1000, 1000, 2000 * ms, 100 * ms, 500},     // a spike: halved, not cut to 50
		{4000, 3000, 100 * ms, 100 * ms, 3000},     // fewer rows than asked: sized on what it did
		{150, 100, 1000 * ms, 100 * ms, 100},       // never below 100
		{900_000, 900_000, ms, 100 * ms, maxBatch}, // never above the cap
		{1000, 1000, 50 * ms, -1, 1000},            // no budget: fixed
		{1000, 0, 50 * ms, 100 * ms, 1000},         // nothing measured
	} {
		if got := nextLimit(c.limit, c.rows, c.took, c.budget); got != c.want {
			t.Errorf("nextLimit(%d, %d, %v, %v) = %d, want %d", c.limit, c.rows, c.took, c.budget, got, c.want)
		}
	}
}
