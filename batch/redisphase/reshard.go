package redisphase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/poll"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// errResharding marks the outcome of a pass that ran while the cluster's
// slots moved.
var errResharding = errors.New("the cluster is resharding")

// reshardingError is the retryable outcome of a run whose last pass saw
// the cluster move: keys may have been missed, so nothing is recorded
// applied, and a rerun (which the saved progress makes cheap) is safe.
func reshardingError(why string, cause error) error {
	err := errResharding
	if cause != nil {
		err = errors.Join(errResharding, cause)
	}
	msg := "the cluster is resharding; rerun when it settles"
	if why != "" {
		msg += " (" + why + ")"
	}
	return report.Wrap(report.CodeTemporary, err, "%s", msg)
}

func isResharding(err error) bool {
	return errors.Is(err, errResharding) || rediserr.Resharding(err)
}

// reshardAgain decides what a pass that saw the cluster move (why, or a
// redirect error err) leads to: another pass while passes are left (true),
// else the retryable resharding error. Any other error is returned as it
// is. Between passes it gives the cluster a moment to settle.
func (p *Phase) reshardAgain(ctx context.Context, run *batch.Run, pass int, why string, err error) (bool, error) {
	if err != nil && !isResharding(err) {
		return false, err
	}
	if err != nil && why == "" {
		why = err.Error()
	}
	rerr := err
	if rerr == nil || !errors.Is(rerr, errResharding) {
		rerr = reshardingError(why, err)
	}
	if pass >= p.opts.MaxPasses {
		return false, rerr
	}
	if run != nil && run.Stopped() != nil {
		return false, run.Stopped()
	}
	progress.Warnf(run.Events, "the cluster moved during pass %d (%s); another pass", pass, why)
	if err := poll.Sleep(ctx, min(time.Duration(pass)*300*time.Millisecond, 2*time.Second)); err != nil {
		return false, fmt.Errorf("waiting for the cluster to settle: %w", err)
	}
	return true, nil
}
