package lock

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// Defaults.
const (
	// DefaultTTL bounds how long a crashed holder blocks everyone; it is
	// what Outpost uses for the same key.
	DefaultTTL = time.Hour
	// DefaultWait is the --lock-timeout default (see the package doc for
	// why 30 s).
	DefaultWait = 30 * time.Second

	waitMin       = 100 * time.Millisecond
	waitMax       = 5 * time.Second
	waitReportGap = 5 * time.Second // at most one lock_waiting event per gap for the same holder
	// releaseTimeout bounds Release, which ignores cancellation because it
	// runs at shutdown, after a signal has cancelled the run's context.
	releaseTimeout = 10 * time.Second
	// cleanupTimeout bounds the attempt to undo an acquisition whose reply
	// was lost.
	cleanupTimeout = 2 * time.Second
)

// Lease states, as report.Lock.State gives them.
const (
	StateFree     = "free"
	StateHeld     = "held"
	StateAcquired = "acquired"
	StateReleased = "released"
	StateRemoved  = "removed"
	StateLost     = "lost"
)

// Options configure Acquire.
type Options struct {
	// Key is the lock key, Key(prefix). Required.
	Key string
	// Holder names this run: the caller sets RunID (required), Command and
	// ToolVersion; Acquire fills Host, PID, StartedAt (the time of
	// acquisition) and the Nomad/Kubernetes fields when they are empty.
	// Token is set by Acquire.
	Holder report.Holder
	// TTL of the lease; DefaultTTL when 0.
	TTL time.Duration
	// Wait is how long to wait for a busy lock (--lock-timeout), retrying
	// with backoff and jitter from 100 ms to 5 s. 0 (or less) tries once.
	Wait time.Duration
	// RenewEvery is the renewal period; TTL/3 when 0. Must be below TTL.
	RenewEvery time.Duration
	// Events receives lock_waiting, lock_acquired, lock_renewed, lock_lost
	// and lock_released events; nil drops them.
	Events progress.Sink
}

// Lease is a held migration lock. See the package doc for its life cycle.
type Lease struct {
	client     redis.UniversalClient
	key        string
	value      string
	token      int64
	holder     report.Holder
	ttl        time.Duration
	renewEvery time.Duration
	events     progress.Sink
	waited     time.Duration
	acquiredAt time.Time

	mu       sync.Mutex
	state    string
	deadline time.Time // when Redis expires the key unless renewed again
	renewals int64
	lostErr  error

	lost     chan struct{}
	stopOnce sync.Once
	stop     context.CancelFunc
	done     chan struct{}
	release  sync.Mutex // serialises Release calls
}

// renewLoop extends the lease every renewEvery until stopped or lost. A
// failed renewal is retried with backoff until the deadline, the moment
// Redis expires the key if it never heard from us; a renewal that finds
// another value (or none) loses the lease at once.
func (l *Lease) renewLoop(ctx context.Context) {
	defer close(l.done)
	ttlMS := strconv.FormatInt(l.ttl.Milliseconds(), 10)
	timer := time.NewTimer(l.renewEvery)
	defer timer.Stop()
	backoff := time.Duration(0)
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		sent := time.Now()
		deadline := l.deadlineAt()
		if !sent.Before(deadline) {
			// Also reached without errors when the process was suspended
			// (a laptop asleep) past the deadline: Redis has expired the
			// key by its own clock, so the lease is gone either way.
			e := report.E(report.CodeLockLost,
				"lost the migration lock %s (token %d): could not renew it before its TTL of %s ran out", l.key, l.token, l.ttl)
			e.Err = lastErr
			l.markLost(e.With("key", l.key).With("token", l.token))
			return
		}
		cctx, cancel := context.WithDeadline(ctx, deadline)
		res, err := luascript.Run(cctx, l.client, renewScript, []string{l.key}, l.value, ttlMS).Slice()
		cancel()
		if ctx.Err() != nil {
			return // Release stopped us; whatever happened is Release's business
		}
		var ok bool
		var raw, typ string
		if err == nil {
			ok, raw, typ, err = fenceReply(res)
		}
		if err != nil {
			if lastErr == nil {
				l.events.Emit(progress.Event{Level: "warn", Event: progress.Log,
					Msg: fmt.Sprintf("renewing the migration lock %s failed, retrying until it would expire in %s: %v",
						l.key, time.Until(deadline).Round(time.Millisecond), err)})
			}
			lastErr = err
			backoff = min(max(2*backoff, waitMin), l.renewEvery, waitMax)
			timer.Reset(min(backoff, max(time.Until(deadline), 0)))
			continue
		}
		if !ok {
			l.markLost(l.lostError(raw, typ))
			return
		}
		l.mu.Lock()
		l.deadline = sent.Add(l.ttl)
		l.renewals++
		n := l.renewals
		l.mu.Unlock()
		l.events.Emit(progress.Event{Level: "info", Event: progress.LockRenewed,
			Msg:    fmt.Sprintf("renewed the migration lock %s (token %d)", l.key, l.token),
			Fields: map[string]any{"key": l.key, "token": l.token, "renewals": n, "ttl_ms": l.ttl.Milliseconds()}})
		backoff, lastErr = 0, nil
		timer.Reset(l.renewEvery)
	}
}

