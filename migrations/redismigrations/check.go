package redismigrations

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Check returns a read-only step that counts, per migration of todo, what
// apply would still do: Changed = keys still to change, Unchanged = keys
// already right, Failed = keys it cannot migrate (with an issue each),
// Skipped = keys gone since SCAN. A legacy key whose twin apply would
// create also counts for 002/003 (apply writes the twin in its final
// form); a legacy key whose twin exists counts for 001 only.
func (s *Set) Check(todo, done []string) scan.Step {
	w := newWork(todo, done)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, w.copy, w.do002 || w.do003, nil, failer(t, todo...))
		if err != nil {
			return err
		}
		if err := s.checkLegacy(ctx, srt.v0, w, t); err != nil {
			return err
		}
		return s.checkV1(ctx, srt.v1, w, t)
	}
}

func (s *Set) checkV0(ctx context.Context, keys []string, w work, t *scan.Tally) error {
	recs, err := s.readForCheck(ctx, keys)
	if err != nil {
		return err
	}
	var todo []twinPlan
	for i, k := range keys {
		if p, _, ok := s.planTwin(t, w, k, recs[i]); ok {
			todo = append(todo, p)
		}
	}
	twins := make([]string, len(todo))
	for i, p := range todo {
		twins[i] = p.twin
	}
	exists, err := s.exists(ctx, twins)
	if err != nil {
		return err
	}
	// A legacy key without its twin may have expired (with its twin) after
	// it was read: it is left to do only if it is still there.
	var missing []string
	for i, p := range todo {
		if !exists[i] {
			missing = append(missing, p.key)
		}
	}
	still, err := s.exists(ctx, missing)
	if err != nil {
		return err
	}
	m := 0
	for i, p := range todo {
		if exists[i] {
			// The twin is in the keyspace: 002/003 count it when the scan
			// reaches it, and it is never overwritten.
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
			continue
		}
		m++
		if !still[m-1] {
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			continue
		}
		t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
		// The copy apply will write is transformed by 002/003 too.
		p.countFinal(t, w)
	}
	return nil
}

// checkFields are the fields that decide, for a legacy key that cannot be
// a summary, what ClassifyV0 and twinFields make of it.
var checkFields = append([]string{"id", "deleted_at", "entity"}, TimestampFields...)

// readForCheck reads what Check needs of legacy records: whole hashes only
// for keys named like a summary (their content decides), else only
// checkFields, which classify such a key exactly as its whole content would
// (see ClassifyV0) at a fraction of the bytes (no credentials, config or
// metadata). A record read this way is never written anywhere; apply reads
// whole records. TTLs are not read.
func (s *Set) readForCheck(ctx context.Context, keys []string) ([]record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	whole := make([]*goredis.MapStringStringCmd, len(keys))
	some := make([]*goredis.SliceCmd, len(keys))
	for i, k := range keys {
		if namedLikeSummary(k) {
			whole[i] = pipe.HGetAll(ctx, k)
		} else {
			some[i] = pipe.HMGet(ctx, k, checkFields...)
		}
	}
	_, _ = pipe.Exec(ctx)
	out := make([]record, len(keys))
	var unknown []int
	for i := range keys {
		var err error
		if whole[i] != nil {
			err = whole[i].Err()
		} else {
			err = some[i].Err()
		}
		if err != nil {
			if !isKeyError(err) {
				return nil, pipeErr(err, "read", keys, i)
			}
			out[i].err = err
			continue
		}
		if whole[i] != nil {
			if v := whole[i].Val(); len(v) > 0 {
				out[i].fields = v
			}
			continue
		}
		f := make(map[string]string, len(checkFields))
		for j, name := range checkFields {
			if v, ok := some[i].Val()[j].(string); ok {
				f[name] = v
			}
		}
		if len(f) == 0 {
			// None of the fields: a key that is gone, or a hash holding
			// none of them. Only EXISTS can tell.
			unknown = append(unknown, i)
		}
		out[i].fields = f
	}
	exists, err := s.existsAt(ctx, keys, unknown)
	if err != nil {
		return nil, err
	}
	for j, i := range unknown {
		if !exists[j] {
			out[i].fields = nil
		}
	}
	return out, nil
}

