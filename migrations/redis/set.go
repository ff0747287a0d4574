// Package redis holds Outpost's Redis migrations 001_hash_tags,
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
package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
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
}

// New returns the migrations for the keyspace of client under prefix P
// ("<DEPLOYMENT_ID>:" or "").
func New(c goredis.UniversalClient, prefix string) *Set { return &Set{c: c, prefix: prefix} }

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
			}},
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

// split sorts a chunk into legacy keys (only without a prefix: v0 keys were
// never prefixed) and hash-tagged tenant/destination keys; summaries of
// layout v1 need no work from 002/003.
func (s *Set) split(keys []string, wantV0, wantV1 bool) (v0 []string, v1 []string, v1keys []Key) {
	for _, k := range keys {
		if key, ok := ParseV1(s.prefix, k); ok {
			if wantV1 && key.Kind != KindSummary {
				v1 = append(v1, k)
				v1keys = append(v1keys, key)
			}
			continue
		}
		if wantV0 && s.prefix == "" && IsV0Candidate(k) {
			v0 = append(v0, k)
		}
	}
	return
}

// record is a hash as read: fields (nil when the key is gone), TTL in ms
// (<= 0: none), or a per-key error (wrong type).
type record struct {
	fields map[string]string
	pttl   int64
	err    error
}

