package stores

import (
	"context"
	"errors"
	"time"

	"github.com/outpost-migrate/outpost/batch/poll"
)

// Wait calls try until it succeeds, fails with an error that retry does not
// accept, or waitFor has passed (the last attempt is made at that moment),
// and returns try's last error, or ctx's cause when ctx ends between
// attempts. Before each retry it calls warn with the attempt that failed
// (from 1), its error and the time left. Attempts are spaced 250ms apart,
// doubling up to 5s: a store that is still starting is found soon, one that
// stays down is not hammered. It is the --wait-for loop of every store; 0
// tries once.
func Wait(ctx context.Context, waitFor time.Duration, try func() error, retry func(error) bool, warn func(attempt int, err error, left time.Duration)) error {
	var last error
	err := poll.Policy{Wait: waitFor, First: 250 * time.Millisecond, Max: 5 * time.Second}.Until(ctx,
		func(int) (bool, error) {
			last = try()
			if last != nil && retry(last) {
				return false, nil
			}
			return true, last
		},
		func(attempt int, left time.Duration) { warn(attempt, last, left) })
	if errors.Is(err, poll.ErrExpired) {
		return last
	}
	return err
}
