package redismigrations

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// A legacy record too big for one reply or one write (see limits.go) is
// copied piece by piece: its field names and sizes are listed with HSCAN
// inside a read-only script (names and lengths only, so no reply carries a
// value the limits forbid), the values are read with HMGET and written to a
// temporary key in the twin's slot (same hash tag) in pieces of at most
// pieceAt bytes, each write renewing a short TTL (so a kill -9 mid-copy
// leaves nothing for long), and the temporary key becomes the twin in one
// atomic step only if the twin does not exist (moveScript: RENAME, then the
// legacy key's expiry), under the same fence as every other write. What
// one record costs in memory is a piece (or one value, when a single value
// is larger than a piece), never the record.

// bigTempTTL is the TTL of a temporary key, renewed by each piece.
const bigTempTTL = 120_000 // ms

// bigStep is the HSCAN COUNT of one step of fieldLengthsScript.
const bigStep = 1000

// fieldLengthsScript is one HSCAN step over KEYS[1] from cursor ARGV[1]
// (COUNT ARGV[2]), returned as the next cursor then, per field, its name
// ("" when the name is longer than ARGV[3]), the name's length and the
// value's length. Read-only.
var fieldLengthsScript = goredis.NewScript(`
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local cap = tonumber(ARGV[3])
local out = {r[1]}
local kv = r[2]
for i = 1, #kv, 2 do
  local name = kv[i]
  if #name > cap then name = '' end
  out[#out+1] = name
  out[#out+1] = #kv[i]
  out[#out+1] = #kv[i+1]
end
return out
`)

// pieceScript adds field, value pairs to a temporary key and renews its
// TTL. KEYS[1] the temporary key; ARGV[3] the TTL in ms; ARGV[4..] pairs.
var pieceScript = goredis.NewScript(fencePrelude + hsetFn + `
hset_from(KEYS[1], 4)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// moveScript makes the temporary key KEYS[2] the twin KEYS[1] unless the
// twin exists (then the temporary key is dropped), with the legacy key's
// expiry ARGV[3] ("@" and the Unix time in ms, or "0": none). Returns 1
// created, 0 the twin existed, -1 the temporary key is gone.
var moveScript = goredis.NewScript(fencePrelude + moveFn + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
move(KEYS[2], KEYS[1], ARGV[3])
return 1
`)

// moveFn defines move, which renames the temporary key tmp to the twin
// and gives it the legacy key's expiry ("@" and the Unix time in ms, or
// "0": none), for the scripts that put a twin built piece by piece in
// place.
const moveFn = `
local function move(tmp, twin, expiry)
  redis.call('RENAME', tmp, twin)
  if string.sub(expiry, 1, 1) == '@' then
    redis.call('PEXPIREAT', twin, string.sub(expiry, 2))
  else
    redis.call('PERSIST', twin)
  end
end
`

// copyLegacy copies a chunk's legacy records: those of more than
// bigFields fields or bigAt bytes one by one, piece by piece (copyBig);
// the others in groups (splitBySize), each read and written in one pipeline (copyV0),
// so that what a chunk holds in memory is bounded. A group whose read lost
// its connection (before anything was counted or written) is redone
// record by record, piece by piece, which names the record too big.
func (s *Set) copyLegacy(ctx context.Context, keys []string, p pass, t *scan.Tally, seen *written) error {
	if len(keys) == 0 {
		return nil
	}
	groups, big, err := s.splitKeys(ctx, keys)
	if err != nil {
		return err
	}
	for _, g := range groups {
		err := s.copyV0(ctx, g, p, t, seen)
		if err != nil && s.lostOverReply(ctx, err) {
			big = append(big, g...)
			continue
		}
		if err != nil {
			return err
		}
	}
	for _, k := range big {
		if err := s.copyBig(ctx, k, p, t, seen); err != nil {
			return err
		}
	}
	return nil
}