func (l *Lease) deadlineAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

func (l *Lease) lostError(raw, typ string) error {
	return report.E(report.CodeLockLost, "lost the migration lock %s (token %d): %s", l.key, l.token, nowHolds(raw, typ)).
		With("key", l.key).With("token", l.token)
}

// markLost moves an acquired lease to lost once: closes Lost(), records the
// error, emits lock_lost. A released lease stays released.
func (l *Lease) markLost(err error) {
	l.mu.Lock()
	if l.state != StateAcquired {
		l.mu.Unlock()
		return
	}
	l.state = StateLost
	l.lostErr = err
	close(l.lost)
	l.mu.Unlock()
	l.events.Emit(progress.Event{Level: "error", Event: progress.LockLost, Msg: err.Error(),
		Fields: map[string]any{"key": l.key, "token": l.token}})
}

// stopRenewal stops the renewal goroutine and waits for it.
func (l *Lease) stopRenewal() {
	l.stopOnce.Do(l.stop)
	<-l.done
}

// usable is nil while the lease is held, else the reason it cannot fence.
func (l *Lease) usable() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case StateAcquired:
		return nil
	case StateLost:
		return l.lostErr
	default:
		return report.E(report.CodeInternal, "lock: the lease on %s was already released", l.key)
	}
}

// validMargin is how long before the key's expiry, as this process's clock
// computes it from the last confirmed renewal, Valid stops trusting the
// lease: room for clock drift between this host and Redis and for a write
// in flight. A fifth of the TTL, at most a minute; renewals come every
// third of the TTL, so a healthy lease never gets near it.
func (l *Lease) validMargin() time.Duration { return min(l.ttl/5, time.Minute) }

// Valid is nil while the lease is held and Redis cannot have expired it
// yet: the last renewal Redis confirmed was sent less than TTL minus a
// margin ago. It reads the monotonic clock (which runs on while the process
// is stopped by SIGSTOP) and the wall clock (which catches up after the
// host slept) and trusts neither alone; no round trip, so it is cheap enough
// to call before every write. Past the deadline the lease is lost for good.
func (l *Lease) Valid() error {
	if err := l.usable(); err != nil {
		return err
	}
	deadline := l.deadlineAt().Add(-l.validMargin())
	now := time.Now()
	if now.Before(deadline) && now.Round(0).Before(deadline.Round(0)) {
		return nil
	}
	l.markLost(report.E(report.CodeLockLost,
		"lost the migration lock %s (token %d): no renewal confirmed within its TTL of %s less a margin of %s (was this process paused?); nothing more is written",
		l.key, l.token, l.ttl, l.validMargin()).With("key", l.key).With("token", l.token))
	return l.usable()
}

// Guard is the lock key, this lease's value in it and the wall-clock time
// until which Valid trusts the lease, for scripts that check the lease in
// the same atomic step as a write.
func (l *Lease) Guard() (key, value string, until time.Time) {
	return l.key, l.value, l.deadlineAt().Add(-l.validMargin()).Round(0)
}

// Token is the fencing token: larger for every later acquisition.
func (l *Lease) Token() int64 { return l.token }

// Key is the lock key.
func (l *Lease) Key() string { return l.key }

// Holder is what the lock value says about this run.
func (l *Lease) Holder() report.Holder { return l.holder }

// Lost is closed when the lease is lost (not when it is released).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err is the report.CodeLockLost error once the lease is lost, else nil.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostErr
}

