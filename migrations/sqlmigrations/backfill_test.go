package sqlmigrations

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/report"
)

const (
	seedEvents     = 50_000
	seedDeliveries = 100_000 // two per event
	seedOrphans    = 1_000   // deliveries whose event does not exist
)

// seedSQL fills a version-4 log: events with distinct payloads, deliveries
// (three share each second, so ties in time are broken by id), orphaned
// deliveries, and some event_delivery_index rows for 5 to drop.
func seedSQL(events, deliveries, orphans int) string {
	return fmt.Sprintf(`
INSERT INTO events (id, tenant_id, destination_id, time, topic, eligible_for_retry, data, metadata)
SELECT 'evt_' || g, 'tenant_' || (g %% 97), 'dest_' || (g %% 13),
       timestamptz '2025-01-01 00:00:00+00' + g * interval '1.5 second', 'topic.' || (g %% 7), g %% 2 = 0,
       jsonb_build_object('n', g, 'zeta', 'z' || g, 'alpha', g %% 5), jsonb_build_object('m', g %% 3)
FROM generate_series(1, %[1]d) g;

INSERT INTO deliveries (id, event_id, destination_id, status, time, code, response_data, manual, attempt)
SELECT 'del_' || g, 'evt_' || ((g - 1) %% %[1]d + 1), 'dest_' || (g %% 13),
       CASE WHEN g %% 3 = 0 THEN 'failed' ELSE 'success' END,
       timestamptz '2025-01-01 00:00:00+00' + (g / 3) * interval '1 second',
       CASE WHEN g %% 4 = 0 THEN '200' END,
       CASE WHEN g %% 4 = 0 THEN jsonb_build_object('ok', true) END,
       g %% 10 = 0, g %% 4
FROM generate_series(1, %[2]d) g;

INSERT INTO deliveries (id, event_id, destination_id, status, time)
SELECT 'orphan_' || g, 'evt_missing_' || g, 'dest_1', 'failed',
       timestamptz '2025-01-01 00:00:00+00' + (g * 7) * interval '1 second'
FROM generate_series(1, %[3]d) g;

INSERT INTO event_delivery_index (event_id, delivery_id, tenant_id, destination_id, event_time, delivery_time, topic, status)
SELECT 'evt_' || g, 'del_' || g, 't', 'd', now(), now(), 'x', 'success' FROM generate_series(1, 100) g;
`, events, deliveries, orphans)
}