// routeBig takes out of a group read whole the records too big for one
// write (over bigAt bytes: a few huge values) and copies them piece by
// piece (copyBig, which reads them again in pieces and names a value no
// write can carry); it returns the others. Nothing of them was counted.
func (s *Set) routeBig(ctx context.Context, keys []string, recs []record, p pass, t *scan.Tally, seen *written) ([]string, []record, error) {
	l := s.serverLimits(ctx)
	n := 0
	for i, k := range keys {
		if recordBytes(recs[i]) > l.bigAt() {
			if err := s.copyBig(ctx, k, p, t, seen); err != nil {
				return nil, nil, err
			}
			continue
		}
		keys[n], recs[n] = k, recs[i]
		n++
	}
	return keys[:n], recs[:n], nil
}

// countCopy counts what 001 did with one legacy record: res.val 1 the twin
// was created (in its final form: the work of the field transforms on it
// is counted as theirs, and the scan skips it if it reaches it later in
// this pass), 0 it existed (copied by an earlier run, or written by the
// new server: never overwritten; the field transforms reach it on their
// own because it is in the keyspace this pass walks), or res.err.
func (s *Set) countCopy(t *scan.Tally, p pass, seen *written, tp twinPlan, res scriptResult) {
	switch {
	case res.err != nil:
		t.Fail(HashTags, report.Issue{Key: tp.key, Reason: "copy to " + tp.twin + ": " + res.err.Error()})
	case res.val == 1:
		t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
		tp.countFinal(t, p)
		d := tp.digest
		if d == 0 {
			// Only for twins created: most of a rerun's exist.
			d = seen.digest(tp.fields)
		}
		seen.add(tp.twin, d)
	default:
		t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
	}
}

// copyBig copies one big legacy record piece by piece. A failure of the
// server or the connection names the key.
func (s *Set) copyBig(ctx context.Context, k string, p pass, t *scan.Tally, seen *written) error {
	wrap := func(err error) error {
		return rediserr.Classify(err, "copy the big record "+k+" piece by piece")
	}
	l := s.serverLimits(ctx)
	e, gone, err := s.expiryOf(ctx, k)
	if err != nil {
		return wrap(err)
	}
	var r record
	if !gone {
		var field, why string
		if r, field, why, err = s.readHead(ctx, k, l); err != nil {
			return wrap(err)
		}
		if why != "" {
			t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
			s.failBig(t, k, field, why, l)
			return nil
		}
		r.expiry = e
	}
	tp, ok := s.planTwin(t, p, k, r)
	if !ok {
		return nil
	}
	exists, err := s.exists(ctx, []string{tp.twin})
	if err != nil {
		return wrap(err)
	}
	if exists[0] {
		s.countCopy(t, p, seen, tp, scriptResult{})
		return nil
	}
	val, field, why, err := s.streamTwin(ctx, k, &tp, r.fields, l, e)
	switch {
	case err != nil:
		return wrap(err)
	case why != "":
		s.failBig(t, k, field, why, l)
	case val == -1:
		// Nothing was streamed: the record vanished since it was sized.
		t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
	default:
		s.countCopy(t, p, seen, tp, scriptResult{val: val})
	}
	return nil
}

// failBig records a record that cannot be copied (counted as scanned
// already), its field and why.
func (s *Set) failBig(t *scan.Tally, k, field, why string, l serverLimits) {
	if l.unknown != "" {
		why += "; the server's limits could not be read: " + l.unknown
	}
	t.Fail(HashTags, report.Issue{Key: k, Field: field, Reason: why})
}

// expiryOf reads one key's expiry as readRecords does; gone is true when
// the key does not exist.
func (s *Set) expiryOf(ctx context.Context, k string) (e expiry, gone bool, err error) {
	var v int64
	if !s.noExpireTime.Load() {
		v, err = s.c.Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil && (strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "NOPERM")) {
			s.noExpireTime.Store(true)
		}
	}
	if s.noExpireTime.Load() {
		v, err = s.c.Eval(ctx, expireAtScript, []string{k}).Int64()
	}
	switch {
	case err != nil:
		return e, false, err
	case v == -2:
		return e, true, nil
	case v >= 0:
		e = expiry{at: v, pttl: max(v-time.Now().UnixMilli(), 1)}
	}
	return e, false, nil
}