// Check returns nil while the lock still holds our value, and a
// report.CodeLockLost error once it does not (the lease is then lost for
// good). A Redis error is returned classified, without losing the lease.
// After Release it is a report.CodeInternal error.
func (l *Lease) Check(ctx context.Context) error {
	if err := l.usable(); err != nil {
		return err
	}
	v, err := l.client.Get(ctx, l.key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		l.markLost(l.lostError("", "none"))
		return l.usable()
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		l.markLost(l.lostError("", "non-string value"))
		return l.usable()
	case err != nil:
		return classify(err, "checking the migration lock %s", l.key)
	case v != l.value:
		l.markLost(l.lostError(v, "string"))
		return l.usable()
	}
	return nil
}

// HSet sets fields of hash key if and only if the lock still holds our value,
// in one script. key must be in the lock's hash slot (SlotKey). A lost lease
// makes it a report.CodeLockLost error that wrote nothing.
func (l *Lease) HSet(ctx context.Context, key string, values map[string]string) error {
	if err := checkSlot(l.key, key); err != nil {
		return err
	}
	if len(values) == 0 {
		return l.Check(ctx)
	}
	fields := make([]string, 0, len(values))
	for f := range values {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	args := make([]any, 0, 1+2*len(values))
	args = append(args, l.value)
	for _, f := range fields {
		args = append(args, f, values[f])
	}
	return l.fenced(ctx, hsetScript, []string{l.key, key}, args, "writing %s", key)
}

// Del deletes keys if and only if the lock still holds our value, in one
// script. The keys must be in the lock's hash slot (SlotKey).
func (l *Lease) Del(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := checkSlot(l.key, k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return l.Check(ctx)
	}
	return l.fenced(ctx, delScript, append([]string{l.key}, keys...), []any{l.value}, "deleting %v", keys)
}

func (l *Lease) fenced(ctx context.Context, s *redis.Script, keys []string, args []any, format string, a ...any) error {
	if err := l.usable(); err != nil {
		return err
	}
	res, err := luascript.Run(ctx, l.client, s, keys, args...).Slice()
	var ok bool
	var raw, typ string
	if err == nil {
		ok, raw, typ, err = fenceReply(res)
	}
	if err != nil {
		return classify(err, "fenced write under the migration lock %s: "+format, append([]any{l.key}, a...)...)
	}
	if !ok {
		l.markLost(l.lostError(raw, typ))
		return l.usable()
	}
	return nil
}

// Release stops renewal and deletes the lock if it still holds our value
// (compare-and-delete). It is idempotent, and does nothing to a lease already
// lost. It ignores ctx's cancellation (it runs at shutdown, typically after a
// signal cancelled the run) but gives up after 10 s. When the key holds
// someone else's value it is left alone and the lease reports itself lost;
// Release still returns nil, because the fenced writes already kept this run
// from writing after the loss. A key that is gone counts as released.
func (l *Lease) Release(ctx context.Context) error {
	l.release.Lock()
	defer l.release.Unlock()
	l.stopRenewal()
	if l.usable() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	res, err := luascript.Run(ctx, l.client, releaseScript, []string{l.key}, l.value).Slice()
	var ok bool
	var raw, typ string
	if err == nil {
		ok, raw, typ, err = fenceReply(res)
	}
	if err != nil {
		return classify(err, "releasing the migration lock %s (it expires on its own within %s)", l.key, l.ttl)
	}
	if !ok {
		// Someone else's value, or no key at all (expired, or removed by
		// unlock): either way the lease was lost before the release, even
		// when a fenced write noticed it before the renewal did.
		l.markLost(l.lostError(raw, typ))
		return nil
	}
	l.mu.Lock()
	l.state = StateReleased
	l.mu.Unlock()
	l.events.Emit(progress.Event{Level: "info", Event: progress.LockReleased,
		Msg:    fmt.Sprintf("released the migration lock %s (token %d)", l.key, l.token),
		Fields: map[string]any{"key": l.key, "token": l.token}})
	return nil
}

// Info describes the lease for the report.
func (l *Lease) Info() *report.Lock {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.holder
	age := time.Since(l.acquiredAt).Milliseconds()
	out := &report.Lock{
		Key: l.key, State: l.state, Holder: &h, AgeMS: &age,
		Token: l.token, Waited: l.waited.Milliseconds(), Renewals: l.renewals,
	}
	if l.state == StateAcquired {
		ttl := max(time.Until(l.deadline).Milliseconds(), 0)
		out.TTLMS = &ttl
	}
	return out
}
