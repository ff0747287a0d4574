package sqlmigrations

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
)

// TestPlanSaysHowLongLocksAreHeld: plan names the migrations that hold
// ACCESS EXCLUSIVE on whole tables (5's finish step, 6 and 9), for how
// long by the tables' size; the estimate grows with the data, the
// prediction made at version 4 agrees with the measurement made once 5 has
// built attempts, and apply announces each locking step as it starts.
func TestPlanSaysHowLongLocksAreHeld(t *testing.T) {
	ctx := ctxLong(t)
	small, _, _ := seededAt4(t, seed.PGOptions{Events: 2000, DeliveriesPerEvent: 2, Seed: 3})
	db, _, _ := seededAt4(t, seed.PGOptions{Events: 20000, DeliveriesPerEvent: 2, OrphanRatio: 0.01, Seed: 3})

	lockLines := func(url string) []report.Migration {
		t.Helper()
		lines, err := newPhase(t, url, sqlphase.Options{}).Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		validLines(t, report.KindPlan, "plan", report.OutcomePending, lines, nil)
		return lines
	}
	lines, smallLines := lockLines(db.URL), lockLines(small.URL)
	for i, l := range lines {
		locks := l.Version == 5 || l.Version == 6 || l.Version == 9
		if got := l.ExclusiveLock != nil; got != locks {
			t.Fatalf("%s: exclusive lock %+v, want one: %v", l.ID, l.ExclusiveLock, locks)
		}
		if !locks {
			continue
		}
		lk := l.ExclusiveLock
		if lk.Mode != "ACCESS EXCLUSIVE" || lk.EstimatedMS <= 0 || lk.Bytes <= 0 || len(lk.Tables) == 0 || lk.Basis == "" {
			t.Errorf("%s: lock %+v", l.ID, lk)
		}
		if s := smallLines[i].ExclusiveLock; s.EstimatedMS*3 > lk.EstimatedMS || s.Bytes*3 > lk.Bytes {
			t.Errorf("%s: ten times the data, estimate %d ms (%d bytes) against %d ms (%d bytes)", l.ID, lk.EstimatedMS, lk.Bytes, s.EstimatedMS, s.Bytes)
		}
	}
	if l := lines[4].ExclusiveLock; l.Step != "finish" || strings.Join(l.Tables, ",") != "deliveries,events" {
		t.Errorf("5's lock = %+v", l)
	}
	if l := lines[8].ExclusiveLock; strings.Join(l.Tables, ",") != "attempts" {
		t.Errorf("9's lock = %+v", l)
	}
	r := report.New(report.KindPlan, "plan", report.Tool{Name: "outpost", Version: "test"})
	r.Migrations = lines
	var text bytes.Buffer
	if err := report.WriteText(&text, r, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "holds ACCESS EXCLUSIVE on events, attempts for ~") {
		t.Errorf("text plan does not show 6's lock:\n%s", text.String())
	}

	// Apply up to 5: the estimate of 6 is now measured on attempts, and
	// the one predicted at version 4 was within a factor of two of it.
	rec := &recorder{}
	var jsonLines bytes.Buffer
	sink := progress.Tee{rec, progress.NewLogger(&jsonLines, true, "run-locks", "apply")}
	p := newPhase(t, db.URL, sqlphase.Options{})
	if _, err := p.Apply(ctx, &batch.Run{ID: "to5", Target: "5", Events: sink}); err != nil {
		t.Fatal(err)
	}
	after := lockLines(db.URL)
	predicted, measured := lines[5].ExclusiveLock, after[5].ExclusiveLock
	if measured == nil || strings.Contains(measured.Basis, "predicted") ||
		predicted.Bytes > 2*measured.Bytes || measured.Bytes > 2*predicted.Bytes {
		t.Errorf("6's lock predicted at 4: %+v; measured at 5: %+v", predicted, measured)
	}
	if _, err := p.Apply(ctx, &batch.Run{ID: "rest", Events: sink}); err != nil {
		t.Fatal(err)
	}
	// Every event, the backfill's (rows done of rows to do, rate, ETA) and
	// the lock announcements included, is valid against the progress
	// schema.
	for _, line := range strings.Split(strings.TrimSpace(jsonLines.String()), "\n") {
		if err := report.ValidateEvent([]byte(line)); err != nil {
			t.Errorf("progress event %s: %v", line, err)
		}
	}
	var withETA int
	for _, e := range rec.batches() {
		if e.Counts.Rows > 0 && e.TotalEstimate > 0 && e.RatePerS > 0 && e.ETAS > 0 {
			withETA++
		}
	}
	if withETA == 0 {
		t.Error("no batch_done event carries rows done, rows to do, rate and ETA")
	}
	announced := map[string]bool{}
	for _, e := range rec.events {
		if e.Event == progress.StepStarted && e.Fields["lock"] == "ACCESS EXCLUSIVE" {
			if e.Fields["estimated_ms"].(int64) <= 0 || !strings.Contains(e.Msg, "holds ACCESS EXCLUSIVE") {
				t.Errorf("lock announcement %+v", e)
			}
			announced[e.Migration+"/"+e.Fields["step"].(string)] = true
		}
	}
	for _, want := range []string{"sql/000005_denormalize_attempts/finish", "sql/000006_data_jsonb_to_text/data_jsonb_to_text",
		"sql/000009_response_data_jsonb_to_text/response_data_jsonb_to_text"} {
		if !announced[want] {
			t.Errorf("no step_started announcing the lock of %s (got %v)", want, announced)
		}
	}
	if len(announced) != 3 {
		t.Errorf("locks announced: %v", announced)
	}
}
