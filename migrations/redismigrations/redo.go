package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// The catch-up after an apply pass and apply --repair both copy legacy
// records again: read them, create the twins that are missing and re-copy,
// compare-and-set, the twins that differ. They differ in what they call a
// twin to redo and in how they count and word the outcome (redo).

// catchCand is a legacy record to copy again: its name, what it is, as
// read, the fields its twin should hold and what the pass's field
// transforms made of them.
type catchCand struct {
	key    string
	k      Key
	rec    record
	fields map[string]string
	outs   []outcome
}

// twinCands reads legacy records and their twins, classifies the records
// and composes their twins' fields (p.twin); it returns them with their
// twins' names and the twins as read. bad gets each record that is not a
// hash (notHash) or cannot be classified, gone each key gone since SCAN.
// A record or twin too big to read whole (readSized) is not read: its
// legacy key is in big, for the caller to handle piece by piece.
func (s *Set) twinCands(ctx context.Context, keys []string, p pass, bad func(k string, notHash bool, err error), gone func(k string)) (cs []catchCand, names []string, twins []record, big []string, err error) {
	recs, isBig, err := s.readSized(ctx, keys)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for i, k := range keys {
		r := recs[i]
		switch {
		case isBig[i]:
			big = append(big, k)
			continue
		case r.err != nil:
			bad(k, true, r.err)
			continue
		case r.fields == nil:
			gone(k)
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			bad(k, false, err)
			continue
		}
		fields, outs, _ := compose(key, r.fields, p.twin)
		cs = append(cs, catchCand{key: k, k: key, rec: r, fields: fields, outs: outs})
		names = append(names, key.V1(s.prefix))
	}
	twins, twinBig, err := s.readSized(ctx, names)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	n := 0
	for j := range cs {
		if twinBig[j] {
			big = append(big, cs[j].key)
			continue
		}
		cs[n], names[n], twins[n] = cs[j], names[j], twins[j]
		n++
	}
	return cs[:n], names[:n], twins[:n], big, nil
}

// redo is a chunk of candidates (cs, their twins' names and the twins as
// read) and how the caller counts and words what becomes of them.
type redo struct {
	cs       []catchCand
	names    []string
	twins    []record
	fail     func(key, object, reason string)
	created  func() // a missing twin was created
	recopied func() // a twin was copied again
	existed  string // why a twin to create was not: another client created it
	changed  string // why a twin to re-copy was not: it changed or vanished
}

// createTwins creates the missing twins of r.cs[idx] (RESTORE, never over a
// key that exists).
func (s *Set) createTwins(ctx context.Context, r redo, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	ws := make([]twinWrite, len(idx))
	for i, j := range idx {
		ws[i] = twinWrite{name: r.names[j], fields: r.cs[j].fields, expiry: r.cs[j].rec.expiry}
	}
	res, err := s.writeTwins(ctx, ws)
	if err != nil {
		return err
	}
	r.outcomes(res, idx, "copy: ", r.created, r.existed)
	s.remember(r, res, idx)
	return nil
}

// recopy writes the twins of r.cs[idx] again, each only if it still holds
// exactly what was read.
func (s *Set) recopy(ctx context.Context, r redo, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	res, err := s.runScript(ctx, recopyScript, len(idx), func(i int) ([]string, []any) {
		j := idx[i]
		old := r.twins[j].fields
		args := make([]any, 0, 2+2*len(old)+2*len(r.cs[j].fields))
		args = append(args, len(old))
		for f, v := range old {
			args = append(args, f, v)
		}
		args = append(args, r.cs[j].rec.expiry.scriptArg())
		for f, v := range r.cs[j].fields {
			args = append(args, f, v)
		}
		return []string{r.names[j]}, args
	})
	if err != nil {
		return err
	}
	r.outcomes(res, idx, "re-copy: ", r.recopied, r.changed)
	s.remember(r, res, idx)
	return nil
}

// remember records the twins of r.cs[idx] written (res) with what they now
// hold, so that a later round may copy them again if their legacy records
// change again, and only while they still hold it.
func (s *Set) remember(r redo, res []scriptResult, idx []int) {
	for i, w := range res {
		if j := idx[i]; w.err == nil && w.val == 1 {
			s.created.add(r.names[j], s.created.digest(r.cs[j].fields))
		}
	}
}

// outcomes counts the writes of r.cs[idx] (res): 1 is written (done), any
// other value is not (why), an error fails the record (what it was doing).
func (r redo) outcomes(res []scriptResult, idx []int, what string, done func(), why string) {
	for i, w := range res {
		j := idx[i]
		switch {
		case w.err != nil:
			r.fail(r.cs[j].key, r.names[j], what+w.err.Error())
		case w.val == 1:
			done()
		default:
			r.fail(r.cs[j].key, r.names[j], why)
		}
	}
}

// recopyScript replaces a twin with a new copy only if it still holds
// exactly the fields and values read (no more, no fewer). Fenced like every
// write script (see fencePrelude): its own ARGV start at 3.
// KEYS[1] twin; ARGV[3] n, ARGV[4..2n+3] expected field, value pairs,
// ARGV[2n+4] the expiry as copyScript takes it, then the new field, value
// pairs. Returns 1 written, -1 gone, -2 changed since read.
var recopyScript = goredis.NewScript(fencePrelude + hsetFn + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[1]) ~= n then return -2 end
for i = 4, 2 * n + 2, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return -2 end
end
redis.call('DEL', KEYS[1])
hset_from(KEYS[1], 2 * n + 5)
expire_as(KEYS[1], ARGV[2 * n + 4])
return 1
`)
