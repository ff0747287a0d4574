package redismigrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// ErrAmbiguous is returned for a key whose name and content read both as a
// legacy key and as a hash-tagged one (or as two hash-tagged ones) with
// nothing to tell them apart: it is reported and left alone, never copied
// and never changed in place.
var ErrAmbiguous = errors.New("ambiguous key name")

// Mixed says whether the name alone cannot tell key's layout: without a
// prefix a legacy tenant id may start with '{', so every hash-tagged name
// also reads as a legacy one; and an id holding "}:" gives a hash-tagged
// name more than one reading. Other names are classified by name (ParseV1,
// IsV0Candidate) and content (ClassifyV0) as before.
func Mixed(prefix, key string) bool {
	n := len(V1Parses(prefix, key))
	return n > 1 || (n == 1 && prefix == "" && IsV0Candidate(key))
}

// Owners are the keys whose existence Resolve may ask about for key: the
// tenant record of each legacy and each hash-tagged reading.
func Owners(prefix, key string) []string {
	var out []string
	if prefix == "" {
		for _, p := range V0Parses(key) {
			if p.Kind != KindTenant {
				out = append(out, "tenant:"+p.TenantID)
			}
		}
	}
	for _, p := range V1Parses(prefix, key) {
		if p.Kind != KindTenant {
			out = append(out, Key{Kind: KindTenant, TenantID: p.TenantID}.V1(prefix))
			if prefix == "" {
				out = append(out, "tenant:"+p.TenantID)
			}
		}
	}
	return out
}

// Resolve decides what a Mixed key is from its content (fields, not nil)
// and the existence of the tenant records its readings belong to (exists,
// asked only about Owners). legacy is true for a v0 key.
//
// Each reading must fit the content: a tenant or destination's id is its
// own (or absent, when soft-deleted), a summary's every value names its
// field. A name is hash-tagged unless a legacy reading has positive
// evidence: its record's id is the legacy tenant id, or (destination,
// summary) the legacy tenant record "tenant:<tid>" exists. When the
// hash-tagged reading has evidence too (its id, or its tenant record
// P+"tenant:{tid}:tenant"), or two hash-tagged readings fit, the key is
// ErrAmbiguous. Without evidence either way the hash-tagged reading wins:
// it is the layout every such name has once 001 ran, and a legacy tenant
// id starting with '{' whose tenant record is gone is the one case read
// wrongly (README, Reliability).
func Resolve(prefix, key string, fields map[string]string, exists func(string) bool) (k Key, legacy bool, err error) {
	var v1 []Key
	for _, p := range V1Parses(prefix, key) {
		if fitsV1(p, fields) {
			v1 = append(v1, p)
		}
	}
	var v0 *Key
	if prefix == "" && IsV0Candidate(key) {
		if p, err := ClassifyV0(key, fields); err == nil {
			v0 = &p
		}
	}
	switch {
	case len(v1) == 0 && v0 == nil:
		return Key{}, false, fmt.Errorf("%w: neither a legacy nor a hash-tagged record by its content", ErrUnclassifiable)
	case len(v1) == 0:
		return *v0, true, nil
	case len(v1) > 1:
		return Key{}, false, fmt.Errorf("%w: reads as %s and as %s", ErrAmbiguous, describe(prefix, v1[0], false), describe(prefix, v1[1], false))
	case v0 == nil:
		return v1[0], false, nil
	}
	e0 := evidence(v0.Kind, v0.TenantID, "tenant:"+v0.TenantID, fields, exists)
	// The hash-tagged tenant record exists, or will once 001 copies its
	// legacy one: evidence that does not depend on the order of a pass.
	e1 := evidence(v1[0].Kind, v1[0].TenantID, Key{Kind: KindTenant, TenantID: v1[0].TenantID}.V1(prefix), fields, exists) ||
		(prefix == "" && v1[0].Kind != KindTenant && exists("tenant:"+v1[0].TenantID))
	switch {
	case e0 && e1:
		return Key{}, false, fmt.Errorf("%w: reads as %s and as %s, and both tenants exist; rename or remove one of them",
			ErrAmbiguous, describe(prefix, *v0, true), describe(prefix, v1[0], false))
	case e0:
		return *v0, true, nil
	}
	return v1[0], false, nil
}

