package redismigrations

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// v1Op is the compare-and-set edit of one hash-tagged record by the field
// transforms of a pass.
type v1Op struct {
	i    int       // index in the chunk
	args []any     // updateScript's ARGV
	outs []outcome // one per transform of the pass, in order
}

// updateV1 edits hash-tagged tenant and destination hashes in place, each
// with a compare-and-set script: a record that changed between the read
// and the script is read again (conflictRetries times at most), one that
// vanished is left gone. Every key is counted once per migration in todo.
//
// read, when given, holds for some keys the record sortKeys already read:
// the first attempt uses it instead of reading those keys again (a stale
// read only makes the compare-and-set refuse and the key be read again).
func (s *Set) updateV1(ctx context.Context, keys []string, parsed []Key, read []*record, p pass, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	labels := p.labels()
	for _, l := range labels {
		t.Add(l, func(c *report.Counts) { c.Scanned += int64(len(keys)) })
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
		var pre []*record
		if attempt == 0 {
			pre = read
		}
		vals, err := s.readV1Reusing(ctx, batch, pre)
		if err != nil {
			return err
		}
		ops := s.planV1(t, p, keys, parsed, pending, vals)
		if len(ops) == 0 {
			return nil
		}
		aboutToWrite(ctx, len(ops), func(j int) string { return keys[ops[j].i] })
		results, err := s.runScript(ctx, updateScript, len(ops), func(j int) ([]string, []any) { return []string{keys[ops[j].i]}, ops[j].args })
		if err != nil {
			return err
		}
		retry := attempt+1 < conflictRetries
		pending = pending[:0]
		for j, o := range ops {
			if countV1Result(t, labels, keys[o.i], o, results[j], retry) {
				pending = append(pending, o.i)
			}
		}
	}
	return nil
}

// planV1 composes the pass's transforms over the records read (vals, of
// keys[pending]) and returns the edits to write; records with nothing to
// write, not a hash, or gone are counted here.
func (s *Set) planV1(t *scan.Tally, p pass, keys []string, parsed []Key, pending []int, vals []v1Record) []v1Op {
	labels := p.labels()
	var ops []v1Op
	for j, i := range pending {
		k, v := keys[i], vals[j]
		if !v.usable(t, labels, k) {
			continue
		}
		_, outs, edits := compose(parsed[i], v.fields, p.edit)
		args := updateArgs(v.fields, edits)
		if len(args) == 0 {
			countV1(t, k, outs, 0)
			continue
		}
		ops = append(ops, v1Op{i: i, args: args, outs: outs})
	}
	return ops
}

// countV1Result counts one script's result and says whether the record is
// to be read and edited again (it changed since read, retry allowed).
func countV1Result(t *scan.Tally, labels []string, k string, o v1Op, res scriptResult, retry bool) bool {
	switch {
	case res.err != nil:
		failAll(t, labels, k, "write: "+res.err.Error())
	case res.val == -2:
		if retry {
			return true
		}
		failAll(t, labels, k, fmt.Sprintf("changed between read and write %d times in a row; rerun apply", conflictRetries))
	case res.val == -1:
		// Expired or deleted since it was read: not re-created.
		skipAll(t, labels)
	default:
		countV1(t, k, o.outs, res.val)
	}
	return false
}

// updateArgs are updateScript's ARGV for edits (each transform's, in the
// order they apply) of a record read as read: one entry per field, whose
// bits name the transforms that changed it and whose value is the last.
func updateArgs(read map[string]string, edits [][]fieldEdit) []any {
	type entry struct {
		bits              int64
		field, old, value string
		had               bool
	}
	var es []entry // a few per record: searched, not hashed
	for i, list := range edits {
	next:
		for _, e := range list {
			for j := range es {
				if es[j].field == e.field {
					es[j].bits |= 1 << i
					es[j].value = e.value
					continue next
				}
			}
			old, had := read[e.field]
			es = append(es, entry{bits: 1 << i, field: e.field, old: old, value: e.value, had: had})
		}
	}
	args := make([]any, 0, 5*len(es))
	for _, e := range es {
		had := "0"
		if e.had {
			had = "1"
		}
		args = append(args, e.bits, e.field, had, e.old, e.value)
	}
	return args
}

// countV1 records the outcome of one record's edit: wrote is the script's
// bitmask (0 when no script ran), bit i for the pass's transform i.
func countV1(t *scan.Tally, k string, outs []outcome, wrote int64) {
	for i, o := range outs {
		o.count(t, k, wrote&(1<<i) != 0)
	}
}

// usable says whether record k, as read, can be edited; one that is not
// a hash fails under labels, one gone since SCAN (expired, deleted: nothing
// to do) is skipped.
func (v v1Record) usable(t *scan.Tally, labels []string, k string) bool {
	switch {
	case v.err != nil:
		failAll(t, labels, k, "not a hash: "+v.err.Error())
		return false
	case !v.exists:
		skipAll(t, labels)
		return false
	}
	return true
}

func failAll(t *scan.Tally, labels []string, k, reason string) {
	for _, l := range labels {
		t.Fail(l, report.Issue{Key: k, Reason: reason})
	}
}

func skipAll(t *scan.Tally, labels []string) {
	for _, l := range labels {
		t.Add(l, func(c *report.Counts) { c.Skipped++ })
	}
}

// v1Record is what the field transforms need of a hash-tagged record:
// those of its fields they read (see v1Fields) that it holds.
type v1Record struct {
	fields map[string]string
	exists bool
	err    error
}

// v1Fields are read from hash-tagged records: the fields every transform
// reads, then id and deleted_at, which every live or deleted record has,
// so that a missing key is told apart without EXISTS.
func (s *Set) v1Fields() []string {
	var out []string
	for _, t := range s.transforms {
		for _, f := range t.reads {
			if !has(out, f) {
				out = append(out, f)
			}
		}
	}
	for _, f := range []string{"id", "deleted_at"} {
		if !has(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// readV1 reads the fields the transforms need of hash-tagged records, and
// whether they exist, in one pipeline.
func (s *Set) readV1(ctx context.Context, keys []string) ([]v1Record, error) {
	names := s.v1Fields()
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, names...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]v1Record, len(keys))
	var unknown []int
	for i := range keys {
		if err := cmds[i].Err(); err != nil {
			if !isKeyError(err) {
				return nil, pipeErr(err, "read", keys, i)
			}
			out[i].err = err
			continue
		}
		fields := make(map[string]string, len(names))
		for j, v := range cmds[i].Val() {
			if sv, ok := v.(string); ok {
				fields[names[j]] = sv
			}
		}
		if len(fields) == 0 {
			unknown = append(unknown, i)
		}
		out[i] = v1Record{fields: fields, exists: true}
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

// readV1Reusing is readV1 for keys of which pre[i] (when pre and it are
// not nil) already holds a read of readForCheck, which reads the same
// fields (or the whole hash).
func (s *Set) readV1Reusing(ctx context.Context, keys []string, pre []*record) ([]v1Record, error) {
	if pre == nil {
		return s.readV1(ctx, keys)
	}
	out := make([]v1Record, len(keys))
	var again []string
	var at []int
	for i, r := range pre {
		switch {
		case r == nil:
			again, at = append(again, keys[i]), append(at, i)
		case r.err != nil:
			out[i] = v1Record{err: r.err}
		default:
			out[i] = v1Record{fields: r.fields, exists: r.fields != nil}
		}
	}
	vals, err := s.readV1(ctx, again)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		out[i] = vals[j]
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
