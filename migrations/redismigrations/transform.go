package redismigrations

import (
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// registry is the set's migrations in the order Outpost applies them. A
// new migration that changes fields of tenant and destination records is
// one file defining its transform, plus its line here: the set composes
// the transforms of a pass over each record read (on the copy 001 writes
// and in place on hash-tagged records), reads the fields they name, counts
// their outcomes under their names and asks them, for verify, whether a
// record is in its final form.
var registry = []*transform{hashTags, timestamps, entity}

// transform is one migration: its line in a plan and, for every migration
// but 001 (the copy, whose work is the key rename and the TTL: copy.go),
// what it does to the fields of a record. Field transforms edit tenant and
// destination records only; summaries are copied as they are.
type transform struct {
	redisphase.Migration
	// reads are the fields edit and final look at: a hash-tagged record is
	// read for these only, never whole.
	reads []string
	// edit returns the changes the migration makes to the fields of record
	// k (the whole record on a copy, its reads in place, in both cases
	// with the changes of the migrations before it already made), and the
	// values it cannot migrate (issues without Key): the record then fails
	// for it, and its other changes are still made.
	edit func(k Key, fields map[string]string) ([]fieldEdit, []report.Issue)
	// final returns why record k (its reads) is not in the migration's
	// final form (issues without Key), nil when it is: verify.
	final func(k Key, fields map[string]string) []report.Issue
	// keeps says whether a twin's value of field may differ from its legacy
	// record's by the migration's doing once it is applied: legacy is the
	// legacy record's value when inLegacy, twin the twin's. Verify and
	// cleanup compare copies with these allowances.
	keeps func(k Key, field, legacy string, inLegacy bool, twin string) bool
}

// fieldEdit sets field to value: in place, compare-and-set against the
// value read, or only while the field is missing when it was missing when
// read (see updateScript).
type fieldEdit struct {
	field, value string
}

// outcome is what one field transform made of one record.
type outcome struct {
	t       *transform
	changed bool
	bad     []report.Issue
}

// count records o for record key (the name issues carry) under the
// migration's name: Failed when a value could not be migrated, else
// Changed or Unchanged. Scanned is the caller's.
func (o outcome) count(t *scan.Tally, key string, changed bool) {
	for _, i := range o.bad {
		i.Key = key
		t.Issue(o.t.Name, i)
	}
	t.Add(o.t.Name, func(c *report.Counts) {
		switch {
		case len(o.bad) > 0:
			c.Failed++
		case changed:
			c.Changed++
		default:
			c.Unchanged++
		}
	})
}

// editable says whether field transforms act on a record of kind k.
func editable(k Kind) bool { return k.Entity() != "" }

// compose runs ts in order over fields of record k, each seeing what the
// ones before it made, and returns the changes of each (its outcome, and
// the edits in the order they apply) and the fields as they end. fields
// is not modified. Records other transforms do not edit (summaries) get
// no outcomes.
func compose(k Key, fields map[string]string, ts []*transform) (out map[string]string, outs []outcome, all [][]fieldEdit) {
	out = make(map[string]string, len(fields)+1)
	for f, v := range fields {
		out[f] = v
	}
	if !editable(k.Kind) {
		return out, nil, nil
	}
	for _, t := range ts {
		es, bad := t.edit(k, out)
		for _, e := range es {
			out[e.field] = e.value
		}
		outs = append(outs, outcome{t: t, changed: len(es) > 0, bad: bad})
		all = append(all, es)
	}
	return out, outs, all
}

// pass is what one step does, from the migrations to apply (todo) and
// those applied before (done).
type pass struct {
	copy bool         // 001 in todo: legacy records are copied
	twin []*transform // field transforms a copy gets: in todo or done
	edit []*transform // field transforms in todo: they edit in place
}

func (s *Set) newPass(todo, done []string) pass {
	var p pass
	for _, t := range s.transforms {
		switch {
		case t.edit == nil:
			p.copy = p.copy || has(todo, t.Name)
		case has(todo, t.Name):
			p.twin, p.edit = append(p.twin, t), append(p.edit, t)
		case has(done, t.Name):
			p.twin = append(p.twin, t)
		}
	}
	return p
}

// pending says whether t edits in this pass.
func (p pass) pending(t *transform) bool {
	for _, e := range p.edit {
		if e == t {
			return true
		}
	}
	return false
}

// labels are the names of the field transforms in todo.
func (p pass) labels() []string {
	out := make([]string, len(p.edit))
	for i, t := range p.edit {
		out[i] = t.Name
	}
	return out
}

// fieldTransforms are the registry's transforms that edit fields.
func (s *Set) fieldTransforms() []*transform {
	var out []*transform
	for _, t := range s.transforms {
		if t.edit != nil {
			out = append(out, t)
		}
	}
	return out
}

// named returns the field transforms of names.
func (s *Set) named(names []string) []*transform {
	var out []*transform
	for _, t := range s.fieldTransforms() {
		if has(names, t.Name) {
			out = append(out, t)
		}
	}
	return out
}

func has(list []string, name string) bool {
	for _, v := range list {
		if v == name {
			return true
		}
	}
	return false
}

// keptBy says whether one of ts allows a twin's value (see keeps).
func keptBy(ts []*transform, k Key, field, legacy string, inLegacy bool, twin string) bool {
	for _, t := range ts {
		if t.keeps(k, field, legacy, inLegacy, twin) {
			return true
		}
	}
	return false
}