// readHead reads the fields that classify a record and that the field
// transforms read (v1Fields), each after its length was checked against
// the limits. A record that is not a hash comes back with err set in r, one
// that is gone with nil fields.
func (s *Set) readHead(ctx context.Context, k string, l serverLimits) (r record, field, why string, err error) {
	checkFields := s.v1Fields()
	pipe := s.c.Pipeline()
	lens := make([]*goredis.IntCmd, len(checkFields))
	for i, f := range checkFields {
		lens[i] = pipe.HStrLen(ctx, k, f)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range lens {
		n, err := c.Result()
		if isKeyError(err) {
			return record{err: err}, "", "", nil
		}
		if err != nil {
			return r, "", "", err
		}
		if why := l.tooBig(n); why != "" {
			return r, checkFields[i], why, nil
		}
	}
	vals, err := s.c.HMGet(ctx, k, checkFields...).Result()
	if isKeyError(err) {
		return record{err: err}, "", "", nil
	}
	if err != nil {
		return r, "", "", err
	}
	r.fields = map[string]string{}
	for i, f := range checkFields {
		if v, ok := vals[i].(string); ok {
			r.fields[f] = v
		}
	}
	if len(r.fields) == 0 {
		// None of them: a key gone, or a hash without them.
		there, err := s.exists(ctx, []string{k})
		if err != nil {
			return r, "", "", err
		}
		if !there[0] {
			r.fields = nil
		}
	}
	return r, "", "", nil
}

// tempName is a fresh temporary key in the slot of twin: under the
// deployment's own outpost:migrate: space (outside the tenant:* keys a
// pass walks), with twin's hash tag. ok is false when twin has no hash tag
// (a tenant id starting with '}'): then only a standalone server can take
// it.
func tempName(prefix, twin string, cluster bool) (string, bool) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	name := prefix + "outpost:migrate:big:"
	i := strings.IndexByte(twin, '{')
	j := -1
	if i >= 0 {
		j = strings.IndexByte(twin[i+1:], '}')
	}
	if j <= 0 {
		return name + hex.EncodeToString(id[:]), !cluster
	}
	return name + twin[i:i+j+2] + ":" + hex.EncodeToString(id[:]), true
}

func parseInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// hscanStep runs one step of fieldLengthsScript.
func (s *Set) hscanStep(ctx context.Context, k, cursor string, l serverLimits) (next string, names []string, nameLens, valueLens []int64, err error) {
	res, err := luascript.Run(ctx, s.c, fieldLengthsScript, []string{k}, cursor, bigStep, l.pieceAt()).Slice()
	if err != nil {
		return "", nil, nil, nil, err
	}
	if len(res) == 0 || (len(res)-1)%3 != 0 {
		return "", nil, nil, nil, report.E(report.CodeInternal, "field lengths of %s: reply of %d items", k, len(res))
	}
	next, _ = res[0].(string)
	for i := 1; i < len(res); i += 3 {
		name, _ := res[i].(string)
		names = append(names, name)
		nameLens = append(nameLens, parseInt(res[i+1]))
		valueLens = append(valueLens, parseInt(res[i+2]))
	}
	return next, names, nameLens, valueLens, nil
}

// maxPieceFields bounds the fields of one piece (HMGET and write).
const maxPieceFields = 10_000

