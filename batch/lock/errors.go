package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/report"
)

// classify wraps a Redis error with what was being done and the class of
// failure: credentials or ACL refused → CodePermission; a server that is
// there but cannot serve (loading, cluster down) or no answer at all →
// CodeUnreachable. Context errors stay unclassified and wrapped, so the
// caller's cancellation cause decides (a timeout, an interrupt). Other
// server replies (WRONGTYPE on the fence counter, a script error) are left
// unclassified too: nothing about them is known here.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", msg, err)
	case redis.IsAuthError(err) || redis.IsPermissionError(err) || scriptACLError(err):
		return report.Wrap(report.CodePermission, err, "%s", msg)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if redis.IsLoadingError(err) || redis.IsClusterDownError(err) || redis.IsMasterDownError(err) || redis.IsTryAgainError(err) {
			return report.Wrap(report.CodeUnreachable, err, "%s", msg)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	return report.Wrap(report.CodeUnreachable, err, "%s", msg)
}

// scriptACLError recognises an ACL refusal raised inside a script, which
// Redis 7.0 words as "ERR The user executing the script can't run this
// command ..." (or "... can't access at least one of the keys ...") and later
// versions as "NOPERM ..." somewhere in the message.
func scriptACLError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.Contains(msg, "user executing the script can't") || strings.Contains(msg, "NOPERM")
}

// heldError is the LOCK_HELD failure: it names the holder in the message and
// puts it in the details ("holder": the report.Holder of a lock this tool
// wrote, or {"foreign": true, "ttl_ms": …} for any other value).
func heldError(busy *report.Lock, waited time.Duration) error {
	msg := heldMessage(busy)
	if waited > 0 {
		msg += fmt.Sprintf("; gave up after waiting %s (--lock-timeout)", waited.Round(time.Millisecond))
	}
	msg += "; if no migration is running, remove it with `outpost migrate unlock --yes`"
	e := report.E(report.CodeLockHeld, "%s", msg)
	if busy.Holder != nil {
		e.With("holder", *busy.Holder)
	} else {
		foreign := map[string]any{"foreign": true}
		if busy.TTLMS != nil {
			foreign["ttl_ms"] = *busy.TTLMS
		}
		e.With("holder", foreign)
	}
	return e.With("lock", busy).With("waited_ms", waited.Milliseconds())
}

// heldMessage says who holds the lock and until when.
func heldMessage(l *report.Lock) string {
	who := "another program (a value this tool did not write, e.g. Outpost's own migrator)"
	if l.Holder != nil {
		who = describeHolder(*l.Holder)
	}
	return fmt.Sprintf("the migration lock %s is held by %s, %s", l.Key, who, expiry(l.TTLMS))
}

func expiry(ttl *int64) string {
	switch {
	case ttl == nil:
		return "expiry unknown"
	case *ttl < 0:
		return "and it never expires (it has no TTL)"
	default:
		return "expires in " + (time.Duration(*ttl) * time.Millisecond).Round(time.Second).String()
	}
}

// nowHolds describes what the lock key holds instead of our value, for a
// lost lease.
func nowHolds(raw, typ string) string {
	switch typ {
	case "none", "":
		return "the key is gone (it expired, or someone ran unlock)"
	case "string":
		if v, ok := parseValue(raw); ok {
			return "it is now held by " + describeHolder(v.Holder) + fmt.Sprintf(" with token %d", v.Token)
		}
		return "it now holds a value this tool did not write (Outpost's own migrator?)"
	default:
		return "the key now holds a " + typ
	}
}