func isKeyError(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// readRecords reads whole hashes and their TTLs in one pipeline.
func (s *Set) readRecords(ctx context.Context, keys []string) ([]record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	hs := make([]*goredis.MapStringStringCmd, len(keys))
	ts := make([]*goredis.DurationCmd, len(keys))
	for i, k := range keys {
		hs[i] = pipe.HGetAll(ctx, k)
		ts[i] = pipe.PTTL(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]record, len(keys))
	for i := range keys {
		if err := hs[i].Err(); err != nil {
			if !isKeyError(err) {
				return nil, rediserr.Classify(err, "read "+keys[i])
			}
			out[i].err = err
			continue
		}
		if err := ts[i].Err(); err != nil {
			return nil, rediserr.Classify(err, "PTTL "+keys[i])
		}
		if len(hs[i].Val()) > 0 {
			out[i].fields = hs[i].Val()
		}
		// go-redis returns -1/-2 (no TTL, no key) as raw durations; a TTL
		// under a millisecond must stay a TTL, not become "none".
		if d := ts[i].Val(); d > 0 {
			out[i].pttl = max(d.Milliseconds(), 1)
		}
	}
	return out, nil
}

// twinFields is what the v1 twin of a v0 record holds after this run: the
// same fields, with the transforms of 002/003 when they are applied in the
// same pass or already were. Conversion failures keep the original value
// and are returned.
func twinFields(k Key, fields map[string]string, w work) (map[string]string, []string, bool, bool) {
	out := make(map[string]string, len(fields)+1)
	for f, v := range fields {
		out[f] = v
	}
	var bad []string
	converted, entitySet := false, false
	if w.convert {
		for _, f := range TimestampFields {
			if v, ok := out[f]; ok {
				ms, changed, err := ToUnixMilli(v)
				if err != nil {
					bad = append(bad, f+": "+err.Error())
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
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		v0, v1, v1keys := s.split(keys, w.copy, w.do002 || w.do003)
		if err := s.copyV0(ctx, v0, w, t); err != nil {
			return err
		}
		return s.updateV1(ctx, v1, v1keys, w, t, 0)
	}
}

func (s *Set) copyV0(ctx context.Context, keys []string, w work, t *scan.Tally) error {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return err
	}
	type op struct {
		key, twin         string
		kind              Kind
		converted, entity bool
		args              []any
	}
	var ops []op
	for i, k := range keys {
		t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
		r := recs[i]
		if r.err != nil {
			t.Fail(HashTags, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
			continue
		}
		if r.fields == nil {
			// Gone since SCAN (expired, deleted): nothing to copy.
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			t.Fail(HashTags, report.Issue{Key: k, Reason: err.Error()})
			continue
		}
		fields, bad, conv, ent := twinFields(key, r.fields, w)
		twin := key.V1(s.prefix)
		for _, b := range bad {
			label := Timestamps
			if !w.do002 {
				label = HashTags
			}
			t.Fail(label, report.Issue{Key: twin, Field: strings.SplitN(b, ":", 2)[0], Reason: "cannot convert: " + b})
		}
		args := make([]any, 0, 1+2*len(fields))
		ttl := r.pttl
		if ttl < 0 {
			ttl = 0
		}
		args = append(args, ttl)
		for f, v := range fields {
			args = append(args, f, v)
		}
		ops = append(ops, op{key: k, twin: twin, kind: key.Kind, converted: conv, entity: ent, args: args})
	}
	if len(ops) == 0 {
		return nil
	}
	results, err := s.runScript(ctx, copyScript, len(ops), func(i int) ([]string, []any) { return []string{ops[i].twin}, ops[i].args })
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
			// 002/003 on it as theirs.
			if w.do002 && o.kind != KindSummary {
				t.Add(Timestamps, func(c *report.Counts) { c.Scanned++; countChange(c, o.converted) })
			}
			if w.do003 && o.kind != KindSummary {
				t.Add(Entity, func(c *report.Counts) { c.Scanned++; countChange(c, o.entity) })
			}
		default:
			// The twin exists: copied by an earlier run, or written by the
			// new server. Never overwritten; 002/003 reach it on their own
			// because it is in the keyspace this pass walks.
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
		}
	}
	return nil
}

type scriptResult struct {
	val int64
	err error
}

// runScript runs one single-key script per op in a pipeline with EVALSHA,
// loading the script when the server lost it (a restart, a failover) and
// retrying those ops. A per-key error (WRONGTYPE) is returned per op; a
// store error aborts.
func (s *Set) runScript(ctx context.Context, sc *goredis.Script, n int, op func(i int) ([]string, []any)) ([]scriptResult, error) {
	out := make([]scriptResult, n)
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.Cmd, len(todo))
		for j, i := range todo {
			keys, args := op(i)
			cmds[j] = sc.EvalSha(ctx, pipe, keys, args...)
		}
		_, _ = pipe.Exec(ctx)
		var again []int
		for j, i := range todo {
			err := cmds[j].Err()
			switch {
			case err == nil:
				v, _ := cmds[j].Int64()
				out[i] = scriptResult{val: v}
			case goredis.HasErrorPrefix(err, "NOSCRIPT") && attempt < 2:
				again = append(again, i)
			case isKeyError(err):
				out[i] = scriptResult{err: err}
			default:
				return nil, rediserr.Classify(err, "run script")
			}
		}
		if len(again) > 0 {
			if err := sc.Load(ctx, s.c).Err(); err != nil {
				return nil, rediserr.Classify(err, "SCRIPT LOAD")
			}
		}
		todo = again
	}
	return out, nil
}

