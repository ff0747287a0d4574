package clickhousemigrations

import (
	"context"
	"testing"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// Through the runner, as cmd drives it: plan, apply, verify, a drift and
// status produce reports that validate against the published schemas
// (backend "clickhouse", the planned statements, targets.clickhouse), with
// the exit codes of report/codes.go.
func TestRunnerReportsValidate(t *testing.T) {
	db := servertest.ClickHouseDB(t)
	p := newPhase(t, db.ClickHouseServer, db.Name, "prod")
	r := &batch.Runner{Phases: []batch.Phase{p}, RunID: "r-test"}
	ctx := context.Background()
	do := func(kind, command string, fn func(rep *report.Report) error, wantExit int) *report.Report {
		t.Helper()
		rep := report.New(kind, command, report.Tool{Name: "outpost", Version: "test"})
		rep.Targets = &report.Targets{Scope: []string{"sql"}, DeploymentID: "prod", ClickHouse: p.Target()}
		rep.Finish(fn(rep), true)
		if err := report.Validate(rep); err != nil {
			t.Fatalf("%s report does not validate: %v", command, err)
		}
		if rep.ExitCode != wantExit {
			t.Fatalf("%s: exit %d (%s), want %d", command, rep.ExitCode, rep.Msg, wantExit)
		}
		return rep
	}
	plan := do(report.KindPlan, "plan", func(rep *report.Report) error { return r.Plan(ctx, rep) }, 2)
	if plan.Migrations[0].ID != "clickhouse/000001_init" || len(plan.Migrations[2].Statements) != 2 {
		t.Fatalf("plan lines: %+v", plan.Migrations)
	}
	apply := do(report.KindApply, "apply", func(rep *report.Report) error { return r.Apply(ctx, rep, batch.Options{}) }, 0)
	if apply.Outcome != report.OutcomeApplied || apply.Targets.ClickHouse.VersionTable != "prod_schema_migrations" {
		t.Fatalf("apply: %s %+v", apply.Outcome, apply.Targets.ClickHouse)
	}
	do(report.KindVerify, "verify", func(rep *report.Report) error { return r.Verify(ctx, rep, batch.Options{}) }, 0)
	db.Exec(t, "ALTER TABLE "+db.Name+".prod_events MODIFY COLUMN topic LowCardinality(String)")
	drift := do(report.KindVerify, "verify", func(rep *report.Report) error { return r.Verify(ctx, rep, batch.Options{}) }, 3)
	if is := drift.Migrations[2].Issues; len(is) != 1 || is[0].Actual != "LowCardinality(String)" {
		t.Fatalf("drift issues: %+v", is)
	}
	do(report.KindStatus, "status", func(rep *report.Report) error { return r.Status(ctx, rep, batch.Options{}) }, 0)
}
