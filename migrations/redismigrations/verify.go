package redismigrations

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Verify returns a read-only step checking that the applied migrations hold:
// 001: every legacy key has its twin with the same fields (but for what the
// applied field transforms allow: timestamps equal as instants once 002 is
// applied, entity once 003 is) and a TTL exactly when the legacy key has
// one; each applied field transform: every hash-tagged tenant/destination
// is in its final form (002: no created_at/updated_at that is not Unix
// milliseconds; 003: the right entity). Every key checked counts once per
// migration (Checked, Passed or Failed); keys gone since SCAN are not
// counted.
func (s *Set) Verify(applied []string) scan.Step {
	v001, fts := has(applied, HashTags), s.named(applied)
	return func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, v001, len(fts) > 0, nil, func(k, reason string) {
			for _, l := range applied {
				t.Issue(l, report.Issue{Key: k, Reason: reason})
				tallyCheck(t, l, false)
			}
		})
		if err != nil {
			return err
		}
		if v001 {
			if err := s.verifyLegacy(ctx, srt.v0, fts, t, HashTags); err != nil {
				return err
			}
		}
		return s.verifyV1(ctx, srt.v1, srt.v1keys, fts, t)
	}
}

// verifyV1 asks each applied field transform (fts) whether hash-tagged
// records are in its final form.
func (s *Set) verifyV1(ctx context.Context, keys []string, parsed []Key, fts []*transform, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	vals, err := s.readV1(ctx, keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		v := vals[i]
		if v.err != nil {
			for _, ft := range fts {
				t.Issue(ft.Name, report.Issue{Key: k, Reason: "not a hash: " + v.err.Error()})
				tallyCheck(t, ft.Name, false)
			}
			continue
		}
		if !v.exists {
			continue // expired or deleted since SCAN
		}
		for _, ft := range fts {
			issues := ft.final(parsed[i], v.fields)
			for _, is := range issues {
				is.Key = k
				t.Issue(ft.Name, is)
			}
			tallyCheck(t, ft.Name, len(issues) == 0)
		}
	}
	return nil
}

func tallyCheck(t *scan.Tally, label string, ok bool) {
	t.Add(label, func(c *report.Counts) {
		c.Scanned++
		c.Checked++
		if ok {
			c.Passed++
		} else {
			c.Failed++
		}
	})
}

// pair is a legacy record and its twin, as compared.
type pair struct {
	key    string
	fields map[string]string
	ok     bool
}

// compareTwins reads legacy records and their twins and compares them,
// with the allowances of the field transforms allow; it records one check
// per legacy key under label and returns the records compared (for
// cleanup). A record or twin too big to read whole is not compared: its
// legacy key is in big, for the caller to compare piece by piece.
func (s *Set) compareTwins(ctx context.Context, keys []string, allow []*transform, t *scan.Tally, label string) (out []pair, big []string, err error) {
	recs, recBig, err := s.readGroup(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	var twinNames []string
	var idx []int
	classified := make([]Key, len(keys))
	for i, k := range keys {
		r := recs[i]
		switch {
		case recBig[i]:
			big = append(big, k)
			continue
		case r.err != nil:
			t.Issue(label, report.Issue{Key: k, Reason: "not a hash: " + r.err.Error()})
			tallyCheck(t, label, false)
			continue
		case r.fields == nil:
			// Gone since SCAN (expired, or deleted): nothing to compare.
			t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
			continue
		}
		key, err := ClassifyV0(k, r.fields)
		if err != nil {
			t.Issue(label, report.Issue{Key: k, Reason: err.Error()})
			tallyCheck(t, label, false)
			continue
		}
		classified[i] = key
		twinNames = append(twinNames, key.V1(s.prefix))
		idx = append(idx, i)
	}
	twins, twinBig, err := s.readSized(ctx, twinNames)
	if err != nil {
		return nil, nil, err
	}
	// A legacy key with a TTL whose twin is missing may have expired with
	// its twin after it was read: it fails only if it is still there.
	var recheck []string
	for j, i := range idx {
		if recs[i].has() && twins[j].fields == nil && twins[j].err == nil && !twinBig[j] {
			recheck = append(recheck, keys[i])
		}
	}
	still, err := s.exists(ctx, recheck)
	if err != nil {
		return nil, nil, err
	}
	m := 0
	for j, i := range idx {
		k, r, tw := keys[i], recs[i], twins[j]
		if twinBig[j] {
			big = append(big, k)
			continue
		}
		if r.has() && tw.fields == nil && tw.err == nil {
			m++
			if !still[m-1] {
				t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
				continue
			}
		}
		issue := twinDiff(classified[i], s.prefix, r, tw, allow)
		if issue != nil {
			issue.Key = k
			t.Issue(label, *issue)
		}
		tallyCheck(t, label, issue == nil)
		out = append(out, pair{key: k, fields: r.fields, ok: issue == nil})
	}
	return out, big, nil
}

// ttlSlackMS is how far the twin's remaining TTL may be from the legacy
// key's: they were equal when copied and count down together.
const ttlSlackMS = 60_000

// twinDiff returns the first difference between a legacy record and its
// twin (fields in name order, so a rerun names the same one) that none of
// the field transforms allow keeps, or nil.
func twinDiff(k Key, prefix string, v0, twin record, allow []*transform) *report.Issue {
	name := k.V1(prefix)
	switch {
	case twin.err != nil:
		return &report.Issue{Object: name, Reason: "twin is not a hash"}
	case twin.fields == nil:
		return &report.Issue{Object: name, Reason: "twin missing"}
	}
	for _, f := range sortedFields(v0.fields) {
		v := v0.fields[f]
		tv, ok := twin.fields[f]
		if !ok {
			return &report.Issue{Object: name, Field: f, Reason: "field missing on twin", Expected: shown(f, v)}
		}
		if tv == v {
			continue
		}
		if keptBy(allow, k, f, v, true, tv) {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "field differs", Expected: shown(f, v), Actual: shown(f, tv)}
	}
	for _, f := range sortedFields(twin.fields) {
		if _, ok := v0.fields[f]; ok {
			continue
		}
		tv := twin.fields[f]
		if keptBy(allow, k, f, "", false, tv) {
			continue
		}
		return &report.Issue{Object: name, Field: f, Reason: "extra field on twin", Actual: shown(f, tv)}
	}
	if v0.has() != twin.has() {
		return &report.Issue{Object: name, Field: "ttl", Reason: "TTL differs", Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
	}
	if v0.has() {
		if abs(twin.at-v0.at) > ttlSlackMS {
			return &report.Issue{Object: name, Field: "ttl", Reason: fmt.Sprintf("TTL differs by more than %ds", ttlSlackMS/1000), Expected: formatTTL(v0.pttl), Actual: formatTTL(twin.pttl)}
		}
	}
	return nil
}

func sortedFields(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// plainFields are shown as they are in issues; any other value (the
// encrypted credentials and delivery_metadata, config that may hold a
// password in a URL, metadata, summary entries) is shown as its length and
// a digest, enough to tell two values apart without printing them.
var plainFields = map[string]bool{
	"id": true, "type": true, "topics": true, "entity": true,
	"created_at": true, "updated_at": true, "disabled_at": true, "deleted_at": true,
}

func shown(field, v string) string {
	if plainFields[field] && utf8.ValidString(v) && len(v) <= 200 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return fmt.Sprintf("<%d bytes, sha256 %x>", len(v), sum[:8])
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
