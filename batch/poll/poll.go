// Package poll is the one wait-and-retry loop of the tool: attempts spaced
// by a growing pause, until one succeeds, the wait is over or the context
// ends. The store waits (--wait-for), the Redis lease and PostgreSQL
// advisory lock waits (--lock-timeout), status --wait and the Nomad
// runner's retries of transient errors all run on it, each with its own
// policy. It imports nothing of ours, so every package may use it.
package poll

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy bounds a wait and spaces its attempts.
type Policy struct {
	// Wait is how long after the start attempts may still be made: the
	// pause before the last attempt is cut so that it is made at the
	// deadline. 0 or less, with Tries 0: one attempt.
	Wait time.Duration
	// Tries bounds the number of attempts; 0: no bound but Wait.
	Tries int
	// First is the first pause; each next pause is twice the one before,
	// up to Max (0: First, constant pauses).
	First time.Duration
	Max   time.Duration
	// Jitter draws each pause from [p/2, p], so that waiters that started
	// together do not retry in step.
	Jitter bool
}

// ErrExpired is Until's error when the last attempt allowed was not done.
var ErrExpired = errors.New("poll: the wait is over")

// Ended is Until's error when ctx ended during a pause; it unwraps to
// context.Cause(ctx), so a cause that carries an exit code classifies it.
type Ended struct{ Cause error }

func (e *Ended) Error() string { return e.Cause.Error() }
func (e *Ended) Unwrap() error { return e.Cause }

// Until calls try (attempt from 1) until it returns done or an error (then
// Until returns that error), the policy allows no more attempts (ErrExpired)
// or ctx ends during a pause (*Ended). Before each pause it calls retrying,
// when not nil, with the attempt that was not done and the time left
// before the deadline (0 without one). The deadline is checked after an
// attempt, so an attempt that took long (a dial timeout) counts against it.
func (p Policy) Until(ctx context.Context, try func(attempt int) (done bool, err error), retrying func(attempt int, left time.Duration)) error {
	var deadline time.Time
	if p.Wait > 0 {
		deadline = time.Now().Add(p.Wait)
	}
	pause := p.First
	for attempt := 1; ; attempt++ {
		done, err := try(attempt)
		if err != nil || done {
			return err
		}
		var left time.Duration
		if !deadline.IsZero() {
			left = time.Until(deadline)
		}
		over := !deadline.IsZero() && left <= 0
		if p.Tries > 0 {
			over = over || attempt >= p.Tries
		} else if deadline.IsZero() {
			over = true // neither bound: one attempt
		}
		if over {
			return ErrExpired
		}
		if retrying != nil {
			retrying(attempt, left)
		}
		d := pause
		if p.Jitter {
			d = d/2 + rand.N(d/2+1)
		}
		if !deadline.IsZero() {
			d = min(d, left)
		}
		if err := Sleep(ctx, d); err != nil {
			return &Ended{Cause: err}
		}
		if pause < p.Max {
			pause = min(2*pause, p.Max)
		}
	}
}

// Sleep pauses for d, or returns context.Cause(ctx) when ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