// existsAt asks EXISTS for keys[i] of every i in idx, in one pipeline: the
// reads ask it only where a field read could not tell a missing key from a
// hash without those fields, which saves a command per key.
func (s *Set) existsAt(ctx context.Context, keys []string, idx []int) ([]bool, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	names := make([]string, len(idx))
	for j, i := range idx {
		names[j] = keys[i]
	}
	return s.exists(ctx, names)
}

func namedLikeSummary(key string) bool {
	for _, p := range V0Parses(key) {
		if p.Kind == KindSummary {
			return true
		}
	}
	return false
}

func (s *Set) exists(ctx context.Context, keys []string) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Exists(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]bool, len(keys))
	for i := range keys {
		n, err := cmds[i].Result()
		if err != nil {
			return nil, pipeErr(err, "EXISTS", keys, i)
		}
		out[i] = n == 1
	}
	return out, nil
}

func (s *Set) checkV1(ctx context.Context, keys []string, w work, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	vals, err := s.readV1(ctx, keys)
	if err != nil {
		return err
	}
	labels := w.v1Labels()
	for i, k := range keys {
		v := vals[i]
		for _, l := range labels {
			t.Add(l, func(c *report.Counts) { c.Scanned++ })
		}
		switch {
		case v.err != nil:
			for _, l := range labels {
				t.Fail(l, report.Issue{Key: k, Reason: "not a hash: " + v.err.Error()})
			}
			continue
		case !v.exists:
			for _, l := range labels {
				t.Add(l, func(c *report.Counts) { c.Skipped++ })
			}
			continue
		}
		if w.do002 {
			pending, failed := false, false
			for j, f := range TimestampFields {
				if v.ts[j] == nil {
					continue
				}
				_, changed, err := ToUnixMilli(*v.ts[j])
				if err != nil {
					t.Issue(Timestamps, badTimestamp{f, *v.ts[j]}.issue(k))
					failed = true
				} else if changed {
					pending = true
				}
			}
			t.Add(Timestamps, func(c *report.Counts) {
				switch {
				case failed:
					c.Failed++
				case pending:
					c.Changed++
				default:
					c.Unchanged++
				}
			})
		}
		if w.do003 {
			t.Add(Entity, func(c *report.Counts) { countChange(c, !v.hasEntity) })
		}
	}
	return nil
}

// Verify returns a read-only step checking that the applied migrations hold:
// 001: every legacy key has its twin with the same fields (timestamps equal
// as instants once 002 is applied; entity allowed once 003 is) and a TTL
// exactly when the legacy key has one; 002: no created_at/updated_at on
// hash-tagged records that is not Unix milliseconds; 003: every hash-tagged
// tenant/destination has the right entity. Every key checked counts once
// per migration (Checked, Passed or Failed); keys gone since SCAN are not
// counted.
func (s *Set) Verify(applied []string) scan.Step {
	v001, v002, v003 := has(applied, HashTags), has(applied, Timestamps), has(applied, Entity)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, v001, v002 || v003, nil, func(k, reason string) {
			for _, l := range applied {
				t.Issue(l, report.Issue{Key: k, Reason: reason})
				tallyCheck(t, l, false)
			}
		})
		if err != nil {
			return err
		}
		v0, v1, v1keys := srt.v0, srt.v1, srt.v1keys
		if v001 {
			if err := s.verifyLegacy(ctx, v0, v002, v003, t, HashTags); err != nil {
				return err
			}
		}
		if len(v1) == 0 {
			return nil
		}
		vals, err := s.readV1(ctx, v1)
		if err != nil {
			return err
		}
		for i, k := range v1 {
			v := vals[i]
			if v.err != nil {
				for _, l := range []string{Timestamps, Entity} {
					if has(applied, l) {
						t.Issue(l, report.Issue{Key: k, Reason: "not a hash: " + v.err.Error()})
						tallyCheck(t, l, false)
					}
				}
				continue
			}
			if !v.exists {
				continue // expired or deleted since SCAN
			}
			if v002 {
				ok := true
				for j, f := range TimestampFields {
					if v.ts[j] == nil {
						continue
					}
					if _, changed, err := ToUnixMilli(*v.ts[j]); err != nil || changed {
						ok = false
						t.Issue(Timestamps, report.Issue{Key: k, Field: f, Reason: "not Unix milliseconds", Actual: shown(f, *v.ts[j])})
					}
				}
				tallyCheck(t, Timestamps, ok)
			}
			if v003 {
				want := v1keys[i].Kind.Entity()
				ok := v.hasEntity && v.entity == want
				if !ok {
					reason := "entity missing"
					if v.hasEntity {
						reason = "wrong entity"
					}
					t.Issue(Entity, report.Issue{Key: k, Field: "entity", Reason: reason, Expected: want, Actual: v.entity})
				}
				tallyCheck(t, Entity, ok)
			}
		}
		return nil
	}
}