// streamTwin builds tp's twin from legacy record k piece by piece in a
// temporary key (buildTemp) and moves it into place unless the twin
// exists: val is moveScript's result; tp.digest becomes the digest of what
// was written (see written). why (and the field) says why the record
// cannot be copied; the temporary key is then removed, as after a failure.
func (s *Set) streamTwin(ctx context.Context, k string, tp *twinPlan, head map[string]string, l serverLimits, e expiry) (val int64, field, why string, err error) {
	d := s.created.digester()
	tmp, field, why, err := s.buildTemp(ctx, k, *tp, head, l, d)
	if err != nil || why != "" {
		return 0, field, why, err
	}
	tp.digest = d.value()
	// The twin first: its write is the one the watch of other clients
	// must take for the run's own (scan.Others.ExpectScript).
	res, err := s.runScript(ctx, moveScript, 1, func(int) ([]string, []any) {
		return []string{tp.twin, tmp}, []any{e.scriptArg()}
	})
	if err == nil {
		err = res[0].err
	}
	if err != nil {
		s.dropTemp(ctx, tmp)
		return 0, "", "", err
	}
	return res[0].val, "", "", nil
}

// dropTemp removes a temporary key, best effort: its TTL removes it
// otherwise.
func (s *Set) dropTemp(ctx context.Context, tmp string) {
	_ = s.c.Del(context.WithoutCancel(ctx), tmp).Err()
}

// buildTemp writes tp's twin from legacy record k piece by piece into a
// fresh temporary key in the twin's slot (tmp; it may not exist when the
// record vanished meanwhile), adding each field written to d. head is
// what readHead read of k: tp.fields holds it as the field transforms
// made it, and the fields they add go with the first piece. why (and the
// field) says why the record cannot be copied; the temporary key is then
// removed, as after a failure.
func (s *Set) buildTemp(ctx context.Context, k string, tp twinPlan, head map[string]string, l serverLimits, d *digester) (tmp, field, why string, err error) {
	_, cluster := s.c.(*goredis.ClusterClient)
	tmp, ok := tempName(s.prefix, tp.twin, cluster)
	if !ok {
		return "", "", "its twin " + tp.twin + " has no hash tag, so it cannot be built piece by piece in the twin's slot on a cluster", nil
	}
	defer func() {
		if err != nil || why != "" {
			s.dropTemp(ctx, tmp)
		}
	}()
	added := map[string]string{}
	for f, v := range tp.fields {
		if _, ok := head[f]; !ok {
			added[f] = v
		}
	}
	field, why, err = s.eachPiece(ctx, k, l, func(names []string) (bool, error) {
		w, err := s.writePiece(ctx, k, tmp, names, tp, added, d)
		added, why = nil, w
		return why != "", err
	})
	// No field listed (the record vanished): nothing was written, not
	// even the fields the transforms add, and tmp does not exist.
	return tmp, field, why, err
}

// writePiece reads the fields names of legacy record k (HMGET: a field
// gone meanwhile is left out) and adds them to tmp as the twin holds them
// (tp.fields: the values the field transforms changed), with extra (the
// fields they add, once). why says why the record cannot be copied (a
// summary whose content is not one).
func (s *Set) writePiece(ctx context.Context, k, tmp string, names []string, tp twinPlan, extra map[string]string, d *digester) (string, error) {
	out := make(map[string]string, len(names)+len(extra))
	if len(names) > 0 {
		vals, err := s.c.HMGet(ctx, k, names...).Result()
		if err != nil {
			return "", err
		}
		for i, f := range names {
			if v, ok := vals[i].(string); ok {
				out[f] = v
			}
		}
	}
	if tp.k.Kind == KindSummary {
		if err := checkSummary(out); err != nil {
			return fmt.Sprintf("%v: named like a summary but %v", ErrUnclassifiable, err), nil
		}
	}
	for f := range out {
		if v, ok := tp.fields[f]; ok {
			out[f] = v
		}
	}
	for f, v := range extra {
		out[f] = v
	}
	if len(out) == 0 {
		return "", nil
	}
	args := make([]any, 0, 1+2*len(out))
	args = append(args, bigTempTTL)
	for f, v := range out {
		args = append(args, f, v)
		d.add(f, v)
	}
	res, err := s.runScript(ctx, pieceScript, 1, func(int) ([]string, []any) { return []string{tmp}, args })
	if err != nil {
		return "", err
	}
	return "", res[0].err
}

// writeNames are the twins' names of ws, for errors.
func writeNames(ws []twinWrite) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.name
	}
	return out
}
