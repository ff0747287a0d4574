package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Check returns a read-only step that counts, per migration of todo, what
// apply would still do: Changed = keys still to change, Unchanged = keys
// already right, Failed = keys it cannot migrate (with an issue each),
// Skipped = keys gone since SCAN. A legacy key whose twin apply would
// create also counts for the pending field transforms (apply writes the
// twin in its final form); a legacy key whose twin exists counts for 001
// only.
func (s *Set) Check(todo, done []string) scan.Step {
	p := s.newPass(todo, done)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, p.copy, len(p.edit) > 0, nil, failer(t, todo...))
		if err != nil {
			return err
		}
		if err := s.checkV0(ctx, srt.v0, p, t); err != nil {
			return err
		}
		return s.checkV1(ctx, srt.v1, srt.v1keys, p, t)
	}
}

func (s *Set) checkV0(ctx context.Context, keys []string, p pass, t *scan.Tally) error {
	recs, err := s.readForCheck(ctx, keys)
	if err != nil {
		return err
	}
	var todo []twinPlan
	for i, k := range keys {
		if tp, ok := s.planTwin(t, p, k, recs[i]); ok {
			todo = append(todo, tp)
		}
	}
	twins := make([]string, len(todo))
	for i, tp := range todo {
		twins[i] = tp.twin
	}
	exists, err := s.exists(ctx, twins)
	if err != nil {
		return err
	}
	// A legacy key without its twin may have expired (with its twin) after
	// it was read: it is left to do only if it is still there.
	var missing []string
	for i, tp := range todo {
		if !exists[i] {
			missing = append(missing, tp.key)
		}
	}
	still, err := s.exists(ctx, missing)
	if err != nil {
		return err
	}
	m := 0
	for i, tp := range todo {
		if exists[i] {
			// The twin is in the keyspace: the field transforms count it
			// when the scan reaches it, and it is never overwritten.
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
			continue
		}
		m++
		if !still[m-1] {
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			continue
		}
		t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
		// The copy apply will write is transformed by the pass's field
		// transforms too.
		tp.countFinal(t, p)
	}
	return nil
}

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
	// The fields that decide, for a legacy key that cannot be a summary,
	// what ClassifyV0 (id, deleted_at) and the transforms make of it.
	checkFields := s.v1Fields()
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
				return nil, rediserr.Classify(err, "read "+keys[i])
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
			return nil, rediserr.Classify(err, "EXISTS "+keys[i])
		}
		out[i] = n == 1
	}
	return out, nil
}

func (s *Set) checkV1(ctx context.Context, keys []string, parsed []Key, p pass, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	vals, err := s.readV1(ctx, keys)
	if err != nil {
		return err
	}
	labels := p.labels()
	for i, k := range keys {
		v := vals[i]
		for _, l := range labels {
			t.Add(l, func(c *report.Counts) { c.Scanned++ })
		}
		if !v.usable(t, labels, k) {
			continue
		}
		_, outs, _ := compose(parsed[i], v.fields, p.edit)
		for _, o := range outs {
			o.count(t, k, o.changed)
		}
	}
	return nil
}
