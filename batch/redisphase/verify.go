package redisphase

import (
	"context"
	"fmt"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Verify implements batch.Phase.
func (p *Phase) Verify(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	applied := p.applied(states)
	if len(applied) == 0 {
		return lines, nil
	}
	res, err := p.verifyPass(ctx, run, applied, "verify", run.Sample)
	if err != nil {
		return lines, err
	}
	var drift int64
	for _, name := range applied {
		l, c := countLine(lines, name, res.Tally)
		if c.Failed > 0 {
			l.State = report.StateDrift
			drift += c.Failed
		} else {
			l.State = report.StateVerified
		}
		if run.Sample > 0 {
			l.Reason = fmt.Sprintf("spot check of about %d keys", run.Sample)
		}
	}
	if drift > 0 {
		return lines, report.E(report.CodeDrift, "verify found %d redis records that do not match", drift)
	}
	return lines, nil
}

// applied names the migrations recorded applied, in order.
func (p *Phase) applied(states map[string]state) []string {
	var out []string
	for _, m := range p.set.Migrations() {
		if states[m.Name].status == "applied" {
			out = append(out, m.Name)
		}
	}
	return out
}

// verifyPass runs the read-only verify step of applied over the keyspace,
// over about sample keys when sample > 0.
func (p *Phase) verifyPass(ctx context.Context, run *batch.Run, applied []string, label string, sample int) (*scan.Result, error) {
	ex := p.executor(run, "", nil)
	ex.Label = label
	if sample > 0 {
		ex.Limit = int64(sample)
		// The limit is checked between chunks: keep a chunk no larger
		// than the sample.
		if ex.Spec.Count <= 0 || ex.Spec.Count > ex.Limit {
			ex.Spec.Count = ex.Limit
		}
	}
	return fullPass(ctx, ex, p.set.Verify(applied))
}

// fullPass runs ex over step. Keys may have been missed when the cluster
// moved during the pass, so a pass that must see every key (verify,
// confirm, cleanup, repair) then fails with the retryable resharding error.
func fullPass(ctx context.Context, ex *scan.Executor, step scan.Step) (*scan.Result, error) {
	res, err := ex.Pass(ctx, step)
	if err == nil && res.TopologyChanged {
		err = reshardingError(res.TopologyWhy, nil)
	}
	return res, err
}