func tallyCheck(t *scan.Tally, label string, ok bool) {
	t.Add(label, func(c *report.Counts) {
		c.Scanned++
		c.Checked++
		if ok {
			c.Passed++
		} else {
			c.Failed++
		}
	})
}

// pair is a legacy record and its twin, as compared.
type pair struct {
	key    string
	fields map[string]string
	ok     bool
}

// compareTwins reads legacy records and their twins and compares them; it
// records one check per legacy key under label and returns the records that
// passed (for cleanup).
func (s *Set) compareTwins(ctx context.Context, keys []string, converted, entity bool, t *scan.Tally, label string) ([]pair, error) {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return nil, err
	}
	var twinNames []string
	var idx []int
	classified := make([]Key, len(keys))
	for i, k := range keys {
		r := recs[i]
		switch {
		case r.err != nil:
			t.Issue(label, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
			tallyCheck(t, label, false)
			continue
		case r.fields == nil:
			// Gone since SCAN (expired, or deleted): nothing to compare.
			t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			t.Issue(label, report.Issue{Key: k, Reason: err.Error()})
			tallyCheck(t, label, false)
			continue
		}
		classified[i] = key
		twinNames = append(twinNames, key.V1(s.prefix))
		idx = append(idx, i)
	}
	twins, err := s.readRecords(ctx, twinNames)
	if err != nil {
		return nil, err
	}
	// A legacy key with a TTL whose twin is missing may have expired with
	// its twin after it was read: it fails only if it is still there.
	var recheck []string
	for j, i := range idx {
		if recs[i].has() && twins[j].fields == nil && twins[j].err == nil {
			recheck = append(recheck, keys[i])
		}
	}
	still, err := s.exists(ctx, recheck)
	if err != nil {
		return nil, err
	}
	var out []pair
	m := 0
	for j, i := range idx {
		k, r, tw := keys[i], recs[i], twins[j]
		if r.has() && tw.fields == nil && tw.err == nil {
			m++
			if !still[m-1] {
				t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
				continue
			}
		}
		issue := twinDiff(classified[i], s.prefix, r, tw, converted, entity)
		if issue != nil {
			issue.Key = k
			t.Issue(label, *issue)
		}
		tallyCheck(t, label, issue == nil)
		out = append(out, pair{key: k, fields: r.fields, ok: issue == nil})
	}
	return out, nil
}

// ttlSlackMS is how far the twin's remaining TTL may be from the legacy
// key's: they were equal when copied and count down together.
const ttlSlackMS = 60_000

