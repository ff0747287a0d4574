// Package redismigrations holds Outpost's Redis migrations 001_hash_tags,
// 002_timestamps and 003_entity: what changes in each record, not how to walk
// a keyspace (package batch/scan does that and hands chunks to the steps
// here). Every step is idempotent, reads before it writes, writes each key
// atomically with a single-key script (so it works on Redis Cluster, where a
// v0 key and its v1 twin live in different slots), and checks each command's
// result.
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

// The migrations, by the names Outpost records.
const (
	HashTags   = "001_hash_tags"
	Timestamps = "002_timestamps"
	Entity     = "003_entity"
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
	probe       sync.Once
	payloads    sync.Pool // *[]byte, RESTORE payloads of one chunk
	// others, when set, carries every write to tenant keys, so that the
	// server tells writes of other clients from the run's own (see
	// scan.Others).
	others *scan.Others
	// created is the set of twins the last apply pass created (see
	// written), for the catch-up.
	created *written
}

var _ redisphase.Set = (*Set)(nil)

// Migrations lists 001-003 in order.
func (s *Set) Migrations() []redisphase.Migration {
	return []redisphase.Migration{
		{Name: HashTags, Description: "copy every legacy tenant:* key to its hash-tagged name (cluster-safe), keeping fields byte for byte and TTLs; legacy keys are kept",
			NotApplicable: func(prefix string) string {
				if prefix != "" {
					return "DEPLOYMENT_ID is set: prefixed deployments always used hash-tagged keys"
				}
				return ""
			}, Copies: true},
		{Name: Timestamps, Description: "turn RFC3339 created_at/updated_at into Unix milliseconds on hash-tagged tenant and destination hashes"},
		{Name: Entity, Description: "set entity=tenant|destination where missing on hash-tagged tenant and destination hashes"},
	}
}

// Spec walks every tenant key of the deployment, legacy and hash-tagged.
// No TYPE filter: a tenant key of the wrong type must be reported, not
// skipped.
func (s *Set) Spec() scan.Spec {
	return scan.Spec{Match: scan.EscapeGlob(s.prefix) + "tenant:*"}
}

type work struct {
	copy         bool // 001 in todo
	convert      bool // the twin gets Unix ms (002 in todo or done)
	entity       bool // the twin gets entity (003 in todo or done)
	do002, do003 bool // 002/003 in todo: edit hash-tagged keys in place
}

func has(list []string, name string) bool {
	for _, v := range list {
		if v == name {
			return true
		}
	}
	return false
}

func newWork(todo, done []string) work {
	return work{
		copy:    has(todo, HashTags),
		convert: has(todo, Timestamps) || has(done, Timestamps),
		entity:  has(todo, Entity) || has(done, Entity),
		do002:   has(todo, Timestamps),
		do003:   has(todo, Entity),
	}
}

// badTimestamp is a created_at/updated_at that is neither Unix ms nor
// RFC3339.
type badTimestamp struct {
	field, value string
}

func (b badTimestamp) issue(key string) report.Issue {
	return report.Issue{Key: key, Field: b.field, Reason: "cannot convert: neither Unix milliseconds nor an RFC3339 time", Actual: shown(b.field, b.value)}
}

// twinFields is what the v1 twin of a v0 record holds after this run: the
// same fields, with the transforms of 002/003 when they are applied in the
// same pass or already were. Values that cannot be converted are kept as
// they are and returned.
func twinFields(k Key, fields map[string]string, w work) (out map[string]string, bad []badTimestamp, converted, entitySet bool) {
	out = make(map[string]string, len(fields)+1)
	for f, v := range fields {
		out[f] = v
	}
	if w.convert && k.Kind != KindSummary {
		for _, f := range TimestampFields {
			if v, ok := out[f]; ok {
				ms, changed, err := ToUnixMilli(v)
				if err != nil {
					bad = append(bad, badTimestamp{f, v})
					continue
				}
				if changed {
					out[f] = ms
					converted = true
				}
			}
		}
	}
	if w.entity && k.Kind.Entity() != "" {
		if _, ok := out["entity"]; !ok {
			out["entity"] = k.Kind.Entity()
			entitySet = true
		}
	}
	return out, bad, converted, entitySet
}