// updateV1 edits hash-tagged tenant and destination hashes in place.
func (s *Set) updateV1(ctx context.Context, keys []string, parsed []Key, w work, t *scan.Tally, attempt int) error {
	if len(keys) == 0 {
		return nil
	}
	vals, err := s.readV1(ctx, keys)
	if err != nil {
		return err
	}
	type op struct {
		i      int
		args   []any
		conv   bool
		entity bool
	}
	var ops []op
	for i, k := range keys {
		v := vals[i]
		if attempt == 0 {
			if w.do002 {
				t.Add(Timestamps, func(c *report.Counts) { c.Scanned++ })
			}
			if w.do003 {
				t.Add(Entity, func(c *report.Counts) { c.Scanned++ })
			}
		}
		if v.err != nil {
			label := Timestamps
			if !w.do002 {
				label = Entity
			}
			t.Fail(label, report.Issue{Key: k, Reason: "not a hash: " + v.err.Error()})
			continue
		}
		o := op{i: i, args: []any{""}}
		if w.do002 {
			for j, f := range TimestampFields {
				old := v.ts[j]
				if old == nil {
					continue
				}
				ms, changed, err := ToUnixMilli(*old)
				if err != nil {
					t.Fail(Timestamps, report.Issue{Key: k, Field: f, Reason: "cannot convert", Actual: *old})
					continue
				}
				if changed {
					o.args = append(o.args, f, *old, ms)
					o.conv = true
				}
			}
		}
		if w.do003 && !v.hasEntity {
			o.args[0] = parsed[i].Kind.Entity()
			o.entity = true
		}
		if !o.conv && !o.entity {
			if attempt == 0 {
				if w.do002 {
					t.Add(Timestamps, func(c *report.Counts) { c.Unchanged++ })
				}
				if w.do003 {
					t.Add(Entity, func(c *report.Counts) { c.Unchanged++ })
				}
			}
			continue
		}
		ops = append(ops, o)
	}
	if len(ops) == 0 {
		return nil
	}
	results, err := s.runScript(ctx, updateScript, len(ops), func(j int) ([]string, []any) { return []string{keys[ops[j].i]}, ops[j].args })
	if err != nil {
		return err
	}
	var retryKeys []string
	var retryParsed []Key
	for j, o := range ops {
		k := keys[o.i]
		res := results[j]
		switch {
		case res.err != nil:
			t.Fail(Timestamps, report.Issue{Key: k, Reason: res.err.Error()})
		case res.val == -2:
			if attempt+1 < conflictRetries {
				retryKeys = append(retryKeys, k)
				retryParsed = append(retryParsed, parsed[o.i])
			} else {
				t.Fail(Timestamps, report.Issue{Key: k, Reason: fmt.Sprintf("changed between read and write %d times; rerun", conflictRetries)})
			}
		case res.val == -1:
			// Expired or deleted since it was read: not re-created.
			if w.do002 {
				t.Add(Timestamps, func(c *report.Counts) { c.Skipped++ })
			}
			if w.do003 {
				t.Add(Entity, func(c *report.Counts) { c.Skipped++ })
			}
		default:
			if w.do002 {
				if o.conv {
					t.Add(Timestamps, func(c *report.Counts) { c.Changed++ })
				} else {
					t.Add(Timestamps, func(c *report.Counts) { c.Unchanged++ })
				}
			}
			if w.do003 {
				if o.entity {
					t.Add(Entity, func(c *report.Counts) { c.Changed++ })
				} else {
					t.Add(Entity, func(c *report.Counts) { c.Unchanged++ })
				}
			}
		}
	}
	if len(retryKeys) > 0 {
		return s.updateV1(ctx, retryKeys, retryParsed, w, t, attempt+1)
	}
	return nil
}

// v1State is what 002/003 need of a hash-tagged record.
type v1State struct {
	ts        []*string // TimestampFields values, nil when absent
	entity    string
	hasEntity bool
	exists    bool
	err       error
}

func (s *Set) readV1(ctx context.Context, keys []string) ([]v1State, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, append(append([]string{}, TimestampFields...), "entity", "id", "deleted_at")...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]v1State, len(keys))
	for i := range keys {
		if err := cmds[i].Err(); err != nil {
			if !isKeyError(err) {
				return nil, rediserr.Classify(err, "read "+keys[i])
			}
			out[i].err = err
			continue
		}
		vals := cmds[i].Val()
		st := v1State{ts: make([]*string, len(TimestampFields))}
		for j := range TimestampFields {
			if sv, ok := vals[j].(string); ok {
				sv := sv
				st.ts[j] = &sv
				st.exists = true
			}
		}
		n := len(TimestampFields)
		if e, ok := vals[n].(string); ok {
			st.entity, st.hasEntity, st.exists = e, true, true
		}
		for _, v := range vals[n+1:] {
			if _, ok := v.(string); ok {
				st.exists = true
			}
		}
		out[i] = st
	}
	return out, nil
}

// formatTTL is for issues.
func formatTTL(ms int64) string {
	if ms <= 0 {
		return "none"
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

func countChange(c *report.Counts, changed bool) {
	if changed {
		c.Changed++
	} else {
		c.Unchanged++
	}
}
