package lock

import (
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// classify wraps a Redis error with what was being done and its class, as
// rediserr decides for every package: a loading or resharding server is
// temporary (75) here as everywhere else.
func classify(err error, format string, args ...any) error {
	return rediserr.Wrapf(err, format, args...)
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
