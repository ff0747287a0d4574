package redismigrations

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// The catch-up after an apply pass and apply --repair redo big legacy
// records (too big to read whole, see readSized) piece by piece, as the
// main pass copies them: a missing twin is built in a temporary key and
// moved into place only if the twin still does not exist (streamTwin); a
// twin to compare and perhaps re-copy is compared piece by piece under
// WATCH and, when it differs, replaced in one transaction (MULTI, a fenced
// script renaming the temporary key over it) that the server refuses
// (EXEC fails) when anyone modified the twin since the WATCH: the same
// compare-and-set as recopyScript without sending the twin as read. What
// one record costs in memory is a piece (or one value larger than a
// piece), as in the main pass. A field that cannot cross the server's
// limits fails that record only, naming it. The catch-up decides to
// re-copy as catchUpV0 does (the twin still holds what the run wrote and
// no other client was seen to write it), its digest summed piece by piece.

// bigRedo is how a caller counts and words what becomes of its big
// records, beyond what its redo (r) says.
type bigRedo struct {
	r     redo
	issue func(report.Issue)                      // a failure naming a field (a limit)
	right func()                                  // the twin was right already
	gone  func(k string)                          // the record is gone
	bad   func(k string, notHash bool, err error) // not a hash, or unclassifiable
	// planned, when set, gets each twin plan (the catch-up reports the
	// values a pending field transform cannot migrate).
	planned func(tp twinPlan)
	// mayRecopy says whether a twin that differs may be copied again
	// (else r.fail with notRecopied).
	mayRecopy   func(ctx context.Context, twin string) (bool, error)
	notRecopied string
	twinNotHash string // why a twin of another type is left alone
	// exact: the twin is right only when it holds exactly what its record
	// makes of it (repair); else with the allowances of the pass's field
	// transforms (the catch-up, as twinDiff).
	exact bool
}

// catchUpBig is catchUpV0 for the big legacy records others changed
// (keys), piece by piece; r and bad are catchUpV0's.
func (s *Set) catchUpBig(ctx context.Context, keys []string, p pass, touched map[string]bool, r redo, bad func(string, bool, error), t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	var gone []string
	err := s.redoBig(ctx, keys, p, bigRedo{r: r, bad: bad,
		issue:   func(i report.Issue) { t.Fail(HashTags, i); bump(t, OthersReported) },
		right:   func() { bump(t, OthersRight) },
		gone:    func(k string) { gone = append(gone, k) },
		planned: func(tp twinPlan) { failBad(t, p, tp.outs, tp.twin) },
		mayRecopy: func(ctx context.Context, twin string) (bool, error) {
			if touched[twin] || !s.created.has(twin) {
				return false, nil
			}
			d, err := s.digestOf(ctx, twin)
			return s.created.holds(twin, d), err
		},
		notRecopied: bothChanged,
		twinNotHash: "changed by another client during apply; its twin is not a hash",
	})
	if err != nil {
		return err
	}
	return s.catchUpGone(ctx, gone, touched, r.fail, t)
}

// bothChanged is why the catch-up leaves a record and its twin as they
// are: both changed.
const bothChanged = "changed by another client during apply after its copy, and its twin was changed by another client too (or existed before this run): neither is overwritten; stop the old server, reconcile the two records and rerun apply"

// bigRec is a big legacy record as its redo reads it: the plan of its
// twin, its head (readHead) and its expiry.
type bigRec struct {
	tp   twinPlan
	head map[string]string
	e    expiry
}

// redoBig redoes each big legacy record of keys (see bigRedo).
func (s *Set) redoBig(ctx context.Context, keys []string, p pass, br bigRedo) error {
	l := s.serverLimits(ctx)
	for _, k := range keys {
		if err := s.redoBigOne(ctx, k, p, br, l); err != nil {
			return rediserr.Classify(err, "redo the big record "+k+" piece by piece")
		}
	}
	return nil
}

