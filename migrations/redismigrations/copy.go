package redismigrations

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// expiry is when a key expires, as read: the absolute Unix time in ms,
// by the server's clock, and the twin is written with that same time
// (RESTORE ... ABSTTL, PEXPIREAT). Both keys expire in the same millisecond
// whenever the copy happens, and a key read in its last millisecond gets a
// time already past, which Redis treats as expired (RESTORE then creates
// nothing), so it can never become permanent. Redis 7 gives the time
// (PEXPIRETIME); elsewhere (Redis 6, a user denied PEXPIRETIME) a read-only
// script adds the key's PTTL to the server's TIME, exact to the
// millisecond as PTTL is.
type expiry struct {
	at   int64 // absolute Unix ms; 0 = no TTL
	pttl int64 // the remaining ms when read (>= 1), 0 = no TTL; for issues
}

func (e expiry) has() bool { return e.at > 0 }

// restoreArgs are RESTORE's ttl argument and whether it is ABSTTL.
func (e expiry) restoreArgs() (int64, bool) { return e.at, e.at > 0 }

// scriptArg is copyScript's ttl argument.
func (e expiry) scriptArg() string {
	if e.at > 0 {
		return "@" + strconv.FormatInt(e.at, 10)
	}
	return "0"
}

// expireAtScript is PEXPIRETIME for servers without it: -2 no key, -1 no
// TTL, else the Unix time in ms the key expires at. Read-only, one key.
const expireAtScript = `
local p = redis.call('PTTL', KEYS[1])
if p < 0 then return p end
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + p
`

// record is a hash as read: fields (nil when the key is gone), its expiry,
// or a per-key error (wrong type).
type record struct {
	fields map[string]string
	expiry
	err error
}

func isKeyError(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// errNoExpireTime: the server does not give PEXPIRETIME to this client.
var errNoExpireTime = errors.New("PEXPIRETIME refused")

// readRecords reads whole hashes and their expiry in one pipeline. A key
// whose expiry read says it is gone is read as gone even when HGETALL, just
// before, still saw its fields: it expired in between, and copying it
// without its TTL would make a soft-deleted record permanent.
func (s *Set) readRecords(ctx context.Context, keys []string) ([]record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if !s.noExpireTime.Load() {
		out, err := s.readRecordsWith(ctx, keys, "PEXPIRETIME")
		if !errors.Is(err, errNoExpireTime) {
			return out, err
		}
		s.noExpireTime.Store(true)
	}
	return s.readRecordsWith(ctx, keys, "")
}

func (s *Set) readRecordsWith(ctx context.Context, keys []string, ttlCmd string) ([]record, error) {
	pipe := s.c.Pipeline()
	hs := make([]*goredis.MapStringStringCmd, len(keys))
	ts := make([]*goredis.Cmd, len(keys))
	for i, k := range keys {
		hs[i] = pipe.HGetAll(ctx, k)
		if ttlCmd != "" {
			ts[i] = pipe.Do(ctx, ttlCmd, k)
		} else {
			ts[i] = pipe.Eval(ctx, expireAtScript, []string{k})
		}
	}
	_, _ = pipe.Exec(ctx)
	out := make([]record, len(keys))
	for i := range keys {
		if err := hs[i].Err(); err != nil {
			if !isKeyError(err) {
				if !isServerReply(err) {
					return nil, fmt.Errorf("%w (%w)", pipeErr(err, "read", keys, i), errConnLost)
				}
				return nil, pipeErr(err, "read", keys, i)
			}
			out[i].err = err
			continue
		}
		v, err := ts[i].Int64()
		if err != nil {
			if ttlCmd == "PEXPIRETIME" && (strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "NOPERM")) {
				return nil, errNoExpireTime
			}
			return nil, pipeErr(err, "read the expiry of", keys, i)
		}
		// -2: no key; -1: no TTL.
		if v == -2 {
			continue
		}
		if len(hs[i].Val()) > 0 {
			out[i].fields = hs[i].Val()
		}
		if v >= 0 {
			out[i].at = v
			out[i].pttl = max(v-time.Now().UnixMilli(), 1)
		}
	}
	return out, nil
}

// twinWrite is a twin to create: its name, fields and the legacy key's
// expiry.
type twinWrite struct {
	name   string
	fields map[string]string
	expiry expiry
}

// fenceArgs are the first two ARGV of every write script (see
// fencePrelude) and the lock key to add to its KEYS, "" for none: in a
// fenced pass, the server-clock time past which the lease may be gone and,
// on a standalone server (where the lock shares the keyspace), the lock's
// value.
func (s *Set) fenceArgs(ctx context.Context) (deadline int64, value, lockKey string) {
	f := scan.FenceFrom(ctx)
	if f == nil {
		return 0, "", ""
	}
	key, value, until := f.Guard()
	if _, standalone := s.c.(*goredis.Client); !standalone {
		return until.UnixMilli(), "", ""
	}
	return until.UnixMilli(), value, key
}

func lockLostError(deadline int64, key string) error {
	return report.E(report.CodeLockLost, "lost the migration lock: the server refused a write past the lease's deadline (%s) or with the lock %q no longer holding this run's value; nothing more is written",
		time.UnixMilli(deadline).UTC().Format(time.RFC3339Nano), key)
}

