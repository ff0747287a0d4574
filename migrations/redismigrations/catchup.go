package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Labels of the catch-up's counts (Changed holds the number): what was
// done about the keys other clients changed during the pass.
const (
	OthersRight     = "others:right"     // legacy record and twin agree
	OthersMigrated  = "others:migrated"  // a legacy record without a twin: copied
	OthersRecopied  = "others:recopied"  // changed after its copy: copied again (compare-and-set)
	OthersConverted = "others:converted" // a hash-tagged record 002/003 had to edit
	OthersReported  = "others:reported"  // cannot be made right safely: an issue, exit 4
	OthersGone      = "others:gone"      // deleted, nothing to do
)

// catchUpChunk bounds the keys read in one pipeline.
const catchUpChunk = 500

// CatchUp makes right, or reports, what other clients changed during the
// apply pass of todo: changed are the keys the server named (scan.Others),
// legacy and hash-tagged. Its cost grows with len(changed), not with the
// keyspace. Per legacy record:
//   - its twin agrees with it (same fields, timestamps as the same instant,
//     entity allowed, TTL present alike): nothing to do;
//   - no twin: copied (RESTORE, never over a key that exists): a legacy key
//     created during the pass;
//   - the twin differs, this pass created it, it still holds what the
//     pass wrote (s.created.holds: the digest of what was written) and
//     no other client was seen to write it: re-copied with compare-and-set
//     against the twin as read, which is the twin as first written;
//   - otherwise (the twin was changed by another client, or existed before
//     the pass): neither is overwritten, the key is reported (Failed).
//
// Hash-tagged records others wrote get the pending field transforms
// (compare-and-set, as in the pass). Issues and Failed go under the migrations' labels,
// so that a reported key keeps its migration from being recorded applied;
// the outcomes are counted under the Others* labels.
func (s *Set) CatchUp(ctx context.Context, todo, done, changed []string, t *scan.Tally) error {
	p := s.newPass(todo, done)
	touched := map[string]bool{}
	for _, k := range changed {
		if _, ok := ParseV1(s.prefix, k); ok {
			touched[k] = true
		}
	}
	for lo := 0; lo < len(changed); lo += catchUpChunk {
		keys := changed[lo:min(lo+catchUpChunk, len(changed))]
		srt, err := s.sortKeys(ctx, keys, p.copy, len(p.edit) > 0, nil, func(k, reason string) {
			for _, l := range todo {
				t.Fail(l, report.Issue{Key: k, Reason: reason})
			}
			bump(t, OthersReported)
		})
		if err != nil {
			return err
		}
		v0, v1, v1keys := srt.v0, srt.v1, srt.v1keys
		if err := s.catchUpV0(ctx, v0, p, touched, t); err != nil {
			return err
		}
		if err := s.catchUpV1(ctx, v1, v1keys, p, t); err != nil {
			return err
		}
	}
	return nil
}

func bump(t *scan.Tally, label string) { t.Add(label, func(c *report.Counts) { c.Changed++ }) }

// catchUpV1 runs the pass's field transforms on hash-tagged records other
// clients wrote.
func (s *Set) catchUpV1(ctx context.Context, keys []string, parsed []Key, p pass, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	sub := scan.NewTally()
	if err := s.updateV1(ctx, keys, parsed, nil, p, sub); err != nil {
		return err
	}
	for _, l := range p.labels() {
		c := sub.Counts(l)
		t.Add(OthersConverted, func(d *report.Counts) { d.Changed += c.Changed })
		issues, _ := sub.Issues(l)
		for _, i := range issues {
			t.Issue(l, i)
		}
		t.Add(l, func(d *report.Counts) { d.Failed += c.Failed })
		t.Add(OthersReported, func(d *report.Counts) { d.Changed += c.Failed })
	}
	return nil
}