func (s *Set) redoBigOne(ctx context.Context, k string, p pass, br bigRedo, l serverLimits) error {
	b, ok, err := s.bigHead(ctx, k, p, br, l)
	if err != nil || !ok {
		return err
	}
	twin := b.tp.twin
	_, twinGone, err := s.expiryOf(ctx, twin)
	if err != nil {
		return err
	}
	if twinGone {
		val, field, why, err := s.streamTwin(ctx, k, &b.tp, b.head, l, b.e)
		switch {
		case err != nil:
			return err
		case why != "":
			br.issue(report.Issue{Key: k, Object: twin, Field: field, Reason: why})
		case val == 1:
			s.created.add(twin, b.tp.digest)
			br.r.created()
		case val == 0:
			br.r.fail(k, twin, br.r.existed)
		default:
			br.gone(k)
		}
		return nil
	}
	if typ, err := s.c.Type(ctx, twin).Result(); err != nil || typ != "hash" {
		if err == nil {
			// Never overwritten, as with a record read whole.
			br.r.fail(k, twin, br.twinNotHash)
		}
		return err
	}
	check := func(ctx context.Context) (bool, string, string, error) {
		if br.exact {
			return s.sameBig(ctx, k, b, l)
		}
		return s.agreesBig(ctx, k, b, p, l)
	}
	may, err := br.mayRecopy(ctx, twin)
	if err != nil {
		return err
	}
	if !may {
		same, field, why, err := check(ctx)
		switch {
		case err != nil:
			return err
		case why != "":
			br.issue(report.Issue{Key: k, Object: twin, Field: field, Reason: why})
		case same:
			br.right()
		default:
			br.r.fail(k, twin, br.notRecopied)
		}
		return nil
	}
	res, field, why, err := s.recopyBig(ctx, k, &b, l, check)
	switch {
	case err != nil:
		return err
	case why != "":
		br.issue(report.Issue{Key: k, Object: twin, Field: field, Reason: why})
	case res == 2:
		br.right()
	case res == 1:
		s.created.add(twin, b.tp.digest)
		br.r.recopied()
	case res == -1:
		br.gone(k)
	default:
		br.r.fail(k, twin, br.r.changed)
	}
	return nil
}

// bigHead reads what the redo of big legacy record k needs (ok false: it
// was counted already: gone, not a hash, unclassifiable, or a head field
// over the limits).
func (s *Set) bigHead(ctx context.Context, k string, p pass, br bigRedo, l serverLimits) (b bigRec, ok bool, err error) {
	e, gone, err := s.expiryOf(ctx, k)
	if err != nil || gone {
		if gone {
			br.gone(k)
		}
		return b, false, err
	}
	r, field, why, err := s.readHead(ctx, k, l)
	switch {
	case err != nil:
		return b, false, err
	case why != "":
		br.issue(report.Issue{Key: k, Field: field, Reason: why})
		return b, false, nil
	case r.err != nil:
		br.bad(k, true, r.err)
		return b, false, nil
	case r.fields == nil:
		br.gone(k)
		return b, false, nil
	}
	key, err := ClassifyV0(k, r.fields)
	if err != nil {
		br.bad(k, false, err)
		return b, false, nil
	}
	fields, outs, _ := compose(key, r.fields, p.twin)
	b = bigRec{tp: twinPlan{key: k, twin: key.V1(s.prefix), k: key, fields: fields, outs: outs}, head: r.fields, e: e}
	if br.planned != nil {
		br.planned(b.tp)
	}
	return b, true, nil
}

// agreesBig says whether the twin agrees with big legacy record k as
// twinDiff would say it (the allowances of the pass's field transforms).
func (s *Set) agreesBig(ctx context.Context, k string, b bigRec, p pass, l serverLimits) (same bool, field, why string, err error) {
	te, gone, err := s.expiryOf(ctx, b.tp.twin)
	if err != nil || gone {
		return false, "", "", err
	}
	issue, field, why, err := s.diffBig(ctx, k, b.tp.twin, b.tp.k, b.head, p.twin, l)
	if err != nil || why != "" {
		return false, field, why, err
	}
	return issue == nil && ttlIssue(b.tp.twin, b.e, te) == nil, "", "", nil
}

// sameBig says whether the twin holds exactly what big legacy record k
// makes of it (b.tp.fields over the record's own fields, plus the fields
// the transforms add) and a TTL exactly when k has one, as sameRecord
// says it, compared piece by piece.
func (s *Set) sameBig(ctx context.Context, k string, b bigRec, l serverLimits) (same bool, field, why string, err error) {
	te, gone, err := s.expiryOf(ctx, b.tp.twin)
	if err != nil || gone || te.has() != b.e.has() {
		return false, "", "", err
	}
	same = true
	field, why, err = s.eachPiece(ctx, k, l, func(pend []string) (bool, error) {
		a, tw, err := s.piecePair(ctx, k, b.tp.twin, pend)
		if err != nil {
			same = false
			return true, err
		}
		for i, f := range pend {
			v, ok := a[i].(string)
			if !ok {
				continue
			}
			if w, ok := b.tp.fields[f]; ok {
				v = w
			}
			if tv, ok := tw[i].(string); !ok || tv != v {
				same = false
				return true, nil
			}
		}
		return false, nil
	})
	if isKeyError(err) {
		return false, "", "", nil // the twin is no hash: not the same
	}
	if err != nil || why != "" || !same {
		return false, field, why, err
	}
	added := 0
	for f := range b.tp.fields {
		if _, ok := b.head[f]; !ok {
			added++
		}
	}
	n, err := s.c.HLen(ctx, k).Result()
	if err != nil {
		return false, "", "", err
	}
	tn, err := s.c.HLen(ctx, b.tp.twin).Result()
	return err == nil && tn == n+int64(added), "", "", err
}