// writeTwins creates each twin of ws unless it exists, with RESTORE of a
// built payload while the server takes it, else with copyScript. A
// result's val is 1 when the twin was created, 0 when it existed. The lease
// is checked first; on a standalone server every write also checks it
// atomically.
func (s *Set) writeTwins(ctx context.Context, ws []twinWrite) ([]scriptResult, error) {
	out := make([]scriptResult, len(ws))
	s.probe.Do(func() {
		if !s.restoreWorks(ctx) {
			s.noRestore.Store(true)
			return
		}
		if l, ok := s.listpackWorks(ctx); ok {
			s.lp = l
			s.useListpack.Store(true)
		}
	})
	var todo []twinWrite // for the script
	var at []int         // their index in ws
	if s.noRestore.Load() {
		todo = ws
		at = make([]int, len(ws))
		for i := range at {
			at[i] = i
		}
	} else {
		buf := s.payloads.Get().(*[]byte)
		defer s.payloads.Put(buf)
		errs, err := s.restore(ctx, ws, s.buildPayloads(ws, buf))
		if err != nil {
			return nil, err
		}
		for i, w := range ws {
			err := errs[i]
			switch {
			case err == nil:
				out[i].val = 1
			case goredis.HasErrorPrefix(err, "BUSYKEY"):
				// The twin exists: never overwritten.
			case restoreRefused(err):
				// A master that takes type 4 but not listpacks (a
				// cluster mid-upgrade) gets type 4 from now on; this
				// twin goes through the script.
				if !s.useListpack.CompareAndSwap(true, false) {
					s.noRestore.Store(true)
				}
				todo, at = append(todo, w), append(at, i)
			default:
				return nil, pipeErr(err, "RESTORE", writeNames(ws), i)
			}
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	res, err := s.runScript(ctx, copyScript, len(todo), func(j int) ([]string, []any) {
		w := todo[j]
		args := make([]any, 0, 1+2*len(w.fields))
		args = append(args, w.expiry.scriptArg())
		for f, v := range w.fields {
			args = append(args, f, v)
		}
		return []string{w.name}, args
	})
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		out[i] = res[j]
	}
	return out, nil
}

// buildPayloads builds the RESTORE payload of each twin into one buffer
// (*buf, reused from chunk to chunk): a payload is a sub-slice of it, read
// when the pipeline runs. A listpack where the server would keep one (see
// listpack.go), else RDB type 4.
func (s *Set) buildPayloads(ws []twinWrite, buf *[]byte) [][]byte {
	b := (*buf)[:0]
	ends := make([]int, len(ws))
	listpack := s.useListpack.Load()
	var kv []string
	for i, w := range ws {
		if listpack && s.lp.fits(w.fields) {
			kv = kv[:0]
			for f, v := range w.fields {
				kv = append(kv, f, v)
			}
			b = appendListpackPayload(b, kv)
		} else {
			b = appendHashPayload(b, w.fields)
		}
		ends[i] = len(b)
	}
	*buf = b
	payloads := make([][]byte, len(ws))
	start := 0
	for i := range ws {
		payloads[i] = b[start:ends[i]:ends[i]]
		start = ends[i]
	}
	return payloads
}

// restore sends one RESTORE per twin and returns each one's error: fenced
// in a fenced pass (restoreFenced), else in a pipeline after the lease was
// checked.
func (s *Set) restore(ctx context.Context, ws []twinWrite, payloads [][]byte) ([]error, error) {
	if err := scan.CheckFence(ctx); err != nil {
		return nil, err
	}
	if scan.FenceFrom(ctx) != nil {
		return s.restoreFenced(ctx, ws, payloads)
	}
	errs := make([]error, len(ws))
	return errs, s.restorePipelined(ctx, ws, payloads, errs)
}

// restoreEach writes each twin with its own fenced script (restoreScript):
// the path that works everywhere, taken where the batched ones cannot be.
func (s *Set) restoreEach(ctx context.Context, ws []twinWrite, payloads [][]byte) ([]error, error) {
	res, err := s.runScript(ctx, restoreScript, len(ws), func(i int) ([]string, []any) {
		ttl, abs := ws[i].expiry.restoreArgs()
		flag := "0"
		if abs {
			flag = "1"
		}
		return []string{ws[i].name}, []any{ttl, flag, payloads[i]}
	})
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(ws))
	for i, r := range res {
		switch {
		case r.err != nil:
			errs[i] = r.err
		case r.val == 0:
			errs[i] = serverError("BUSYKEY Target key name already exists.")
		}
	}
	return errs, nil
}

// restorePipelined sends the RESTOREs of an unfenced pass in one pipeline
// per master, each twin's error into errs.
func (s *Set) restorePipelined(ctx context.Context, ws []twinWrite, payloads [][]byte, errs []error) error {
	cmds := make([]*goredis.Cmd, len(ws))
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name
	}
	s.pipelined(ctx, names, func(pipe goredis.Pipeliner, i int) {
		ttl, abs := ws[i].expiry.restoreArgs()
		if abs {
			cmds[i] = pipe.Do(ctx, "restore", ws[i].name, ttl, payloads[i], "absttl")
		} else {
			cmds[i] = pipe.Do(ctx, "restore", ws[i].name, ttl, payloads[i])
		}
	})
	for i := range ws {
		errs[i] = cmds[i].Err()
	}
	return nil
}

// serverError is an error a script caught (redis.pcall) and returned as
// text: a Redis error to goredis.HasErrorPrefix, as it was on the wire.
type serverError string

func (e serverError) Error() string { return string(e) }
func (e serverError) RedisError()   {}