// fingerprint hashes the columns of every non-orphaned delivery that 5
// must keep as they are (at version 4 as deliveries, at 10 as attempts).
func fingerprint(t *testing.T, conn *pgx.Conn, version int) string {
	t.Helper()
	table, attempt := "deliveries", "attempt"
	if version >= 5 {
		table, attempt = "attempts", "attempt_number"
	}
	var sum string
	err := conn.QueryRow(context.Background(), fmt.Sprintf(`
		SELECT md5(string_agg(concat_ws('|', id, event_id, destination_id, status, time, code, response_data::text, manual, %s),
		                      ',' ORDER BY time, id))
		FROM %s WHERE id NOT LIKE 'orphan%%' AND id NOT LIKE 'late%%'`, attempt, table)).Scan(&sum)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// checkBackfill checks, with SQL joins, that every attempt carries its
// event's values and that no attempt lacks its event.
func checkBackfill(t *testing.T, conn *pgx.Conn, wantAttempts int) {
	t.Helper()
	ctx := context.Background()
	var total, wrong, orphans int
	err := conn.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE NOT EXISTS (
		           SELECT 1 FROM events e
		           WHERE e.id = a.event_id AND e.tenant_id = a.tenant_id AND e.topic = a.topic
		             AND e.time = a.event_time AND e.eligible_for_retry = a.eligible_for_retry
		             AND e.data = a.event_data AND e.metadata = a.event_metadata)),
		       count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = a.event_id))
		FROM attempts a`).Scan(&total, &wrong, &orphans)
	if err != nil {
		t.Fatal(err)
	}
	if total != wantAttempts || wrong != 0 || orphans != 0 {
		t.Fatalf("attempts: %d (want %d), %d with values unlike their event's, %d without an event", total, wantAttempts, wrong, orphans)
	}
	// The payload keeps a value that only its own event has.
	var sample string
	if err := conn.QueryRow(ctx, `SELECT event_data FROM attempts WHERE id = 'del_7'`).Scan(&sample); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sample, `"zeta": "z7"`) {
		t.Errorf("del_7 event_data = %s", sample)
	}
}

// atVersion4 returns a database migrated to 4 by the phase and seeded.
func atVersion4(t *testing.T) (*servertest.PGDatabase, *pgx.Conn, string) {
	t.Helper()
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, sqlphase.Options{})
	if _, err := p.Apply(ctxT(t), &batch.Run{ID: "setup", Target: "sql/000004_delivery_manual_attempt"}); err != nil {
		t.Fatal(err)
	}
	exec(t, conn, seedSQL(seedEvents, seedDeliveries, seedOrphans))
	return db, conn, fingerprint(t, conn, 4)
}

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

func (r *recorder) batches() []progress.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []progress.Event
	for _, e := range r.events {
		if e.Event == progress.BatchDone {
			out = append(out, e)
		}
	}
	return out
}

func TestBackfillOfALargeLog(t *testing.T) {
	ctx := ctxLong(t)
	db, conn, before := atVersion4(t)
	p := newPhase(t, db.URL, sqlphase.Options{})

	lines, err := p.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e := lines[4].Estimate; e == nil || e.Value != seedDeliveries+seedOrphans || e.Method != "counted" || e.Units != "rows" || e.Deletes == nil || *e.Deletes != seedOrphans {
		t.Fatalf("plan estimate of 5 = %+v", e)
	}

	// Between batches no lock is held: another session writes deliveries
	// (behind the backfill's position, so only the catch-up in "finish"
	// can reach them) without waiting.
	other := db.Connect(t)
	exec(t, other, `SET lock_timeout = '2s'`)
	rec := &recorder{}
	var nBatches int
	rec.on = func(e progress.Event) {
		if e.Event != progress.BatchDone {
			return
		}
		if nBatches++; nBatches == 5 {
			exec(t, other, `INSERT INTO deliveries (id, event_id, destination_id, status, time) VALUES
				('late_behind', 'evt_1', 'dest_x', 'success', '2025-01-01 00:00:00+00'),
				('late_orphan', 'evt_nope', 'dest_x', 'failed', '2025-01-01 00:00:00+00')`)
		}
	}
	lines, err = p.Apply(ctx, &batch.Run{ID: "big", Events: rec})
	if err != nil || states(lines) != allStates(10, "applied") {
		t.Fatalf("apply = %s, %v", states(lines), err)
	}
	batches := rec.batches()
	total := int64(seedDeliveries + seedOrphans)
	var sum int64
	for _, b := range batches {
		sum += b.Fields["batch_rows"].(int64)
		if ms := b.Fields["batch_ms"].(int64); ms > 1000 {
			t.Errorf("a batch took %d ms", ms)
		}
	}
	if len(batches) < 5 {
		t.Errorf("%d batches", len(batches))
	}
	// The two late rows land past the walk's end or behind it (the
	// catch-up's work) or, through the free space map, ahead of it (the
	// walk's): either way once.
	last := batches[len(batches)-1]
	if c := last.Counts; c.Rows != sum || c.Rows < total || c.Rows > total+2 || c.Changed < seedDeliveries || c.Deleted < seedOrphans ||
		last.TotalEstimate < total || last.RatePerS <= 0 || last.Migration != "sql/000005_denormalize_attempts" {
		t.Errorf("last batch event = %+v, counts %+v (sum of batches %d)", last, last.Counts, sum)
	}
	if mid := batches[len(batches)/2]; mid.ETAS <= 0 || mid.Cursor == "" {
		t.Errorf("mid-run batch event lacks ETA or position: %+v", mid)
	}
	l5 := lines[4]
	if l5.Counts == nil || l5.Counts.Rows != last.Counts.Rows || l5.Progress == nil || l5.Progress.Done != last.Counts.Rows || l5.Progress.Resumed {
		t.Errorf("line 5 = %+v counts %+v progress %+v", l5, l5.Counts, l5.Progress)
	}
	requireSchema(t, conn, 10)
	checkBackfill(t, conn, seedDeliveries+1)
	var lateTenant string
	if err := conn.QueryRow(ctx, `SELECT tenant_id FROM attempts WHERE id = 'late_behind'`).Scan(&lateTenant); err != nil || lateTenant != "tenant_1" {
		t.Errorf("late delivery: tenant %q, %v", lateTenant, err)
	}
	if after := fingerprint(t, conn, 10); after != before {
		t.Error("the columns of the deliveries changed")
	}
	if _, err := p.Verify(ctx, &batch.Run{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

const crashChildEnv = "OUTPOST_SQLMIGRATIONS_CRASH_CHILD_URL"

// crashChild is the process TestBackfillKilledMidwayResumes kills: it
// applies every migration in small batches, printing "done N" after each
// batch and pausing a little so that the parent's kill lands mid-backfill.
func crashChild(url string) int {
	ctx := context.Background()
	p, err := sqlphase.New(ctx, url, Source(), sqlphase.Options{BatchSize: 2000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sink := sinkFunc(func(e progress.Event) {
		if e.Event == progress.BatchDone {
			fmt.Printf("done %d\n", e.Counts.Rows)
			time.Sleep(20 * time.Millisecond)
		}
	})
	if _, err := p.Apply(ctx, &batch.Run{ID: "crash-child", Events: sink}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("finished")
	return 0
}

type sinkFunc func(progress.Event)

func (f sinkFunc) Emit(e progress.Event) { f(e) }

func TestBackfillKilledMidwayResumes(t *testing.T) {
	ctx := ctxLong(t)
	db, conn, before := atVersion4(t)
	total := int64(seedDeliveries + seedOrphans)

	child := osexec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"="+db.URL)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killedAt := int64(-1)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "done "); ok {
			done, _ := strconv.ParseInt(n, 10, 64)
			if done >= 20_000 {
				if err := child.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killedAt = done
				break
			}
		}
		if line == "finished" {
			break
		}
	}
	err = child.Wait()
	var exitErr *osexec.ExitError
	if killedAt < 0 || !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed mid-backfill (killed at %d rows, wait: %v)", killedAt, err)
	}

	p := newPhase(t, db.URL, sqlphase.Options{})
	if recorded(t, conn) != "5/true" {
		t.Fatalf("recorded after the kill = %s, want 5/true", recorded(t, conn))
	}
	lines, err := p.Status(ctx)
	if err != nil || lines[4].State != report.StatePartial || !lines[4].Resumable {
		t.Fatalf("status after the kill = %s, %v", states(lines), err)
	}
	pr := lines[4].Progress
	if pr == nil || pr.RunID != "crash-child" || pr.Done < killedAt || pr.Done >= total || pr.Total != total || pr.Position == "" {
		t.Fatalf("checkpoint after the kill = %+v (killed after %d rows)", pr, killedAt)
	}
	validLines(t, report.KindStatus, "status", report.OutcomePending, lines, nil)

	rec := &recorder{}
	lines, err = p.Apply(ctx, &batch.Run{ID: "rerun", Events: rec})
	if err != nil || states(lines) != allStates(10, "applied") || recorded(t, conn) != "10/false" {
		t.Fatalf("rerun = %s, %v, %s", states(lines), err, recorded(t, conn))
	}
	validLines(t, report.KindApply, "apply", report.OutcomeApplied, lines, nil)
	l5 := lines[4]
	if l5.Progress == nil || !l5.Progress.Resumed || l5.Counts == nil ||
		l5.Counts.Rows != total || l5.Counts.Changed != seedDeliveries || l5.Counts.Deleted != seedOrphans {
		t.Errorf("resumed line 5 = progress %+v counts %+v", l5.Progress, l5.Counts)
	}
	if first := rec.batches()[0]; first.Counts.Rows <= pr.Done {
		t.Errorf("the rerun did not continue from the checkpoint: first batch ends at %d rows", first.Counts.Rows)
	}
	requireSchema(t, conn, 10)
	checkBackfill(t, conn, seedDeliveries)
	if after := fingerprint(t, conn, 10); after != before {
		t.Error("the columns of the deliveries changed")
	}
	requireSameAsOutpost(t, conn, outpostOnSeedSQL(t))
}

// outpostOnSeedSQL is what Outpost's SQL files, run whole, make of the
// data atVersion4 seeds.
func outpostOnSeedSQL(t *testing.T) *pgx.Conn {
	t.Helper()
	conn := servertest.Postgres(t).Connect(t)
	applyFiles(t, conn, 1, 4)
	exec(t, conn, seedSQL(seedEvents, seedDeliveries, seedOrphans))
	exec(t, conn, `CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)`,
		`INSERT INTO schema_migrations VALUES (4, false)`)
	outpostResult(t, conn)
	return conn
}