// recopyBigScript makes the temporary key KEYS[2] the twin KEYS[1]
// (replacing it), with the legacy key's expiry ARGV[3] as moveScript takes
// it. Run inside MULTI after a WATCH of the twin. Returns 1 written, -1
// the temporary key is gone (the record vanished while it was built).
var recopyBigScript = goredis.NewScript(fencePrelude + moveFn + `
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
move(KEYS[2], KEYS[1], ARGV[3])
return 1
`)

// recopyBig re-copies big legacy record k over its twin, compare-and-set:
// under WATCH of the twin, check compares them; when they differ the new
// twin is built in a temporary key (buildTemp) and replaces the twin in
// one transaction, which the server aborts when anyone modified the twin
// since the WATCH. res: 2 the twin was right (nothing written), 1
// re-copied, -1 the record vanished, -2 the twin changed meanwhile. why
// (and field) names a field that cannot cross the limits.
func (s *Set) recopyBig(ctx context.Context, k string, b *bigRec, l serverLimits, check func(context.Context) (bool, string, string, error)) (res int64, field, why string, err error) {
	var tmp string
	same := false
	res, wrote, aborted, err := s.watchedScript(ctx, b.tp.twin, recopyBigScript, func(ctx context.Context) ([]string, []any, bool, error) {
		var err error
		if same, field, why, err = check(ctx); err != nil || why != "" || same {
			return nil, nil, false, err
		}
		d := s.created.digester()
		if tmp, field, why, err = s.buildTemp(ctx, k, b.tp, b.head, l, d); err != nil || why != "" {
			return nil, nil, false, err
		}
		b.tp.digest = d.value()
		aboutToWrite(ctx, 1, func(int) string { return b.tp.twin })
		return []string{b.tp.twin, tmp}, []any{b.e.scriptArg()}, true, nil
	})
	if (err != nil || aborted) && tmp != "" {
		s.dropTemp(ctx, tmp)
	}
	switch {
	case err != nil || why != "":
		return 0, field, why, err
	case same:
		return 2, "", "", nil
	case aborted:
		return -2, "", "", nil
	case !wrote:
		return 0, "", "", report.E(report.CodeInternal, "re-copy of %s: nothing written", k)
	}
	return res, "", "", nil
}

// watchedScript runs prepare under WATCH of key (it reads and builds what
// the write needs; ok false: nothing to write), then the write script sc
// on keys (the lock added on a standalone server) with args after the
// fence's, inside MULTI. aborted: the server refused the transaction
// because key was modified since the WATCH, by anyone.
func (s *Set) watchedScript(ctx context.Context, key string, sc *goredis.Script, prepare func(context.Context) (keys []string, args []any, ok bool, err error)) (res int64, wrote, aborted bool, err error) {
	if err := scan.CheckFence(ctx); err != nil {
		return 0, false, false, err
	}
	byEval := luascript.UsesEval(s.c)
	if !byEval && sc.Load(ctx, s.c).Err() != nil {
		byEval = true // SCRIPT LOAD refused: the source goes with EVAL
	}
	deadline, lockValue, lockKey := s.fenceArgs(ctx)
	var cmd *goredis.Cmd
	txErr := s.c.Watch(ctx, func(tx *goredis.Tx) error {
		keys, own, ok, err := prepare(ctx)
		if err != nil || !ok {
			return err
		}
		if lockKey != "" {
			keys = append(keys, lockKey)
		}
		args := append([]any{deadline, lockValue}, own...)
		_, err = tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
			if byEval {
				cmd = sc.Eval(ctx, pipe, keys, args...)
			} else {
				cmd = sc.EvalSha(ctx, pipe, keys, args...)
			}
			return nil
		})
		return err
	}, key)
	switch {
	case errors.Is(txErr, goredis.TxFailedErr):
		return 0, false, true, nil
	case txErr != nil:
		return 0, false, false, txErr
	case cmd == nil:
		return 0, false, false, nil
	}
	if res, err = cmd.Int64(); err != nil {
		return 0, false, false, err
	}
	if res == lockLost {
		return 0, false, false, lockLostError(deadline, lockKey)
	}
	return res, true, false, nil
}

// digestOf is the digest of what hash key holds, read piece by piece; 0
// when a field cannot be read within the server's limits.
func (s *Set) digestOf(ctx context.Context, key string) (uint32, error) {
	d := s.created.digester()
	_, why, err := s.eachPiece(ctx, key, s.serverLimits(ctx), func(names []string) (bool, error) {
		vals, err := s.c.HMGet(ctx, key, names...).Result()
		for i, f := range names {
			if v, ok := vals[i].(string); ok && err == nil {
				d.add(f, v)
			}
		}
		return err != nil, err
	})
	if isKeyError(err) || why != "" {
		return 0, nil
	}
	return d.value(), err
}
