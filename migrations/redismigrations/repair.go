package redismigrations

import (
	"context"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

var _ redisphase.Repairer = (*Set)(nil)

// Repair returns the step of apply --repair over the applied migrations:
// every legacy record whose twin is missing gets one (RESTORE, never over a
// key that exists); a twin that differs from what its legacy record makes
// of it (what verify reports) is copied again, compare-and-set against the
// twin as read; hash-tagged records get the edits of 002/003 (compare-and-
// set). Counts go under the migrations' names: Changed redone, Unchanged
// already right, Failed with an issue (changed while being redone, or not
// a record this tool can read).
func (s *Set) Repair(applied []string) scan.Step {
	w := newWork(applied, nil)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		fail := failer(t, applied...)
		srt, err := s.sortKeys(ctx, keys, w.copy, w.do002 || w.do003, nil, func(k, reason string) {
			// A twin made unreadable (its id changed) is redone from its
			// legacy record when there is one.
			if p, ok := ParseV1(s.prefix, k); ok && w.copy && s.prefix == "" {
				if there, err := s.exists(ctx, []string{p.V0()}); err == nil && there[0] {
					return
				}
			}
			fail(k, reason)
		})
		if err != nil {
			return err
		}
		if err := s.repairV0(ctx, srt.v0, w, t); err != nil {
			return err
		}
		v1, v1keys, err := s.withoutLegacy(ctx, srt.v1, srt.v1keys, w)
		if err != nil {
			return err
		}
		return s.updateV1(ctx, v1, v1keys, w, t)
	}
}

// withoutLegacy leaves out the hash-tagged records whose legacy record
// exists: repairV0 redoes those from it (002/003 editing them in place
// too would race with the re-copy).
func (s *Set) withoutLegacy(ctx context.Context, keys []string, parsed []Key, w work) ([]string, []Key, error) {
	if !w.copy || s.prefix != "" || len(keys) == 0 {
		return keys, parsed, nil
	}
	legacy := make([]string, len(parsed))
	for i, k := range parsed {
		legacy[i] = k.V0()
	}
	there, err := s.exists(ctx, legacy)
	if err != nil {
		return nil, nil, err
	}
	var outK []string
	var outP []Key
	for i := range keys {
		if !there[i] {
			outK, outP = append(outK, keys[i]), append(outP, parsed[i])
		}
	}
	return outK, outP, nil
}

func (s *Set) repairV0(ctx context.Context, keys []string, w work, t *scan.Tally) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	fail := func(k, object, reason string) {
		t.Fail(HashTags, report.Issue{Key: k, Object: object, Reason: reason})
	}
	var cs []catchCand
	var names []string
	for i, k := range keys {
		t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
		r := recs[i]
		switch {
		case r.err != nil:
			fail(k, "", "not a hash: "+r.err.Error())
			continue
		case r.fields == nil:
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			fail(k, "", err.Error())
			continue
		}
		fields, _, _, _ := twinFields(key, r.fields, w)
		cs = append(cs, catchCand{key: k, k: key, rec: r, fields: fields})
		names = append(names, key.V1(s.prefix))
	}
	twins, err := s.readRecords(ctx, names)
	if err != nil {
		return err
	}
	var create []twinWrite
	var createFor []string
	var redo []int
	for j, c := range cs {
		switch tw := twins[j]; {
		case tw.err != nil:
			fail(c.key, names[j], "the twin is not a hash; remove it and rerun apply --repair")
		case tw.fields == nil:
			create = append(create, twinWrite{name: names[j], fields: c.fields, expiry: c.rec.expiry})
			createFor = append(createFor, c.key)
		case sameRecord(tw, c.fields, c.rec.expiry):
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
		default:
			redo = append(redo, j)
		}
	}
	if len(create) > 0 {
		res, err := s.writeTwins(ctx, create)
		if err != nil {
			return err
		}
		for i, r := range res {
			switch {
			case r.err != nil:
				fail(createFor[i], create[i].name, "copy: "+r.err.Error())
			case r.val == 1:
				t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
			default:
				fail(createFor[i], create[i].name, "created by another client while being repaired; rerun apply --repair")
			}
		}
	}
	return s.repairRecopy(ctx, cs, names, twins, redo, fail, t)
}

// repairRecopy copies the legacy records cs[idx] again over their twins,
// each only if the twin still holds what was read.
func (s *Set) repairRecopy(ctx context.Context, cs []catchCand, names []string, twins []record, idx []int, fail func(k, object, reason string), t *scan.Tally) error {
	if len(idx) == 0 {
		return nil
	}
	res, err := s.runScript(ctx, recopyScript, len(idx), func(i int) ([]string, []any) {
		j := idx[i]
		old := twins[j].fields
		args := make([]any, 0, 2+2*len(old)+2*len(cs[j].fields))
		args = append(args, len(old))
		for f, v := range old {
			args = append(args, f, v)
		}
		args = append(args, cs[j].rec.expiry.scriptArg())
		for f, v := range cs[j].fields {
			args = append(args, f, v)
		}
		return []string{names[j]}, args
	})
	if err != nil {
		return err
	}
	for i, r := range res {
		j := idx[i]
		switch {
		case r.err != nil:
			fail(cs[j].key, names[j], "re-copy: "+r.err.Error())
		case r.val == 1:
			t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
		default:
			fail(cs[j].key, names[j], "the twin changed or vanished while being repaired; rerun apply --repair")
		}
	}
	return nil
}

// sameRecord says whether twin holds exactly fields and has a TTL exactly
// when the legacy record does (what apply writes, byte for byte).
func sameRecord(twin record, fields map[string]string, e expiry) bool {
	if len(twin.fields) != len(fields) || twin.has() != e.has() {
		return false
	}
	for f, v := range fields {
		if tv, ok := twin.fields[f]; !ok || tv != v {
			return false
		}
	}
	return true
}
