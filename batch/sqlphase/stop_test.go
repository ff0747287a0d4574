package sqlphase

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// toyAtOne is a phase over the toy source in batches of 5 rows, with
// migration 1 applied and rows rows in items.
func toyAtOne(t *testing.T, rows int) (context.Context, *pgx.Conn, *Phase) {
	ctx := ctxT(t)
	db := servertest.Postgres(t)
	conn := db.Connect(t)
	p := newPhase(t, db.URL, toySource(t), Options{BatchSize: 5, BatchBudget: -1})
	if _, err := p.Apply(ctx, &batch.Run{ID: "r0", Target: "1"}); err != nil {
		t.Fatal(err)
	}
	exec(t, conn, fmt.Sprintf(`INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, %d) g`, rows))
	return ctx, conn, p
}

// cancelAfter cancels when the n-th batch_done event arrives.
func TestCancelledBackfillResumes(t *testing.T) {
	ctx, conn, p := toyAtOne(t, 23)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := &recorder{}
	rec.on = func(e progress.Event) {
		if e.Event == progress.BatchDone && e.Counts.Rows == 10 {
			cancel()
		}
	}
	lines, err := p.Apply(runCtx, &batch.Run{ID: "r1", Events: rec})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if states(lines) != "1:applied 2:interrupted 3:pending" || !lines[1].Resumable || lines[1].Progress.Done != 10 || lines[1].Progress.Position != "10" {
		t.Fatalf("lines = %s %+v %+v", states(lines), lines[1], lines[1].Progress)
	}
	validLines(t, report.KindApply, "apply", report.OutcomeInterrupted, lines, report.Wrap(report.CodeInterrupted, err, "interrupted"))
	lines, err = p.Plan(ctx)
	if err != nil || states(lines) != "1:applied 2:partial 3:pending" {
		t.Fatalf("plan = %s, %v", states(lines), err)
	}
	if e := lines[1].Estimate; e == nil || e.Value != 13 {
		t.Errorf("plan estimate of the rest = %+v", e)
	}
	validLines(t, report.KindPlan, "plan", report.OutcomePending, lines, nil)
	if pr := lines[1].Progress; pr == nil || pr.RunID != "r1" || pr.Done != 10 || pr.Total != 23 || pr.UpdatedAt == "" {
		t.Errorf("partial progress = %+v", pr)
	}
	var copied int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM items WHERE w = v`).Scan(&copied); err != nil || copied != 10 {
		t.Errorf("rows copied before the stop = %d, %v", copied, err)
	}

	rec2 := &recorder{}
	lines, err = p.Apply(ctx, &batch.Run{ID: "r2", Events: rec2})
	if err != nil || states(lines) != "1:applied 2:applied 3:applied" {
		t.Fatalf("resumed = %s, %v", states(lines), err)
	}
	if n := rec2.count(progress.BatchDone); n != 3 {
		t.Errorf("resumed batches = %d, want 3 (rows 11-15, 16-20, 21-23)", n)
	}
	if c := lines[1].Counts; c == nil || c.Rows != 23 || c.Changed != 23 {
		t.Errorf("resumed counts = %+v", c)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM items WHERE w = v`).Scan(&copied); err != nil || copied != 23 {
		t.Errorf("rows copied = %d, %v", copied, err)
	}
}

// testFence is a batch.Fence whose lease is lost after a number of checks.
type testFence struct {
	checks, keep int
}

func (f *testFence) Check(context.Context) error {
	f.checks++
	if f.checks > f.keep {
		return report.E(report.CodeLockLost, "lease lost (test)")
	}
	return nil
}

func (f *testFence) Token() int64 { return 42 }

// HSet and Del are the Redis side of batch.Fence; the SQL phase never
// calls them.
func (f *testFence) HSet(context.Context, string, map[string]string) error {
	return errors.New("testFence: HSet is not for the SQL phase")
}

func (f *testFence) Del(context.Context, ...string) error {
	return errors.New("testFence: Del is not for the SQL phase")
}

func TestLostLeaseStopsBeforeCommit(t *testing.T) {
	ctx, conn, p := toyAtOne(t, 20)
	// Checks: before migration 2, the commit of its "add" step, batch 1,
	// batch 2; the fifth (batch 3's commit) finds the lease gone.
	fence := &testFence{keep: 4}
	lines, err := p.Apply(ctx, &batch.Run{ID: "r1", Fence: fence})
	wantCode(t, err, report.CodeLockLost)
	if states(lines) != "1:applied 2:interrupted 3:pending" || !lines[1].Resumable {
		t.Fatalf("lines = %s %+v", states(lines), lines[1])
	}
	var done int64
	var token int64
	if err := conn.QueryRow(ctx, `SELECT done, fence_token FROM outpost_migrate_checkpoint WHERE version = 2`).Scan(&done, &token); err != nil {
		t.Fatal(err)
	}
	var copied int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM items WHERE w = v`).Scan(&copied); err != nil {
		t.Fatal(err)
	}
	if done != 10 || copied != 10 || token != 42 {
		t.Errorf("after the lost lease: checkpoint done %d, rows copied %d, token %d; want 10, 10, 42", done, copied, token)
	}
	// A lease lost before a migration starts stops before it.
	_, err = p.Apply(ctx, &batch.Run{ID: "r2", Fence: &testFence{keep: 0}})
	wantCode(t, err, report.CodeLockLost)
	if recorded(t, conn) != "2/true" {
		t.Errorf("recorded = %s", recorded(t, conn))
	}
}