// twinDiff returns the first difference between a legacy record and its
// twin (fields in name order, so a rerun names the same one), or nil.
func twinDiff(k Key, prefix string, v0, twin record, converted, entity bool) *report.Issue {
	name := k.V1(prefix)
	switch {
	case twin.err != nil:
		return &report.Issue{Object: name, Reason: "twin is not a hash"}
	case twin.fields == nil:
		return &report.Issue{Object: name, Reason: "twin missing"}
	}
	for _, f := range sortedFields(v0.fields) {
		v := v0.fields[f]
		tv, ok := twin.fields[f]
		if !ok {
			return &report.Issue{Object: name, Field: f, Reason: "field missing on twin", Expected: shown(f, v)}
		}
		if tv == v {
			continue
		}
		if converted && k.Kind != KindSummary && isTimestampField(f) && SameInstant(v, tv) {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "field differs", Expected: shown(f, v), Actual: shown(f, tv)}
	}
	for _, f := range sortedFields(twin.fields) {
		if _, ok := v0.fields[f]; ok {
			continue
		}
		tv := twin.fields[f]
		if f == "entity" && entity && tv == k.Kind.Entity() {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "extra field on twin", Actual: shown(f, tv)}
	}
	if v0.has() != twin.has() {
		return &report.Issue{Object: name, Field: "ttl", Reason: "TTL differs", Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
	}
	if v0.has() {
		if abs(twin.at-v0.at) > ttlSlackMS {
			return &report.Issue{Object: name, Field: "ttl", Reason: fmt.Sprintf("TTL differs by more than %ds", ttlSlackMS/1000), Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
		}
	}
	return nil
}

func sortedFields(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// plainFields are shown as they are in issues; any other value (the
// encrypted credentials and delivery_metadata, config that may hold a
// password in a URL, metadata, summary entries) is shown as its length and
// a digest, enough to tell two values apart without printing them.
var plainFields = map[string]bool{
	"id": true, "type": true, "topics": true, "entity": true,
	"created_at": true, "updated_at": true, "disabled_at": true, "deleted_at": true,
}

func shown(field, v string) string {
	if plainFields[field] && utf8.ValidString(v) && len(v) <= 200 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return fmt.Sprintf("<%d bytes, sha256 %x>", len(v), sum[:8])
}

func isTimestampField(f string) bool {
	for _, x := range TimestampFields {
		if x == f {
			return true
		}
	}
	return false
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// Cleanup removes legacy keys whose twins verify, each with a script that
// deletes it only if it still holds exactly what was compared (a record
// changed since is kept and reported). It requires 001 applied. Counts:
// every legacy key is Checked once, Passed or Failed; Deleted counts the
// removed ones, Skipped the ones gone since SCAN.
func (s *Set) Cleanup() (scan.Step, []string) {
	step := func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, true, false, nil, func(k, reason string) {
			t.Issue(HashTags, report.Issue{Key: k, Reason: reason + "; kept"})
			tallyCheck(t, HashTags, false)
		})
		if err != nil {
			return err
		}
		v0 := srt.v0
		if len(v0) == 0 {
			return nil
		}
		// Compare as verify does once every migration is applied: the
		// allowances (timestamps equal as instants, an entity field) hold
		// whether 002/003 ran or not, and nothing else may differ.
		pairs, err := s.compareTwins(ctx, v0, true, true, t, HashTags)
		if err != nil {
			return err
		}
		var del []pair
		for _, p := range pairs {
			if p.ok {
				del = append(del, p)
			}
		}
		if len(del) == 0 {
			return nil
		}
		if h := beforeWrite; h != nil {
			ks := make([]string, len(del))
			for i, p := range del {
				ks[i] = p.key
			}
			h(ctx, ks)
		}
		results, err := s.runScript(ctx, deleteIfSameScript, len(del), func(i int) ([]string, []any) {
			args := make([]any, 0, 2*len(del[i].fields))
			for f, v := range del[i].fields {
				args = append(args, f, v)
			}
			return []string{del[i].key}, args
		})
		if err != nil {
			return err
		}
		for i, r := range results {
			switch {
			case r.err != nil:
				t.Add(HashTags, func(c *report.Counts) { c.Passed--; c.Failed++ })
				t.Issue(HashTags, report.Issue{Key: del[i].key, Reason: "delete: " + r.err.Error()})
			case r.val == 1:
				t.Add(HashTags, func(c *report.Counts) { c.Deleted++ })
			case r.val == 0:
				// Counted as checked and passed by compareTwins: it fails
				// now instead.
				t.Add(HashTags, func(c *report.Counts) { c.Passed--; c.Failed++ })
				t.Issue(HashTags, report.Issue{Key: del[i].key, Reason: "changed after it was compared with its twin; kept (rerun cleanup)"})
			case r.val == -1:
				t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			}
		}
		return nil
	}
	return step, []string{HashTags}
}
