package redisphase

import (
	"context"
	"fmt"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Repairer is a Set that can redo the records of applied migrations.
type Repairer interface {
	// Repair returns a step that makes every record of the applied
	// migrations right again where it is missing or wrong (compare-and-
	// set, never over a record changed since it was read), counting under
	// each migration's name: Changed the records redone, Unchanged those
	// already right, Failed (with issues) those it cannot redo.
	Repair(applied []string) scan.Step
}

// repair is apply --repair over the applied migrations: one fenced pass of
// the Set's repair step, then a verify pass; the run fails with DRIFT when
// records still do not verify, so an operator is never left between
// up_to_date and verify's exit 3.
func (p *Phase) repair(ctx context.Context, run *batch.Run, lines []report.Migration, states map[string]state) ([]report.Migration, error) {
	r, ok := p.set.(Repairer)
	if !ok {
		return lines, nil
	}
	applied := p.applied(states)
	if len(applied) == 0 {
		return lines, nil
	}
	ex := p.executor(run, "", nil)
	ex.Label = "repair"
	if f, ok := run.Fence.(scan.Fence); ok {
		ex.Fence = f
	}
	res, err := fullPass(ctx, ex, r.Repair(applied))
	if err != nil {
		return lines, err
	}
	vres, err := p.verifyPass(ctx, run, applied, "verify after repair", 0)
	if err != nil {
		return lines, err
	}
	var drift int64
	for _, name := range applied {
		l, c := countLine(lines, name, res.Tally)
		v := vres.Tally.Counts(name)
		if v.Failed > 0 {
			l.Issues, l.IssuesTotal = vres.Tally.Issues(name)
			l.State = report.StateDrift
		}
		l.Reason = fmt.Sprintf("repair: %d records redone, %d already right, %d could not be redone; verify after it: %d checked, %d failed",
			c.Changed, c.Unchanged, c.Failed, v.Checked, v.Failed)
		drift += v.Failed
	}
	if drift > 0 {
		return lines, report.E(report.CodeDrift, "after repair, %d redis records still do not verify (see issues)", drift)
	}
	return lines, nil
}