// Apply returns the step that applies todo in one pass.
func (s *Set) Apply(todo, done []string) scan.Step {
	w := newWork(todo, done)
	var seen *written
	if w.copy {
		seen = newWritten()
	}
	s.created = seen
	var skip func(string) bool
	if seen != nil {
		skip = seen.has
	}
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, w.copy, w.do002 || w.do003, skip, failer(t, todo...))
		if err != nil {
			return err
		}
		v0, v1, v1keys := srt.v0, srt.v1, srt.v1keys
		if err := s.copyV0(ctx, v0, w, t, seen); err != nil {
			return err
		}
		if seen != nil {
			// Twins this pass created are final and were counted when
			// created: not read, not counted again.
			n := 0
			for i, k := range v1 {
				if !seen.has(k) {
					v1[n], v1keys[n] = k, v1keys[i]
					n++
				}
			}
			v1, v1keys = v1[:n], v1keys[:n]
		}
		return s.updateV1(ctx, v1, v1keys, w, t)
	}
}

// twinPlan is what 001 makes of one legacy record: the twin's name and
// kind, and what 002/003 change in its fields on the way (timestamps
// converted, entity set, values that cannot be converted).
type twinPlan struct {
	key, twin         string
	kind              Kind
	converted, entity bool
	bad               []badTimestamp
}

// planTwin counts a legacy record read for 001 as scanned and plans its
// twin, whose fields it returns. A record that is not a hash or cannot be
// classified is failed, one gone since SCAN skipped; ok is false for both.
func (s *Set) planTwin(t *scan.Tally, w work, k string, r record) (p twinPlan, fields map[string]string, ok bool) {
	t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
	switch {
	case r.err != nil:
		t.Fail(HashTags, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
		return p, nil, false
	case r.fields == nil:
		// Gone since SCAN (expired, deleted): nothing to copy.
		t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
		return p, nil, false
	}
	key, err := ClassifyV0(k, r.fields)
	if err != nil {
		t.Fail(HashTags, report.Issue{Key: k, Reason: err.Error()})
		return p, nil, false
	}
	fields, bad, conv, ent := twinFields(key, r.fields, w)
	return twinPlan{key: k, twin: key.V1(s.prefix), kind: key.Kind, converted: conv, entity: ent, bad: bad}, fields, true
}

// countFinal counts the work of 002/003 (those of w's todo) on a twin that
// 001 writes, or would write, in its final form: it is theirs. Summaries
// are not theirs to edit.
func (p twinPlan) countFinal(t *scan.Tally, w work) {
	if p.kind == KindSummary {
		return
	}
	if w.do002 {
		for _, b := range p.bad {
			t.Issue(Timestamps, b.issue(p.twin))
		}
		t.Add(Timestamps, func(c *report.Counts) {
			c.Scanned++
			if len(p.bad) > 0 {
				c.Failed++
			} else {
				countChange(c, p.converted)
			}
		})
	}
	if w.do003 {
		t.Add(Entity, func(c *report.Counts) { c.Scanned++; countChange(c, p.entity) })
	}
}

// copyV0 copies legacy records to their twins, remembering the twins it
// created in seen.
func (s *Set) copyV0(ctx context.Context, keys []string, w work, t *scan.Tally, seen *written) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	type op struct {
		twinPlan
		write twinWrite
	}
	var ops []op
	for i, k := range keys {
		p, fields, ok := s.planTwin(t, w, k, recs[i])
		if !ok {
			continue
		}
		ops = append(ops, op{twinPlan: p, write: twinWrite{name: p.twin, fields: fields, expiry: recs[i].expiry}})
	}
	if len(ops) == 0 {
		return nil
	}
	if h := beforeWrite; h != nil {
		twins := make([]string, len(ops))
		for i, o := range ops {
			twins[i] = o.twin
		}
		h(ctx, twins)
	}
	writes := make([]twinWrite, len(ops))
	for i, o := range ops {
		writes[i] = o.write
	}
	results, err := s.writeTwins(ctx, writes)
	if err != nil {
		return err
	}
	for i, o := range ops {
		switch res := results[i]; {
		case res.err != nil:
			t.Fail(HashTags, report.Issue{Key: o.key, Reason: "copy to " + o.twin + ": " + res.err.Error()})
		case res.val == 1:
			t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
			// The twin was written in its final form: count the work of
			// 002/003 on it as theirs (the scan skips it if it reaches it
			// later in this pass).
			o.countFinal(t, w)
			seen.add(o.twin)
		default:
			// The twin exists: copied by an earlier run, or written by the
			// new server. Never overwritten; 002/003 reach it on their own
			// because it is in the keyspace this pass walks.
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
		}
	}
	return nil
}

// beforeWrite, when set (by tests only), runs after a chunk's records were
// read and before the scripts that write them run: a test changes or
// deletes records in that window to prove that a stale read never
// overwrites and a vanished key is never re-created. It gets the keys
// about to be written.
var beforeWrite func(ctx context.Context, keys []string)
