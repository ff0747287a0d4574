package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Check returns a read-only step that counts what apply would still do:
// Changed = keys still to change, Failed = keys it cannot convert.
func (s *Set) Check(todo, done []string) scan.Step {
	w := newWork(todo, done)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		v0, v1, v1keys := s.split(keys, w.copy, w.do002 || w.do003)
		if err := s.checkV0(ctx, v0, w, t); err != nil {
			return err
		}
		return s.checkV1(ctx, v1, v1keys, w, t)
	}
}

func (s *Set) checkV0(ctx context.Context, keys []string, w work, t *scan.Tally) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	var twins []string
	var kinds []twinWork
	for i, k := range keys {
		t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
		r := recs[i]
		switch {
		case r.err != nil:
			t.Fail(HashTags, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
			continue
		case r.fields == nil:
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			t.Fail(HashTags, report.Issue{Key: k, Reason: err.Error()})
			continue
		}
		_, bad, conv, ent := twinFields(key, r.fields, w)
		for _, b := range bad {
			label := Timestamps
			if !w.do002 {
				label = HashTags
			}
			t.Fail(label, report.Issue{Key: key.V1(s.prefix), Reason: "cannot convert: " + b})
		}
		twins = append(twins, key.V1(s.prefix))
		kinds = append(kinds, twinWork{kind: key.Kind, conv: conv, ent: ent})
	}
	exists, err := s.exists(ctx, twins)
	if err != nil {
		return err
	}
	for i := range twins {
		if exists[i] {
			// The twin is in the keyspace: 002/003 count it when the scan
			// reaches it.
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
			continue
		}
		t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
		// The copy apply will write is transformed by 002/003 too.
		if kinds[i].kind != KindSummary {
			if w.do002 {
				t.Add(Timestamps, func(c *report.Counts) { c.Scanned++; countChange(c, kinds[i].conv) })
			}
			if w.do003 {
				t.Add(Entity, func(c *report.Counts) { c.Scanned++; countChange(c, kinds[i].ent) })
			}
		}
	}
	return nil
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
			return nil, rediserr.Classify(err, "EXISTS "+keys[i])
		}
		out[i] = n == 1
	}
	return out, nil
}

func (s *Set) checkV1(ctx context.Context, keys []string, parsed []Key, w work, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	vals, err := s.readV1(ctx, keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		v := vals[i]
		if v.err != nil {
			t.Fail(Timestamps, report.Issue{Key: k, Reason: "not a hash: " + v.err.Error()})
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
					t.Issue(Timestamps, report.Issue{Key: k, Field: f, Reason: "cannot convert", Actual: *v.ts[j]})
					failed = true
				} else if changed {
					pending = true
				}
			}
			t.Add(Timestamps, func(c *report.Counts) {
				c.Scanned++
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
			t.Add(Entity, func(c *report.Counts) {
				c.Scanned++
				if v.hasEntity {
					c.Unchanged++
				} else {
					c.Changed++
				}
			})
		}
		_ = parsed
	}
	return nil
}

// Verify returns a read-only step checking that the applied migrations hold:
// 001: every legacy key has its twin with the same fields (timestamps equal
// as instants once 002 is applied; entity allowed once 003 is) and a TTL
// when the legacy key has one; 002: no RFC3339 created_at/updated_at left on
// hash-tagged records; 003: every hash-tagged tenant/destination has the
// right entity.
func (s *Set) Verify(applied []string) scan.Step {
	v001, v002, v003 := has(applied, HashTags), has(applied, Timestamps), has(applied, Entity)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		v0, v1, v1keys := s.split(keys, v001, v002 || v003)
		if v001 {
			if _, err := s.compareTwins(ctx, v0, v002, v003, t, HashTags); err != nil {
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
			if v002 {
				ok := v.err == nil
				for j, f := range TimestampFields {
					if v.ts[j] == nil || v.err != nil {
						continue
					}
					if _, changed, err := ToUnixMilli(*v.ts[j]); err != nil || changed {
						ok = false
						t.Issue(Timestamps, report.Issue{Key: k, Field: f, Reason: "not Unix milliseconds", Actual: *v.ts[j]})
					}
				}
				if v.err != nil {
					t.Issue(Timestamps, report.Issue{Key: k, Reason: "not a hash"})
				}
				tallyCheck(t, Timestamps, ok)
			}
			if v003 {
				want := v1keys[i].Kind.Entity()
				ok := v.err == nil && v.entity == want
				if !ok && v.err == nil {
					if !v.exists {
						// Expired between SCAN and read: nothing to check.
						continue
					}
					t.Issue(Entity, report.Issue{Key: k, Field: "entity", Reason: "wrong or missing entity", Expected: want, Actual: v.entity})
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
			continue // gone since SCAN
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
	var out []pair
	for j, i := range idx {
		k, r, tw := keys[i], recs[i], twins[j]
		issue := twinDiff(classified[i], r, tw, converted, entity)
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

func twinDiff(k Key, v0, twin record, converted, entity bool) *report.Issue {
	name := k.V1("")
	switch {
	case twin.err != nil:
		return &report.Issue{Object: name, Reason: "twin is not a hash"}
	case twin.fields == nil:
		return &report.Issue{Object: name, Reason: "twin missing"}
	}
	for f, v := range v0.fields {
		tv, ok := twin.fields[f]
		if !ok {
			return &report.Issue{Object: name, Field: f, Reason: "field missing on twin", Expected: v}
		}
		if tv == v {
			continue
		}
		if converted && isTimestampField(f) && SameInstant(v, tv) {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "field differs", Expected: v, Actual: tv}
	}
	for f, tv := range twin.fields {
		if _, ok := v0.fields[f]; ok {
			continue
		}
		if f == "entity" && entity && tv == k.Kind.Entity() {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "extra field on twin", Actual: tv}
	}
	if (v0.pttl > 0) != (twin.pttl > 0) {
		return &report.Issue{Object: name, Field: "ttl", Reason: "TTL differs", Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
	}
	if v0.pttl > 0 && abs(twin.pttl-v0.pttl) > ttlSlackMS {
		return &report.Issue{Object: name, Field: "ttl", Reason: fmt.Sprintf("TTL differs by more than %ds", ttlSlackMS/1000), Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
	}
	return nil
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
// deletes it only if it still holds what was compared. It requires 001.
func (s *Set) Cleanup() (scan.Step, []string) {
	step := func(ctx context.Context, keys []string, t *scan.Tally) error {
		v0, _, _ := s.split(keys, true, false)
		if len(v0) == 0 {
			return nil
		}
		// Compare as verify does once every migration is applied: the
		// phase runs cleanup only when they are.
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
				t.Fail(HashTags, report.Issue{Key: del[i].key, Reason: r.err.Error()})
			case r.val == 1:
				t.Add(HashTags, func(c *report.Counts) { c.Deleted++ })
			case r.val == 0:
				t.Fail(HashTags, report.Issue{Key: del[i].key, Reason: "changed after it was verified; kept"})
			}
		}
		return nil
	}
	return step, []string{HashTags}
}

type twinWork struct {
	kind      Kind
	conv, ent bool
}
