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
//   - the twin differs, this pass created it and no other client has
//     written it since: re-copied with compare-and-set against the twin as
//     read, which is the twin as first written;
//   - otherwise (the twin was changed by another client, or existed before
//     the pass): neither is overwritten, the key is reported (Failed).
//
// Hash-tagged records others wrote get the edits of 002/003 (compare-and-
// set, as in the pass). Issues and Failed go under the migrations' labels,
// so that a reported key keeps its migration from being recorded applied;
// the outcomes are counted under the Others* labels.
func (s *Set) CatchUp(ctx context.Context, todo, done, changed []string, t *scan.Tally) error {
	w := newWork(todo, done)
	touched := map[string]bool{}
	for _, k := range changed {
		if _, ok := ParseV1(s.prefix, k); ok {
			touched[k] = true
		}
	}
	for lo := 0; lo < len(changed); lo += catchUpChunk {
		keys := changed[lo:min(lo+catchUpChunk, len(changed))]
		srt, err := s.sortKeys(ctx, keys, w.copy, w.do002 || w.do003, nil, func(k, reason string) {
			for _, l := range todo {
				t.Fail(l, report.Issue{Key: k, Reason: reason})
			}
			bump(t, OthersReported)
		})
		if err != nil {
			return err
		}
		v0, v1, v1keys := srt.v0, srt.v1, srt.v1keys
		if err := s.catchUpV0(ctx, v0, w, touched, t); err != nil {
			return err
		}
		if err := s.catchUpV1(ctx, v1, v1keys, w, t); err != nil {
			return err
		}
	}
	return nil
}

func bump(t *scan.Tally, label string) { t.Add(label, func(c *report.Counts) { c.Changed++ }) }

// catchUpV1 runs the pass's edits of 002/003 on hash-tagged records other
// clients wrote.
func (s *Set) catchUpV1(ctx context.Context, keys []string, parsed []Key, w work, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	sub := scan.NewTally()
	if err := s.updateV1(ctx, keys, parsed, w, sub); err != nil {
		return err
	}
	for _, l := range w.v1Labels() {
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
func (s *Set) catchUpV0(ctx context.Context, keys []string, w work, touched map[string]bool, t *scan.Tally) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	report1 := func(key, object, reason string) {
		t.Fail(HashTags, report.Issue{Key: key, Object: object, Reason: reason})
		bump(t, OthersReported)
	}
	var cs []catchCand
	var names, gone []string
	for i, k := range keys {
		r := recs[i]
		switch {
		case r.err != nil:
			report1(k, "", "changed by another client during apply and now not a hash: "+r.err.Error())
			continue
		case r.fields == nil:
			gone = append(gone, k)
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			report1(k, "", "changed by another client during apply: "+err.Error())
			continue
		}
		fields, bad, _, _ := twinFields(key, r.fields, w)
		if len(bad) > 0 && w.do002 && key.Kind != KindSummary {
			for _, b := range bad {
				t.Issue(Timestamps, b.issue(key.V1(s.prefix)))
			}
			t.Add(Timestamps, func(c *report.Counts) { c.Failed++ })
		}
		cs = append(cs, catchCand{key: k, k: key, rec: r, fields: fields})
		names = append(names, key.V1(s.prefix))
	}
	if err := s.catchUpGone(ctx, gone, touched, report1, t); err != nil {
		return err
	}
	twins, err := s.readRecords(ctx, names)
	if err != nil {
		return err
	}
	var create []twinWrite
	var createFor []string
	var recopy []int
	for j, c := range cs {
		tw, name := twins[j], names[j]
		switch {
		case tw.err != nil:
			report1(c.key, name, "changed by another client during apply; its twin is not a hash")
		case tw.fields == nil:
			create = append(create, twinWrite{name: name, fields: c.fields, expiry: c.rec.expiry})
			createFor = append(createFor, c.key)
		case twinDiff(c.k, s.prefix, c.rec, tw, w.convert, w.entity) == nil:
			bump(t, OthersRight)
		case s.created.has(name) && !touched[name]:
			recopy = append(recopy, j)
		default:
			report1(c.key, name, "changed by another client during apply after its copy, and its twin was changed by another client too (or existed before this run): neither is overwritten; stop the old server, reconcile the two records and rerun apply")
		}
	}
	if err := s.catchUpCreate(ctx, create, createFor, report1, t); err != nil {
		return err
	}
	return s.recopy(ctx, cs, names, twins, recopy, report1, t)
}

// catchCand is a legacy record others wrote: its name, what it is, as
// read, and the fields its twin should hold.
type catchCand struct {
	key    string
	k      Key
	rec    record
	fields map[string]string
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

func (s *Set) catchUpCreate(ctx context.Context, ws []twinWrite, legacy []string, report1 func(key, object, reason string), t *scan.Tally) error {
	if len(ws) == 0 {
		return nil
	}
	res, err := s.writeTwins(ctx, ws)
	if err != nil {
		return err
	}
	for i, r := range res {
		switch {
		case r.err != nil:
			report1(legacy[i], ws[i].name, "copy: "+r.err.Error())
		case r.val == 1:
			bump(t, OthersMigrated)
		default:
			report1(legacy[i], ws[i].name, "another client created the twin while apply was copying it: neither is overwritten; rerun apply")
		}
	}
	return nil
}

// recopy writes the twins of cs[idx] again, each only if it still holds
// exactly what was read.
func (s *Set) recopy(ctx context.Context, cs []catchCand, names []string, twins []record, idx []int, report1 func(key, object, reason string), t *scan.Tally) error {
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
			report1(cs[j].key, names[j], "re-copy: "+r.err.Error())
		case r.val == 1:
			bump(t, OthersRecopied)
		default:
			report1(cs[j].key, names[j], "changed by another client during apply after its copy, and its twin changed while apply was re-copying it: neither is overwritten; rerun apply")
		}
	}
	return nil
}

// recopyScript replaces a twin with a new copy only if it still holds
// exactly the fields and values read (no more, no fewer). Fenced like every
// write script (see fencePrelude): its own ARGV start at 3.
// KEYS[1] twin; ARGV[3] n, ARGV[4..2n+3] expected field, value pairs,
// ARGV[2n+4] the expiry as copyScript takes it, then the new field, value
// pairs. Returns 1 written, -1 gone, -2 changed since read.
var recopyScript = goredis.NewScript(fencePrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[1]) ~= n then return -2 end
for i = 4, 2 * n + 2, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return -2 end
end
redis.call('DEL', KEYS[1])
local m = #ARGV
local i = 2 * n + 5
while i <= m do
  local j = math.min(i + 199, m)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
local ttl = ARGV[2 * n + 4]
if string.sub(ttl, 1, 1) == '@' then
  redis.call('PEXPIREAT', KEYS[1], string.sub(ttl, 2))
elseif tonumber(ttl) > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`)
