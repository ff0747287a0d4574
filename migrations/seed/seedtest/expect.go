// Package seedtest is the test oracle of the Redis migrations: what a
// generated keyspace must hold after them (Expect), computed from the
// generator's model alone, and a key-by-key comparison with a live store
// (Check). Test support only; no production package imports it.
package seedtest

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/outpost-migrate/outpost/migrations/seed"
)

// ExpectedKey is what one key must hold after the migrations.
type ExpectedKey struct {
	Type   string            // seed.TypeHash, seed.TypeString, seed.TypeSet or seed.TypeZSet
	Fields map[string]string // seed.TypeHash: every field, binary-safe
	// Value is the content of other types: a string (seed.TypeString), the
	// members sorted ([]string, seed.TypeSet), or the members in ZRANGE order
	// ([]seed.ZMember, seed.TypeZSet).
	Value  any
	HasTTL bool
	// TTLMs is the TTL the key was written with; a live key (or a copy of
	// it) holds at most this much.
	TTLMs int64
}

// ExpectFunc computes an expected keyspace: Expect or ExpectAfterCleanup.
type ExpectFunc func(opts seed.Options, fn func(key string, want ExpectedKey) error) error

// RFC3339ToUnixMilli converts a created_at/updated_at written by a v0/v1
// server (RFC3339 or RFC3339Nano, any zone, any number of fractional
// digits) to Unix milliseconds, truncated (not rounded) from the instant.
func RFC3339ToUnixMilli(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}

// Expect calls fn with every key that must exist once migrations 001-003
// have been applied to the dataset of opts, with no cleanup, computed from
// the model alone (independently of any migration code):
//   - layout 0: every v0 key unchanged, and for each its v1 twin
//     (tenant:{<tid>}:tenant, tenant:{<tid>}:destinations,
//     tenant:{<tid>}:destination:<did>) with the same fields byte for byte,
//     except on tenant and destination hashes: created_at/updated_at as
//     Unix ms and entity=tenant|destination; disabled_at and deleted_at
//     unchanged; the same TTL (soft-deleted records).
//   - layouts 1-3 (prefixed or not): the same keys converted in place.
//   - unrelated keys unchanged.
//
// The migration tool's own keys (state, lock, checkpoints) are not listed.
// Order: tenant by tenant, then unrelated keys.
func Expect(opts seed.Options, fn func(key string, want ExpectedKey) error) error {
	return expect(opts, false, fn)
}

// ExpectAfterCleanup is Expect after a cleanup removed the preserved v0
// keys: the same keys without any v0 tenant:* key.
func ExpectAfterCleanup(opts seed.Options, fn func(key string, want ExpectedKey) error) error {
	return expect(opts, true, fn)
}

func expect(opts seed.Options, cleaned bool, fn func(string, ExpectedKey) error) error {
	err := seed.ForEachTenant(opts, func(t seed.Tenant) error {
		return expectTenant(opts.Layout, &t, cleaned, fn)
	})
	if err != nil {
		return err
	}
	return seed.ForEachKey(opts, func(k seed.Key) error {
		if k.Kind != seed.KindUnrelated {
			return nil
		}
		return fn(k.Name, expected(&k))
	})
}

// twinName is the v1 name 001 gives a v0 key, spelled here from the layout
// table rather than taken from the generator or the migration code. A v0
// deployment has no deployment id, so twins carry no prefix.
func twinName(tid string, k *seed.Key, did string) string {
	switch k.Kind {
	case seed.KindTenant:
		return "tenant:{" + tid + "}:tenant"
	case seed.KindSummary:
		return "tenant:{" + tid + "}:destinations"
	default:
		return "tenant:{" + tid + "}:destination:" + did
	}
}

// expectTenant emits the expected keys of one tenant written in layout.
func expectTenant(layout int, t *seed.Tenant, cleaned bool, fn func(string, ExpectedKey) error) error {
	type pair struct {
		k    *seed.Key
		twin string
	}
	pairs := []pair{{&t.Key, twinName(t.ID, &t.Key, "")}}
	if t.Summary != nil {
		pairs = append(pairs, pair{t.Summary, twinName(t.ID, t.Summary, "")})
	}
	for j := range t.Destinations {
		d := &t.Destinations[j]
		pairs = append(pairs, pair{&d.Key, twinName(t.ID, &d.Key, d.ID)})
	}
	for _, p := range pairs {
		conv, err := converted(p.k)
		if err != nil {
			return err
		}
		if layout != seed.LayoutV0 {
			if err := fn(p.k.Name, conv); err != nil {
				return err
			}
			continue
		}
		if !cleaned {
			if err := fn(p.k.Name, expected(p.k)); err != nil {
				return err
			}
		}
		if err := fn(p.twin, conv); err != nil {
			return err
		}
	}
	return nil
}

// expected is k as written.
func expected(k *seed.Key) ExpectedKey {
	e := ExpectedKey{Type: k.Type, HasTTL: k.TTL > 0, TTLMs: k.TTL.Milliseconds()}
	switch k.Type {
	case seed.TypeHash:
		e.Fields = make(map[string]string, len(k.Fields)+1)
		for _, f := range k.Fields {
			e.Fields[f.Name] = f.Value
		}
	case seed.TypeString:
		e.Value = k.Value
	case seed.TypeSet:
		m := append([]string(nil), k.Members...)
		sort.Strings(m)
		e.Value = m
	case seed.TypeZSet:
		z := append([]seed.ZMember(nil), k.ZMembers...)
		sort.Slice(z, func(i, j int) bool {
			if z[i].Score != z[j].Score {
				return z[i].Score < z[j].Score
			}
			return z[i].Member < z[j].Member
		})
		e.Value = z
	}
	return e
}

// converted is k after 002 and 003: on tenant and destination hashes,
// RFC3339 created_at/updated_at become Unix ms and entity is set when
// missing. Summaries and other keys are unchanged.
func converted(k *seed.Key) (ExpectedKey, error) {
	e := expected(k)
	if k.Kind != seed.KindTenant && k.Kind != seed.KindDestination {
		return e, nil
	}
	for _, name := range []string{"created_at", "updated_at"} {
		v, ok := e.Fields[name]
		if !ok {
			continue
		}
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			continue // already milliseconds
		}
		ms, err := RFC3339ToUnixMilli(v)
		if err != nil {
			return ExpectedKey{}, fmt.Errorf("seed: key %q: %s %q: %w", k.Name, name, v, err)
		}
		e.Fields[name] = strconv.FormatInt(ms, 10)
	}
	if _, ok := e.Fields["entity"]; !ok {
		e.Fields["entity"] = string(k.Kind)
	}
	return e, nil
}
