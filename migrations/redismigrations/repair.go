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
// twin as read; hash-tagged records get the applied field transforms
// (compare-and-set). Counts go under the migrations' names: Changed redone, Unchanged
// already right, Failed with an issue (changed while being redone, or not
// a record this tool can read).
func (s *Set) Repair(applied []string) scan.Step {
	p := s.newPass(applied, nil)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		fail := failer(t, applied...)
		srt, err := s.sortKeys(ctx, keys, p.copy, len(p.edit) > 0, nil, func(k, reason string) {
			// A twin made unreadable (its id changed) is redone from its
			// legacy record when there is one.
			if key, ok := ParseV1(s.prefix, k); ok && p.copy && s.prefix == "" {
				if there, err := s.exists(ctx, []string{key.V0()}); err == nil && there[0] {
					return
				}
			}
			fail(k, reason)
		})
		if err != nil {
			return err
		}
		if err := s.repairV0(ctx, srt.v0, p, t); err != nil {
			return err
		}
		v1, v1keys, err := s.withoutLegacy(ctx, srt.v1, srt.v1keys, p)
		if err != nil {
			return err
		}
		return s.updateV1(ctx, v1, v1keys, nil, p, t)
	}
}

// withoutLegacy leaves out the hash-tagged records whose legacy record
// exists: repairV0 redoes those from it (002/003 editing them in place
// too would race with the re-copy).
func (s *Set) withoutLegacy(ctx context.Context, keys []string, parsed []Key, p pass) ([]string, []Key, error) {
	if !p.copy || s.prefix != "" || len(keys) == 0 {
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

func (s *Set) repairV0(ctx context.Context, keys []string, p pass, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	fail := func(k, object, reason string) {
		t.Fail(HashTags, report.Issue{Key: k, Object: object, Reason: reason})
	}
	bad := func(k string, notHash bool, err error) {
		if notHash {
			fail(k, "", "not a hash: "+err.Error())
		} else {
			fail(k, "", err.Error())
		}
	}
	gone := func(string) { t.Add(HashTags, func(c *report.Counts) { c.Skipped++ }) }
	cs, names, twins, big, err := s.twinCands(ctx, keys, p, bad, gone)
	if err != nil {
		return err
	}
	t.Add(HashTags, func(c *report.Counts) { c.Scanned += int64(len(keys)) })
	var create, redone []int
	for j, c := range cs {
		switch tw := twins[j]; {
		case tw.err != nil:
			fail(c.key, names[j], twinNotHash)
		case tw.fields == nil:
			create = append(create, j)
		case sameRecord(tw, c.fields, c.rec.expiry):
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
		default:
			redone = append(redone, j)
		}
	}
	changed := func() { t.Add(HashTags, func(c *report.Counts) { c.Changed++ }) }
	r := redo{cs: cs, names: names, twins: twins, fail: fail, created: changed, recopied: changed,
		existed: "created by another client while being repaired; rerun apply --repair",
		changed: "the twin changed or vanished while being repaired; rerun apply --repair"}
	if err := s.createTwins(ctx, r, create); err != nil {
		return err
	}
	if err := s.recopy(ctx, r, redone); err != nil {
		return err
	}
	return s.redoBig(ctx, big, p, bigRedo{r: r, bad: bad, gone: gone, exact: true, twinNotHash: twinNotHash,
		issue:     func(i report.Issue) { t.Fail(HashTags, i) },
		right:     func() { t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ }) },
		mayRecopy: func(context.Context, string) (bool, error) { return true, nil },
	})
}

// twinNotHash is why repair leaves a twin of another type alone.
const twinNotHash = "the twin is not a hash; remove it and rerun apply --repair"

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
