package stores

import (
	"context"
	"time"
)

// Wait calls try until it succeeds, fails with an error that retry does not
// accept, or waitFor has passed (the next attempt would start after it), and
// returns try's last error, or ctx's when ctx ends between attempts. Before
// each retry it calls warn with the attempt that failed (from 1), its error
// and the time left. Attempts are spaced 250ms apart, doubling up to 5s:
// a store that is still starting is found soon, one that stays down is not
// hammered. It is the --wait-for loop of every store.
func Wait(ctx context.Context, waitFor time.Duration, try func() error, retry func(error) bool, warn func(attempt int, err error, left time.Duration)) error {
	deadline := time.Now().Add(waitFor)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil || !retry(err) || time.Now().Add(delay).After(deadline) {
			return err
		}
		warn(attempt, err, time.Until(deadline))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
