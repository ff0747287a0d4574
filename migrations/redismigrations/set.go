// Package redismigrations holds Outpost's Redis migrations 001_hash_tags,
// 002_timestamps and 003_entity: what changes in each record, not how to walk
// a keyspace (package batch/scan does that and hands chunks to the steps
// here). Every step is idempotent, reads before it writes, writes each key
// atomically with a single-key script (so it works on Redis Cluster, where a
// v0 key and its v1 twin live in different slots), and checks each command's
// result.
//
// Each migration is a transform in the registry (transform.go): 001 copies
// legacy records to their hash-tagged names (copy.go), 002 and 003 each
// change fields (timestamps.go, entity.go). The set composes the pending
// transforms over every record it reads, in the registry's order, so that
// all of them run in one pass: on the copy 001 writes and in place on
// hash-tagged records.
//
// Corrections over Outpost's own migrator: keys are classified by suffix and
// content (ids may contain ':'), TTLs are kept, destinations missing from the
// summary are copied, 002/003 touch only hash-tagged keys (v0 keys stay
// byte-identical, so a roll-back still works), updates are compare-and-set
// and never re-create an expired key.
package redismigrations

import (
	"context"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// conflictRetries bounds how often one chunk retries keys that changed
// between read and write.
const conflictRetries = 3

// Set implements redisphase.Set for Outpost's Redis migrations.
type Set struct {
	c      goredis.UniversalClient
	prefix string
	// noRestore is set once the server refused RESTORE or failed the probe
	// (see writeTwins).
	noRestore atomic.Bool
	// noExpireTime is set once the server refused PEXPIRETIME (Redis 6,
	// an ACL without it): expiries are then read with a script (expiry).
	noExpireTime atomic.Bool
	// noCrossSlot is set once a cluster master refused a script with
	// flags (before Redis 7.0): fenced copies then go one script per twin.
	noCrossSlot atomic.Bool
	// useListpack: twins small enough (lp) are restored from listpack
	// payloads (Redis 7.0 on; see listpack.go), set by the probe.
	useListpack atomic.Bool
	lp          listpackLimits
	probe       sync.Once
	payloads    sync.Pool // *[]byte, RESTORE payloads of one chunk
	// others, when set, carries every write to tenant keys, so that the
	// server tells writes of other clients from the run's own (see
	// scan.Others).
	others *scan.Others
	// created is the set of twins the last apply pass created (see
	// written), for the catch-up.
	created *written
	// transforms are the migrations in order: the registry, or a test's.
	transforms []*transform
	// big is what the set knows of the server's limits (limits.go).
	big limitState
}

var _ redisphase.Set = (*Set)(nil)

// Migrations lists the registry's migrations in order.
func (s *Set) Migrations() []redisphase.Migration {
	out := make([]redisphase.Migration, len(s.transforms))
	for i, t := range s.transforms {
		out[i] = t.Migration
	}
	return out
}

// Spec walks every tenant key of the deployment, legacy and hash-tagged.
// No TYPE filter: a tenant key of the wrong type must be reported, not
// skipped.
func (s *Set) Spec() scan.Spec {
	return scan.Spec{Match: scan.EscapeGlob(s.prefix) + "tenant:*"}
}

// Apply returns the step that applies todo in one pass.
func (s *Set) Apply(todo, done []string) scan.Step {
	p := s.newPass(todo, done)
	var seen *written
	if p.copy {
		seen = newWritten()
	}
	s.created = seen
	var skip func(string) bool
	if seen != nil {
		skip = seen.has
	}
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, p.copy, len(p.edit) > 0, skip, failer(t, todo...))
		if err != nil {
			return err
		}
		v0, v1, v1keys, v1read := srt.v0, srt.v1, srt.v1keys, srt.v1read
		if err := s.copyLegacy(ctx, v0, p, t, seen); err != nil {
			return err
		}
		if seen != nil {
			// Twins this pass created are final and were counted when
			// created: not read, not counted again.
			n := 0
			for i, k := range v1 {
				if !seen.has(k) {
					v1[n], v1keys[n], v1read[n] = k, v1keys[i], v1read[i]
					n++
				}
			}
			v1, v1keys, v1read = v1[:n], v1keys[:n], v1read[:n]
		}
		return s.updateV1(ctx, v1, v1keys, v1read, p, t)
	}
}

// twinPlan is what 001 makes of one legacy record: the twin's name and
// the fields it gets, with what each field transform of the pass changed
// on the way.
type twinPlan struct {
	key, twin string
	k         Key
	fields    map[string]string
	outs      []outcome
	digest    uint32 // of what was written, when not fields (a big record streamed)
}

// planTwin counts a legacy record read for 001 as scanned and plans its
// twin. A record that is not a hash or cannot be classified is failed, one
// gone since SCAN skipped; ok is false for both.
func (s *Set) planTwin(t *scan.Tally, p pass, k string, r record) (tp twinPlan, ok bool) {
	t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
	switch {
	case r.err != nil:
		t.Fail(HashTags, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
		return tp, false
	case r.fields == nil:
		// Gone since SCAN (expired, deleted): nothing to copy.
		t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
		return tp, false
	}
	key, err := ClassifyV0(k, r.fields)
	if err != nil {
		t.Fail(HashTags, report.Issue{Key: k, Reason: err.Error()})
		return tp, false
	}
	fields, outs, _ := compose(key, r.fields, p.twin)
	return twinPlan{key: k, twin: key.V1(s.prefix), k: key, fields: fields, outs: outs}, true
}

// countFinal counts the work of the pass's field transforms on a twin that
// 001 writes, or would write, in its final form: it is theirs.
func (tp twinPlan) countFinal(t *scan.Tally, p pass) {
	for _, o := range tp.outs {
		if p.pending(o.t) {
			t.Add(o.t.Name, func(c *report.Counts) { c.Scanned++ })
			o.count(t, tp.twin, o.changed)
		}
	}
}

// copyV0 copies legacy records to their twins, remembering the twins it
// created in seen.
func (s *Set) copyV0(ctx context.Context, keys []string, p pass, t *scan.Tally, seen *written) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	if keys, recs, err = s.routeBig(ctx, keys, recs, p, t, seen); err != nil {
		return err
	}
	var ops []twinPlan
	var writes []twinWrite
	for i, k := range keys {
		if tp, ok := s.planTwin(t, p, k, recs[i]); ok {
			ops = append(ops, tp)
			writes = append(writes, twinWrite{name: tp.twin, fields: tp.fields, expiry: recs[i].expiry})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	aboutToWrite(ctx, len(ops), func(i int) string { return ops[i].twin })
	results, err := s.writeTwins(ctx, writes)
	if err != nil {
		return err
	}
	for i, o := range ops {
		s.countCopy(t, p, seen, o, results[i])
	}
	return nil
}

// beforeWrite, when set (by tests only), runs after a chunk's records were
// read and before the scripts that write them run: a test changes or
// deletes records in that window to prove that a stale read never
// overwrites and a vanished key is never re-created. It gets the keys
// about to be written.
var beforeWrite func(ctx context.Context, keys []string)

// aboutToWrite runs beforeWrite, when set, with the n keys key names.
func aboutToWrite(ctx context.Context, n int, key func(i int) string) {
	h := beforeWrite
	if h == nil {
		return
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = key(i)
	}
	h(ctx, keys)
}
