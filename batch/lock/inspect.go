package lock

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/report"
)

// describeLock turns what the lock key holds into a report.Lock in state
// held: the holder when this tool wrote the value, else Foreign (Outpost's
// bare token, or anything else) with no holder and no age. pttl is the
// key's PTTL (-1: no expiry).
func describeLock(key, raw, typ string, pttl int64, now time.Time) *report.Lock {
	l := &report.Lock{Key: key, State: StateHeld}
	if pttl >= 0 || pttl == -1 {
		l.TTLMS = &pttl
	}
	v, ours := parseValue(raw)
	if typ != "string" || !ours {
		l.Foreign = true
		return l
	}
	h := v.Holder
	l.Holder = &h
	l.Token = h.Token
	if t, err := time.Parse(time.RFC3339Nano, h.StartedAt); err == nil {
		age := max(now.Sub(t).Milliseconds(), 0)
		l.AgeMS = &age
	}
	return l
}

// Inspect reports the lock without touching it: state free, or held with its
// holder (parsed from this tool's JSON), Foreign for any other value, its age
// (since the holder's started_at; absent for a foreign lock) and its TTL.
func Inspect(ctx context.Context, client redis.UniversalClient, key string) (*report.Lock, error) {
	l, err := readLock(ctx, client, key, false)
	if err == nil && l == nil {
		l = &report.Lock{Key: key, State: StateFree}
	}
	return l, err
}

// ForceUnlock deletes whatever holds the lock key, ours or foreign, and
// returns what it removed (state "removed"), or nil when the lock was free.
// The fence counter stays, so tokens keep growing. A run that still held the
// removed lease finds out at its next renewal or fenced write.
func ForceUnlock(ctx context.Context, client redis.UniversalClient, key string) (*report.Lock, error) {
	l, err := readLock(ctx, client, key, true)
	if l != nil {
		l.State = StateRemoved
	}
	return l, err
}

// readLock describes what holds the lock key (nil when nothing does) and,
// when del is set, removes it in the same transaction.
func readLock(ctx context.Context, client redis.UniversalClient, key string, del bool) (*report.Lock, error) {
	if key == "" {
		return nil, report.E(report.CodeInternal, "lock: no lock key given")
	}
	raw, typ, pttl, err := read(ctx, client, key, del)
	if err != nil {
		doing := "reading"
		if del {
			doing = "removing"
		}
		return nil, classify(err, "%s the migration lock %s", doing, key)
	}
	if typ == "none" {
		return nil, nil
	}
	return describeLock(key, raw, typ, pttl, time.Now()), nil
}

// read gets the key's type, value (when a string) and PTTL in one MULTI, and
// deletes it in the same transaction when del is set, so what is reported
// removed is exactly what was removed.
func read(ctx context.Context, client redis.UniversalClient, key string, del bool) (raw, typ string, pttl int64, err error) {
	var typeCmd *redis.StatusCmd
	var getCmd *redis.StringCmd
	var pttlCmd *redis.DurationCmd
	_, err = client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		typeCmd = p.Type(ctx, key)
		getCmd = p.Get(ctx, key)
		pttlCmd = p.PTTL(ctx, key)
		if del {
			p.Del(ctx, key)
		}
		return nil
	})
	// A WRONGTYPE from GET (the key is not a string) or redis.Nil (no key)
	// is expected; anything else in the transaction is a real failure.
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		// EXECABORT hides the reason (NOPERM, ...) in the queued commands.
		for _, c := range []redis.Cmder{typeCmd, getCmd, pttlCmd} {
			if cerr := c.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) && !redis.HasErrorPrefix(cerr, "WRONGTYPE") && cerr != err {
				return "", "", 0, cerr
			}
		}
		return "", "", 0, err
	}
	if err := typeCmd.Err(); err != nil {
		return "", "", 0, err
	}
	typ = typeCmd.Val()
	if typ == "string" {
		if raw, err = getCmd.Result(); err != nil && !errors.Is(err, redis.Nil) {
			return "", "", 0, err
		}
	}
	if err := pttlCmd.Err(); err != nil {
		return "", "", 0, err
	}
	// go-redis turns PTTL's -1 (no expiry) and -2 (no key) into those
	// numbers of nanoseconds rather than milliseconds.
	switch d := pttlCmd.Val(); d {
	case -1, -2:
		pttl = int64(d)
	default:
		pttl = d.Milliseconds()
	}
	return raw, typ, pttl, nil
}
