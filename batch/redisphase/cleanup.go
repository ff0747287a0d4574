package redisphase

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// Cleanup implements batch.Phase: removes legacy keys whose copies verify.
func (p *Phase) Cleanup(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	step, requires := p.set.Cleanup()
	for _, r := range requires {
		st := states[r]
		if st.status == "not_applicable" {
			i := indexOf(lines, r)
			lines[i].Reason = "nothing to clean: " + st.reason
			return lines, nil
		}
		if st.status != "applied" {
			return lines, report.E(report.CodeDataRefused, "cleanup refuses to run: redis/%s is not applied; run apply (and verify) first", r).With("migration", "redis/"+r)
		}
	}
	ex := p.executor(run, "cleanup", run.Fence)
	ex.Fingerprint = "cleanup"
	ex.Label = "cleanup"
	// Legacy keys may have been missed on a cluster that moved: cleanup is
	// then not done.
	res, err := fullPass(ctx, ex, step)
	var failed int64
	for _, name := range requires {
		if res == nil {
			continue
		}
		l, c := countLine(lines, name, res.Tally)
		l.Progress = &report.Progress{RunID: run.ID, Resumed: res.Resumed, Nodes: res.Nodes}
		failed += c.Failed
		if c.Deleted > 0 && c.Failed == 0 {
			l.State = report.StateCleaned
		}
		if err != nil {
			l.State = report.StateInterrupted
			l.Resumable = true
		}
	}
	if err != nil {
		return lines, err
	}
	if err := p.clear(ctx, ex, "cleanup"); err != nil {
		return lines, err
	}
	if failed > 0 {
		return lines, report.E(report.CodeDrift, "cleanup kept %d legacy keys whose copies do not verify (see issues)", failed)
	}
	if err := p.c.HSet(ctx, p.StateKey(requires[0]), "cleaned_at", time.Now().UTC().Format(time.RFC3339), "cleaned_by", run.ID).Err(); err != nil {
		return lines, rediserr.Classify(err, "record cleanup")
	}
	return lines, nil
}

// CleanupScope says what cleanup would remove, for the question asked
// before it: the migration whose preserved keys it removes and how many
// keys that migration recorded as copied (0 when it recorded none). It
// reads one hash and changes nothing.
func (p *Phase) CleanupScope(ctx context.Context) (migration string, copied int64, err error) {
	_, requires := p.set.Cleanup()
	if len(requires) == 0 {
		return "", 0, nil
	}
	v, err := p.c.HGet(ctx, p.StateKey(requires[0]), "changed").Result()
	if err != nil && err != redis.Nil {
		return "", 0, rediserr.Classify(err, "read migration state "+requires[0])
	}
	copied, _ = strconv.ParseInt(v, 10, 64)
	return "redis/" + requires[0], copied, nil
}
