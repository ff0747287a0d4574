package lock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/poll"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// Acquire takes the lock named by opts.Key, waiting up to opts.Wait while it
// is busy. It returns a report.CodeLockHeld error naming the holder when the
// lock is still busy after the wait, CodeUnreachable or CodePermission when
// Redis does not answer or refuses, and an error wrapping
// context.Cause(ctx) when ctx ends the wait (so a cancellation cause that
// carries a report code classifies it). The lease then renews itself until
// Release or until it is lost; ctx does not bound it.
func Acquire(ctx context.Context, client redis.UniversalClient, opts Options) (*Lease, error) {
	ttl, renewEvery, err := opts.check()
	if err != nil {
		return nil, err
	}
	events := opts.Events
	if events == nil {
		events = progress.Nop
	}
	a := acquirer{client: client, opts: opts, fence: SlotKey(opts.Key, "fence"), ttlMS: strconv.FormatInt(ttl.Milliseconds(), 10)}
	start := time.Now()
	var last *attempt
	var lastRaw string
	var lastReport time.Time
	// Retried with backoff and jitter from 100 ms to 5 s while another
	// holder has the lock; Wait 0 tries once.
	err = poll.Policy{Wait: opts.Wait, First: waitMin, Max: waitMax, Jitter: true}.Until(ctx,
		func(int) (bool, error) {
			var err error
			last, err = a.try(ctx)
			return err == nil && last.busy == nil, err
		},
		func(_ int, left time.Duration) {
			if last.raw == lastRaw && time.Since(lastReport) < waitReportGap {
				return
			}
			lastRaw, lastReport = last.raw, time.Now()
			events.Emit(progress.Event{
				Level: "warn", Event: progress.LockWaiting,
				Msg:       heldMessage(last.busy) + fmt.Sprintf("; waiting up to %s", left.Round(time.Second)),
				ElapsedMS: time.Since(start).Milliseconds(),
				Fields:    lockFields(last.busy),
			})
		})
	var ended *poll.Ended
	switch {
	case errors.Is(err, poll.ErrExpired):
		return nil, heldError(last.busy, time.Since(start))
	case errors.As(err, &ended):
		return nil, fmt.Errorf("waiting for the migration lock (%s): %w", heldMessage(last.busy), ended.Cause)
	case err != nil:
		return nil, err
	}
	return startLease(client, opts.Key, last, ttl, renewEvery, events, time.Since(start)), nil
}

// check validates opts and returns the lease's TTL and renewal period.
func (opts Options) check() (ttl, renewEvery time.Duration, err error) {
	if err := checkKey(opts.Key); err != nil {
		return 0, 0, err
	}
	if opts.Holder.RunID == "" {
		// Without it the value would read as foreign, even to this tool.
		return 0, 0, report.E(report.CodeInternal, "lock: the holder has no run id")
	}
	ttl = opts.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	renewEvery = opts.RenewEvery
	if renewEvery <= 0 {
		renewEvery = ttl / 3
	}
	if renewEvery >= ttl || ttl < time.Millisecond {
		return 0, 0, report.E(report.CodeInternal, "lock: renewal period %s must be shorter than the TTL %s", renewEvery, ttl)
	}
	return ttl, renewEvery, nil
}

// acquirer runs the acquire script for one Acquire.
type acquirer struct {
	client redis.UniversalClient
	opts   Options
	fence  string
	ttlMS  string
}

// attempt is what one run of the acquire script found: the lock is ours
// (busy nil, token set) or someone else's (busy describes it).
type attempt struct {
	holder report.Holder
	at     time.Time
	raw    string
	token  int64
	busy   *report.Lock
}

// try runs the acquire script once.
func (a acquirer) try(ctx context.Context) (*attempt, error) {
	now := time.Now()
	holder := fillHolder(a.opts.Holder, now)
	nonce := newNonce()
	pre, post, err := template(holder, nonce)
	if err != nil {
		return nil, err
	}
	key := a.opts.Key
	res, err := luascript.Run(ctx, a.client, acquireScript, []string{key, a.fence}, pre, post, a.ttlMS).Slice()
	if err != nil {
		undoLostAcquire(ctx, a.client, key, pre, post)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("acquiring the migration lock %s: %w", key, context.Cause(ctx))
		}
		return nil, classify(err, "acquiring the migration lock %s", key)
	}
	if len(res) < 3 {
		return nil, fmt.Errorf("lock: unexpected acquire reply %v", res)
	}
	at := &attempt{holder: holder, at: now}
	at.raw, _ = res[1].(string)
	if n, _ := res[0].(int64); n == 1 {
		at.token, _ = res[2].(int64)
	} else if v, ours := parseValue(at.raw); ours && v.Nonce == nonce {
		// Our own write, seen again because the client retried the
		// script after a network error: we hold it.
		at.token = v.Token
	} else {
		pttl, _ := res[2].(int64)
		var typ string
		if len(res) > 3 {
			typ, _ = res[3].(string)
		}
		at.busy = describeLock(key, at.raw, typ, pttl, time.Now())
	}
	return at, nil
}

// startLease makes the lease of a won attempt, starts its renewal and
// announces it.
func startLease(client redis.UniversalClient, key string, won *attempt, ttl, renewEvery time.Duration, events progress.Sink, waited time.Duration) *Lease {
	holder := won.holder
	holder.Token = won.token
	l := &Lease{
		client: client, key: key, value: won.raw, token: won.token, holder: holder,
		ttl: ttl, renewEvery: renewEvery, events: events,
		waited: waited, acquiredAt: won.at,
		state: StateAcquired, deadline: won.at.Add(ttl),
		lost: make(chan struct{}), done: make(chan struct{}),
	}
	rctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	go l.renewLoop(rctx)
	events.Emit(progress.Event{
		Level: "info", Event: progress.LockAcquired,
		Msg:       fmt.Sprintf("acquired the migration lock %s (token %d)", l.key, l.token),
		ElapsedMS: l.waited.Milliseconds(),
		Fields:    map[string]any{"key": l.key, "token": l.token, "waited_ms": l.waited.Milliseconds(), "ttl_ms": ttl.Milliseconds()},
	})
	return l
}

// undoLostAcquire deletes the value an acquisition attempt may have written
// although its reply never arrived (a lost connection after the script ran):
// left there it would block every run for an hour in our name. Best effort.
func undoLostAcquire(ctx context.Context, client redis.UniversalClient, key, pre, post string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = luascript.Run(ctx, client, undoScript, []string{key}, pre, post).Err()
}

// undoScript deletes KEYS[1] when it holds ARGV[1] .. <token> .. ARGV[2];
// the nonce in the template makes that our attempt's value and no other.
var undoScript = redis.NewScript(current + `
local v, t = current(KEYS[1])
if t == 'string' and #v > #ARGV[1] + #ARGV[2]
   and string.sub(v, 1, #ARGV[1]) == ARGV[1]
   and string.sub(v, -#ARGV[2]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func lockFields(l *report.Lock) map[string]any {
	f := map[string]any{"key": l.Key, "foreign": l.Foreign}
	if l.Holder != nil {
		f["holder_run_id"] = l.Holder.RunID
		f["holder_host"] = l.Holder.Host
		f["holder_pid"] = l.Holder.PID
		f["holder_token"] = l.Holder.Token
	}
	if l.TTLMS != nil {
		f["ttl_ms"] = *l.TTLMS
	}
	return f
}