// catchUpV0 compares each legacy record others wrote with its twin and
// copies, re-copies or reports it.
func (s *Set) catchUpV0(ctx context.Context, keys []string, p pass, touched map[string]bool, t *scan.Tally) error {
	report1 := func(key, object, reason string) {
		t.Fail(HashTags, report.Issue{Key: key, Object: object, Reason: reason})
		bump(t, OthersReported)
	}
	var gone []string
	bad := func(k string, notHash bool, err error) {
		if notHash {
			report1(k, "", "changed by another client during apply and now not a hash: "+err.Error())
		} else {
			report1(k, "", "changed by another client during apply: "+err.Error())
		}
	}
	cs, names, twins, big, err := s.twinCands(ctx, keys, p, bad, func(k string) { gone = append(gone, k) })
	if err != nil {
		return err
	}
	for j, c := range cs {
		failBad(t, p, c.outs, names[j])
	}
	if err := s.catchUpGone(ctx, gone, touched, report1, t); err != nil {
		return err
	}
	var create, recopy []int
	for j, c := range cs {
		tw, name := twins[j], names[j]
		switch {
		case tw.err != nil:
			report1(c.key, name, "changed by another client during apply; its twin is not a hash")
		case tw.fields == nil:
			create = append(create, j)
		case twinDiff(c.k, s.prefix, c.rec, tw, p.twin) == nil:
			bump(t, OthersRight)
		case s.created.holds(name, s.created.digest(tw.fields)) && !touched[name]:
			recopy = append(recopy, j)
		default:
			report1(c.key, name, "changed by another client during apply after its copy, and its twin was changed by another client too (or existed before this run): neither is overwritten; stop the old server, reconcile the two records and rerun apply")
		}
	}
	r := redo{cs: cs, names: names, twins: twins, fail: report1,
		created: func() { bump(t, OthersMigrated) }, recopied: func() { bump(t, OthersRecopied) },
		existed: "another client created the twin while apply was copying it: neither is overwritten; rerun apply",
		changed: "changed by another client during apply after its copy, and its twin changed while apply was re-copying it: neither is overwritten; rerun apply"}
	if err := s.createTwins(ctx, r, create); err != nil {
		return err
	}
	if err := s.recopy(ctx, r, recopy); err != nil {
		return err
	}
	return s.catchUpBig(ctx, big, p, touched, r, bad, t)
}

// failBad reports the values of a copy (the twin name) that a pending
// field transform cannot migrate, failing the record for it.
func failBad(t *scan.Tally, p pass, outs []outcome, name string) {
	for _, o := range outs {
		if len(o.bad) == 0 || !p.pending(o.t) {
			continue
		}
		for _, i := range o.bad {
			i.Key = name
			t.Issue(o.t.Name, i)
		}
		t.Add(o.t.Name, func(c *report.Counts) { c.Failed++ })
	}
}

// catchUpGone handles legacy records another client deleted, or that
// expired, during the pass: nothing to do unless this pass had copied one
// and its twin outlives it (it exists without a TTL); a twin with a TTL
// expires with it (both were given the same TTL).
func (s *Set) catchUpGone(ctx context.Context, keys []string, touched map[string]bool, report1 func(key, object, reason string), t *scan.Tally) error {
	var names, legacy []string
	for _, k := range keys {
		found := false
		for _, p := range V0Parses(k) {
			if name := p.V1(s.prefix); s.created.has(name) && !touched[name] {
				names, legacy, found = append(names, name), append(legacy, k), true
				break
			}
		}
		if !found {
			bump(t, OthersGone)
		}
	}
	if len(names) == 0 {
		return nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.DurationCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.PTTL(ctx, n)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		d, err := c.Result()
		if err != nil {
			return rediserr.Classify(err, "PTTL "+names[i])
		}
		if d == -1 {
			report1(legacy[i], names[i], "deleted by another client during apply after its copy; the twin still exists: delete it if the record is meant to be gone")
			continue
		}
		bump(t, OthersGone)
	}
	return nil
}
