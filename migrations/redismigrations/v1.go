package redismigrations

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Bits of updateScript's result.
const (
	wroteTimestamps = 1
	wroteEntity     = 2
)

// v1Op is the compare-and-set edit of one hash-tagged record.
type v1Op struct {
	i        int   // index in the chunk
	args     []any // updateScript's ARGV
	conv     bool  // 002 rewrites timestamps
	entity   bool  // 003 sets entity
	failed02 bool  // 002 cannot convert a value of it
	bad      []report.Issue
}

// updateV1 edits hash-tagged tenant and destination hashes in place, each
// with a compare-and-set script: a record that changed between the read
// and the script is read again (conflictRetries times at most), one that
// vanished is left gone. Every key is counted once per migration in todo.
func (s *Set) updateV1(ctx context.Context, keys []string, parsed []Key, w work, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	labels := w.v1Labels()
	for _, l := range labels {
		t.Add(l, func(c *report.Counts) { c.Scanned += int64(len(keys)) })
	}
	count := func(l string, f func(c *report.Counts)) { t.Add(l, f) }
	failAll := func(k string, reason string) {
		for _, l := range labels {
			t.Fail(l, report.Issue{Key: k, Reason: reason})
		}
	}
	pending := make([]int, len(keys))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		batch := make([]string, len(pending))
		for j, i := range pending {
			batch[j] = keys[i]
		}
		vals, err := s.readV1(ctx, batch)
		if err != nil {
			return err
		}
		var ops []v1Op
		for j, i := range pending {
			k, v := keys[i], vals[j]
			switch {
			case v.err != nil:
				failAll(k, "not a hash: "+v.err.Error())
				continue
			case !v.exists:
				// Expired or deleted since SCAN: nothing to do.
				for _, l := range labels {
					count(l, func(c *report.Counts) { c.Skipped++ })
				}
				continue
			}
			o := v1Op{i: i, args: []any{""}}
			if w.do002 {
				for n, f := range TimestampFields {
					old := v.ts[n]
					if old == nil {
						continue
					}
					ms, changed, err := ToUnixMilli(*old)
					if err != nil {
						o.failed02 = true
						o.bad = append(o.bad, badTimestamp{f, *old}.issue(k))
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
				s.countV1(t, w, o, 0)
				continue
			}
			ops = append(ops, o)
		}
		if len(ops) == 0 {
			return nil
		}
		if h := beforeWrite; h != nil {
			ks := make([]string, len(ops))
			for j, o := range ops {
				ks[j] = keys[o.i]
			}
			h(ctx, ks)
		}
		results, err := s.runScript(ctx, updateScript, len(ops), func(j int) ([]string, []any) { return []string{keys[ops[j].i]}, ops[j].args })
		if err != nil {
			return err
		}
		pending = pending[:0]
		for j, o := range ops {
			k := keys[o.i]
			switch res := results[j]; {
			case res.err != nil:
				failAll(k, "write: "+res.err.Error())
			case res.val == -2:
				if attempt+1 < conflictRetries {
					pending = append(pending, o.i)
					continue
				}
				failAll(k, fmt.Sprintf("changed between read and write %d times in a row; rerun apply", conflictRetries))
			case res.val == -1:
				// Expired or deleted since it was read: not re-created.
				for _, l := range labels {
					count(l, func(c *report.Counts) { c.Skipped++ })
				}
			default:
				s.countV1(t, w, o, res.val)
			}
		}
	}
	return nil
}

// v1Labels are the migrations of todo that edit hash-tagged records.
func (w work) v1Labels() []string {
	var out []string
	if w.do002 {
		out = append(out, Timestamps)
	}
	if w.do003 {
		out = append(out, Entity)
	}
	return out
}

// countV1 records the outcome of one record's edit: wrote is the script's
// bitmask (0 when no script ran).
func (s *Set) countV1(t *scan.Tally, w work, o v1Op, wrote int64) {
	if w.do002 {
		for _, i := range o.bad {
			t.Issue(Timestamps, i)
		}
		t.Add(Timestamps, func(c *report.Counts) {
			switch {
			case o.failed02:
				c.Failed++
			case wrote&wroteTimestamps != 0:
				c.Changed++
			default:
				c.Unchanged++
			}
		})
	}
	if w.do003 {
		t.Add(Entity, func(c *report.Counts) { countChange(c, wrote&wroteEntity != 0) })
	}
}

// v1State is what 002/003 need of a hash-tagged record.
type v1State struct {
	ts        []*string // TimestampFields values, nil when absent
	entity    string
	hasEntity bool
	exists    bool
	err       error
}

// readV1 reads the timestamps and entity of hash-tagged records, and
// whether they exist, in one pipeline.
func (s *Set) readV1(ctx context.Context, keys []string) ([]v1State, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, v1Fields...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]v1State, len(keys))
	var unknown []int
	for i := range keys {
		if err := cmds[i].Err(); err != nil {
			if !isKeyError(err) {
				return nil, pipeErr(err, "read", keys, i)
			}
			out[i].err = err
			continue
		}
		vals := cmds[i].Val()
		st := v1State{ts: make([]*string, len(TimestampFields)), exists: true}
		for j := range TimestampFields {
			if sv, ok := vals[j].(string); ok {
				st.ts[j] = &sv
			}
		}
		if e, ok := vals[len(TimestampFields)].(string); ok {
			st.entity, st.hasEntity = e, true
		}
		none := true
		for _, v := range vals {
			if v != nil {
				none = false
			}
		}
		if none {
			unknown = append(unknown, i)
		}
		out[i] = st
	}
	exists, err := s.existsAt(ctx, keys, unknown)
	if err != nil {
		return nil, err
	}
	for j, i := range unknown {
		out[i].exists = exists[j]
	}
	return out, nil
}

// v1Fields are read from hash-tagged records: the timestamps and entity
// that 002/003 need, then id and deleted_at, which every live or deleted
// record has, so that a missing key is told apart without EXISTS.
var v1Fields = append(append([]string{}, TimestampFields...), "entity", "id", "deleted_at")

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