// evidence says whether a reading of kind and tenant tid is backed by the
// record's own id (tenant) or by its tenant record owner existing.
func evidence(kind Kind, tid, owner string, fields map[string]string, exists func(string) bool) bool {
	if kind == KindTenant {
		id, ok := fields["id"]
		return ok && id == tid
	}
	return exists(owner)
}

// fitsV1 says whether content fits hash-tagged reading p.
func fitsV1(p Key, fields map[string]string) bool {
	id, hasID := fields["id"]
	switch p.Kind {
	case KindTenant:
		return !hasID || id == p.TenantID
	case KindDestination:
		return !hasID || id == p.DestID
	case KindSummary:
		return checkSummary(fields) == nil
	}
	return false
}

func describe(prefix string, k Key, legacy bool) string {
	if legacy {
		return fmt.Sprintf("legacy %s of tenant %q", k.Kind, k.TenantID)
	}
	return fmt.Sprintf("hash-tagged %s of tenant %q", k.Kind, k.TenantID)
}

// sorted is a chunk's keys by layout.
type sorted struct {
	v0     []string
	v1     []string
	v1keys []Key
	// v1read holds, for a hash-tagged key Resolve had to read, that read
	// (readForCheck), so that the update need not read it again; nil for
	// the others.
	v1read []*record
}

// sortKeys sorts a chunk into legacy keys (only without a prefix: v0 keys
// were never prefixed) and hash-tagged tenant/destination keys (summaries
// of layout v1 need no work from 002/003), by name where the name decides
// and by Resolve where it does not (Mixed). skip leaves out keys the caller
// already knows (twins this pass wrote). An ambiguous or unclassifiable
// Mixed key is handed to bad with the reason; it is in neither list. A
// Mixed key gone since SCAN is in neither list either.
func (s *Set) sortKeys(ctx context.Context, keys []string, wantV0, wantV1 bool, skip func(string) bool, bad func(key, reason string)) (sorted, error) {
	var out sorted
	var read *record // the record of the key add is given, if read
	add := func(k string, key Key, legacy bool) {
		switch {
		case legacy && wantV0:
			out.v0 = append(out.v0, k)
		case !legacy && wantV1 && key.Kind != KindSummary:
			out.v1 = append(out.v1, k)
			out.v1keys = append(out.v1keys, key)
			out.v1read = append(out.v1read, read)
		}
	}
	var mixed []string
	for _, k := range keys {
		if skip != nil && skip(k) {
			continue
		}
		if Mixed(s.prefix, k) {
			mixed = append(mixed, k)
			continue
		}
		if key, ok := ParseV1(s.prefix, k); ok {
			add(k, key, false)
		} else if s.prefix == "" && IsV0Candidate(k) {
			add(k, Key{}, true)
		}
	}
	if len(mixed) == 0 || (!wantV0 && !wantV1) {
		return out, nil
	}
	recs, err := s.readForCheck(ctx, mixed)
	if err != nil {
		return out, err
	}
	var owners []string
	for _, k := range mixed {
		owners = append(owners, Owners(s.prefix, k)...)
	}
	found, err := s.exists(ctx, owners)
	if err != nil {
		return out, err
	}
	there := map[string]bool{}
	for i, o := range owners {
		there[o] = found[i]
	}
	for i, k := range mixed {
		read = &recs[i]
		switch r := recs[i]; {
		case r.err != nil:
			// Not a hash: its name decides, as for any other key, and
			// the step reports its type.
			if key, ok := ParseV1(s.prefix, k); ok {
				add(k, key, false)
			} else {
				bad(k, "not a hash: "+r.err.Error())
			}
		case r.fields == nil:
			// Gone since SCAN.
		default:
			key, legacy, err := Resolve(s.prefix, k, r.fields, func(o string) bool { return there[o] })
			if err != nil {
				bad(k, err.Error())
				continue
			}
			add(k, key, legacy)
		}
	}
	return out, nil
}

// failer records a bad key as scanned and failed under each label.
func failer(t *scan.Tally, labels ...string) func(key, reason string) {
	return func(key, reason string) {
		for _, l := range labels {
			t.Add(l, func(c *report.Counts) { c.Scanned++ })
			t.Fail(l, report.Issue{Key: key, Reason: reason})
		}
	}
}
