package sqlmigrations

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

// The exactness tests compare this tool's result with Outpost's own SQL
// files run whole (as golang-migrate runs them) on a second database that
// holds the same data: the attempts and events tables row by row, every
// column in column order, and the schemas object by object.

// seededAt4 returns a database at version 4 (files 1-4 run whole, the
// version recorded as another tool would) holding seed's log data, which
// lies in random physical order as a real log does.
func seededAt4(t *testing.T, opts seed.PGOptions) (*servertest.PGDatabase, *pgx.Conn, seed.PGStats) {
	t.Helper()
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	applyFiles(t, conn, 1, 4)
	exec(t, conn, `CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)`,
		`INSERT INTO schema_migrations VALUES (4, false)`)
	opts.Version = 4
	st, err := seed.WritePostgres(ctxT(t), conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, `ANALYZE`)
	return db, conn, st
}

// outpostResult migrates a database at version 4 with Outpost's SQL files
// 5 to 10, each whole in one transaction.
func outpostResult(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	applyFiles(t, conn, 5, 10)
	exec(t, conn, `UPDATE schema_migrations SET version = 10`)
}

// requireSameAsOutpost fails unless got's attempts and events equal
// want's row by row (each row as PostgreSQL prints the whole row: every
// column, in column order) and the two schemas are identical.
func requireSameAsOutpost(t *testing.T, got, want *pgx.Conn) {
	t.Helper()
	ctx := ctxLong(t)
	gs, err := sqlphase.Inspect(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := sqlphase.Inspect(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range sqlphase.Diff(ws, gs) {
		t.Errorf("schema differs from Outpost's: %s: %s", is.Object, is.Reason)
	}
	for _, table := range []string{"attempts", "events"} {
		n := sameRows(t, got, want, table)
		t.Logf("%s: %d rows identical to Outpost's", table, n)
	}
}

// sameRows streams table from both databases in primary-key order and
// compares the rows' text; it returns the number of rows.
func sameRows(t *testing.T, got, want *pgx.Conn, table string) int {
	t.Helper()
	ctx := ctxLong(t)
	q := fmt.Sprintf(`SELECT r::text FROM %s AS r ORDER BY time, id`, table)
	gr, err := got.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	wr, err := want.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	n := 0
	for {
		gok, wok := gr.Next(), wr.Next()
		if !gok || !wok {
			if gok != wok {
				t.Fatalf("%s: row %d: this tool has a row: %v, Outpost's SQL has one: %v", table, n, gok, wok)
			}
			break
		}
		var g, w string
		if err := gr.Scan(&g); err != nil {
			t.Fatal(err)
		}
		if err := wr.Scan(&w); err != nil {
			t.Fatal(err)
		}
		if g != w {
			t.Fatalf("%s: row %d differs:\n this tool:     %s\n Outpost's SQL: %s", table, n, g, w)
		}
		n++
	}
	if err := gr.Err(); err != nil {
		t.Fatal(err)
	}
	if err := wr.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

var exactSeed = seed.PGOptions{Events: 20000, DeliveriesPerEvent: 2, OrphanRatio: 0.01, Seed: 11}

func TestBackfillMatchesOutpostSQL(t *testing.T) {
	ctx := ctxLong(t)
	db, conn, st := seededAt4(t, exactSeed)
	_, refConn, _ := seededAt4(t, exactSeed)
	outpostResult(t, refConn)

	p := newPhase(t, db.URL, sqlphase.Options{})
	rec := &recorder{}
	lines, err := p.Apply(ctx, &batch.Run{ID: "exact", Events: rec})
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("apply = %s, %v", states(lines), err)
	}
	c := lines[4].Counts
	if c == nil || c.Changed != st.Deliveries-st.Orphans || c.Deleted != st.Orphans || c.Rows != st.Deliveries {
		t.Errorf("counts of 5 = %+v, seeded %+v", c, st)
	}
	requireSameAsOutpost(t, conn, refConn)
	if len(rec.batches()) < 2 {
		t.Errorf("the backfill ran in %d batches", len(rec.batches()))
	}
}

// writer inserts deliveries as the old Outpost would during a rolling
// upgrade, until stopped or refused (the migration renamed the table); it
// records each row whose insert committed.
type writer struct {
	conn   *pgx.Conn
	events []string
	rng    *rand.Rand
	mu     sync.Mutex
	rows   [][]any
	stop   chan struct{}
	done   chan error
}

const writerInsert = `INSERT INTO deliveries (id, event_id, destination_id, status, time, code, response_data, manual, attempt)
	VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)`

// row makes the n-th row: its event exists or not (an orphan), its time
// lies anywhere in the log (behind the backfill's position or ahead of it,
// by primary key and, through the free space map, physically).
func (w *writer) row(n int) []any {
	event := w.events[w.rng.Intn(len(w.events))]
	if n%10 == 3 {
		event = fmt.Sprintf("evt_gone_%d", n)
	}
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(w.rng.Int63n(int64(40*24*time.Hour/time.Microsecond))) * time.Microsecond)
	var code, resp any
	if n%2 == 0 {
		code, resp = "200", fmt.Sprintf(`{"late": %d, "b": "x", "a": "y"}`, n)
	}
	return []any{fmt.Sprintf("del_late_%d", n), event, "des_w", "success", at, code, resp, n%3 == 0, int32(n % 5)}
}

func (w *writer) run(ctx context.Context) {
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			w.done <- nil
			return
		default:
		}
		r := w.row(n)
		if _, err := w.conn.Exec(ctx, writerInsert, r...); err != nil {
			w.done <- err
			return
		}
		w.mu.Lock()
		w.rows = append(w.rows, r)
		w.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBackfillWithConcurrentWriterMatchesOutpostSQL(t *testing.T) {
	ctx := ctxLong(t)
	db, conn, st := seededAt4(t, exactSeed)
	w := &writer{conn: db.Connect(t), rng: rand.New(rand.NewSource(5)), stop: make(chan struct{}), done: make(chan error, 1)}
	rows, err := conn.Query(ctx, `SELECT id FROM events ORDER BY id LIMIT 2000`)
	if err != nil {
		t.Fatal(err)
	}
	w.events, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	exec(t, w.conn, `SET lock_timeout = '20s'`)

	// Small fixed batches, so that the backfill lasts long enough for the
	// writer to land rows behind and ahead of it.
	p := newPhase(t, db.URL, sqlphase.Options{BatchSize: 400, BatchBudget: -1})
	var once sync.Once
	var during int
	rec := &recorder{}
	rec.on = func(e progress.Event) {
		if e.Event == progress.BatchDone {
			once.Do(func() { go w.run(ctx) })
		}
	}
	lines, err := p.Apply(ctx, &batch.Run{ID: "writer", Events: rec})
	close(w.stop)
	werr := <-w.done
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("apply = %s, %v", states(lines), err)
	}
	w.mu.Lock()
	during = len(w.rows)
	w.mu.Unlock()
	t.Logf("the writer inserted %d deliveries during the backfill (then: %v)", during, werr)
	if during < 50 {
		t.Fatalf("only %d rows were written during the backfill", during)
	}
	c := lines[4].Counts
	if c == nil || c.Rows < st.Deliveries || c.Rows > st.Deliveries+int64(during) {
		t.Errorf("counts of 5 = %+v, seeded %d + %d written", c, st.Deliveries, during)
	}

	// Outpost's SQL on the same data: the seed plus every row the writer
	// committed.
	_, refConn, _ := seededAt4(t, exactSeed)
	for _, r := range w.rows {
		exec1(t, refConn, writerInsert, r...)
	}
	outpostResult(t, refConn)
	requireSameAsOutpost(t, conn, refConn)
	var late int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM attempts WHERE id LIKE 'del_late_%'`).Scan(&late); err != nil || late == 0 {
		t.Errorf("no written row survived (%d, %v)", late, err)
	}
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(ctxT(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestBackfillResumesACheckpointOfAnEarlierRelease: a checkpoint written by
// a release that walked in primary-key order ("TIME|ID") is not a physical
// position: the walk starts over, skips the rows already done (their
// tenant_id is set) without counting them again, and ends exactly as
// Outpost's SQL does.
func TestBackfillResumesACheckpointOfAnEarlierRelease(t *testing.T) {
	ctx := ctxLong(t)
	db, conn, st := seededAt4(t, exactSeed)
	_, refConn, _ := seededAt4(t, exactSeed)
	outpostResult(t, refConn)

	p := newPhase(t, db.URL, sqlphase.Options{BatchSize: 2000, BatchBudget: -1})
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	n := 0
	rec := &recorder{on: func(e progress.Event) {
		if e.Event == progress.BatchDone {
			if n++; n == 5 {
				stop()
			}
		}
	}}
	if _, err := p.Apply(stopCtx, &batch.Run{ID: "first", Events: rec}); err == nil {
		t.Fatal("the first apply was not stopped")
	}
	var done int64
	exec(t, conn, `UPDATE outpost_migrate_checkpoint SET position = '2025-06-05T00:00:00.000000Z|del_0' WHERE version = 5`)
	if err := conn.QueryRow(ctx, `SELECT done FROM outpost_migrate_checkpoint WHERE version = 5`).Scan(&done); err != nil || done == 0 {
		t.Fatalf("checkpoint after the stop: done %d, %v", done, err)
	}
	lines, err := newPhase(t, db.URL, sqlphase.Options{}).Apply(ctx, &batch.Run{ID: "second"})
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("apply = %s, %v", states(lines), err)
	}
	if c := lines[4].Counts; c == nil || c.Rows != st.Deliveries || c.Changed != st.Deliveries-st.Orphans || c.Deleted != st.Orphans {
		t.Errorf("counts after the restarted walk = %+v, seeded %+v (%d done before)", c, st, done)
	}
	requireSameAsOutpost(t, conn, refConn)
}

// ctxLong bounds a test that seeds and migrates two databases: longer than
// ctxT, for a busy machine.
func ctxLong(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
