package redismigrations_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-migrate/outpost/migrations/redismigrations"
)

// FuzzToUnixMilli: any value converts or is refused, never panics; a
// converted value is decimal Unix milliseconds naming the same instant,
// truncated below the millisecond, and converting it again changes nothing.
func FuzzToUnixMilli(f *testing.F) {
	for _, s := range []string{
		// The storage spec's and seed's shapes: every precision, every zone.
		"2025-08-01T10:30:00.123456789+07:00",
		"2025-08-01T10:30:00.1234567+07:00",
		"2025-08-01T10:30:00.123+07:00",
		"2025-08-01T10:30:00.123456-05:00",
		"2025-08-01T10:30:00Z",
		"2025-08-01T10:30:00.999999999+12:45",
		"2025-01-02T03:04:05.5Z",
		"1969-12-31T23:59:59.9999Z",
		"0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999-23:59",
		"1754019000123",
		"-1",
		"+42",
		"9223372036854775807",
		"9223372036854775808",
		"",
		"2025-08-01 10:30:00",
		"2025-08-01T10:30:00",
		"2025-02-30T00:00:00Z",
		"2025-08-01T24:00:00Z",
		"2025-08-01T10:30:00,123Z",
		"2025-08-01T10:30:00.Z",
		"not a time",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out, changed, err := redismigrations.ToUnixMilli(v)
		if err != nil {
			if changed || out != "" {
				t.Fatalf("error with a result: %q %v", out, changed)
			}
			if redismigrations.SameInstant(v, v) {
				t.Fatalf("SameInstant accepts %q that ToUnixMilli refuses", v)
			}
			return
		}
		ms, perr := strconv.ParseInt(out, 10, 64)
		if perr != nil {
			t.Fatalf("%q -> %q, not an int64: %v", v, out, perr)
		}
		if !changed {
			if out != v {
				t.Fatalf("unchanged but %q -> %q", v, out)
			}
			return
		}
		if !redismigrations.SameInstant(v, out) {
			t.Fatalf("%q -> %q: not the same instant", v, out)
		}
		// The instant, independently: Parse then truncate toward minus
		// infinity (a pre-1970 time rounds down, not toward zero).
		tm, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("converted %q that time.Parse refuses: %v", v, err)
		}
		back := time.UnixMilli(ms)
		if back.After(tm) || tm.Sub(back) >= time.Millisecond {
			t.Fatalf("%q -> %d ms = %s, not %s truncated to the millisecond", v, ms, back.UTC(), tm.UTC())
		}
		again, changedAgain, err := redismigrations.ToUnixMilli(out)
		if err != nil || changedAgain || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q %v %v", v, out, again, changedAgain, err)
		}
	})
}

// FuzzClassify: reading a key name, v0 or v1, never panics, and every
// reading spells the name it was read from.
//   - each V0Parses reading's V0() is the key, and the first reading is the
//     tenant one;
//   - ParseV1 of any string, when it succeeds, gives back the string through
//     V1; and V1 of any key whose ids hold no '}' parses back to the key;
//   - ClassifyV0 of any name and content returns one of the name's readings
//     or an error.
func FuzzClassify(f *testing.F) {
	for _, s := range []struct{ key, id, typ, deleted, extra string }{
		{"tenant:t1", "t1", "", "", ""},
		{"tenant:t1:destinations", "", "", "", `{"id":"d1","type":"webhook","topics":["*"],"disabled":false}`},
		{"tenant:t1:destination:d1", "d1", "webhook", "", ""},
		{"tenant:org:x:1:destination:dest:3:abc", "dest:3:abc", "aws_sqs", "", ""},
		{"tenant:a:destination:b:destination:c", "b:destination:c", "webhook", "", ""},
		{"tenant:a:destination:b:destination:c", "c", "webhook", "", ""},
		{"tenant:a:destination:b:destination:c", "", "", "2025-08-01T10:30:00Z", ""},
		{"tenant:x:destinations", "", "", "2025-08-01T10:30:00Z", ""},
		{"tenant:{t1}:tenant", "t1", "", "", ""},
		{"dep:tenant:{org:x:1}:destination:d:1", "d:1", "webhook", "", ""},
		{"tenant:{a}:b}:tenant", "", "", "", ""},
		{"tenant:", "", "", "", ""},
		{"tenant::destination:", "", "", "", ""},
		{"tenant:t:destinations", "", "", "", "not json"},
		{"tenant_idx", "", "", "", ""},
		{"tenant:{lead}:destination:d1", "{lead}", "d1", "", ""},
		{"tenant:{x", "{x", "d", "", ""},
		{"tenant:{cl}:ose}:tenant", "cl}:ose", "d:1", "", ""},
		{"tenant:{a}b}:tenant", "a}b", "}:", "", ""},
		{"tenant:{}{}:tenant", "}{", "{d}", "", ""},
		{"tenant:\xff\x00}:", "\xff\x00}:{", "\x00", "", ""},
		{"tenant:{a}:destination:b}:tenant", "a}:destination:b", "b}:tenant", "", ""},
	} {
		f.Add(s.key, s.id, s.typ, s.deleted, s.extra, "dep:")
	}
	f.Fuzz(func(t *testing.T, key, id, typ, deleted, extra, prefix string) {
		ps := redismigrations.V0Parses(key)
		for i, p := range ps {
			if p.V0() != key {
				t.Fatalf("V0Parses(%q)[%d] = %+v spells %q", key, i, p, p.V0())
			}
			if p.TenantID == "" || p.Kind == redismigrations.KindDestination && p.DestID == "" {
				t.Fatalf("V0Parses(%q)[%d] = %+v has an empty id", key, i, p)
			}
		}
		if len(ps) > 0 && ps[0].Kind != redismigrations.KindTenant {
			t.Fatalf("V0Parses(%q): first reading %+v is not the tenant one", key, ps[0])
		}
		if (len(ps) > 0) != (strings.HasPrefix(key, "tenant:") && key != "tenant:") {
			t.Fatalf("V0Parses(%q) = %d readings", key, len(ps))
		}

		if k, ok := redismigrations.ParseV1(prefix, key); ok {
			if got := k.V1(prefix); got != key {
				t.Fatalf("ParseV1(%q, %q) = %+v spells %q", prefix, key, k, got)
			}
		}
		for _, k := range redismigrations.V1Parses(prefix, key) {
			if got := k.V1(prefix); got != key {
				t.Fatalf("V1Parses(%q, %q) has %+v, which spells %q", prefix, key, k, got)
			}
		}
		for _, k := range []redismigrations.Key{
			{Kind: redismigrations.KindTenant, TenantID: id},
			{Kind: redismigrations.KindSummary, TenantID: id},
			{Kind: redismigrations.KindDestination, TenantID: id, DestID: typ},
		} {
			if k.TenantID == "" || k.Kind == redismigrations.KindDestination && k.DestID == "" {
				continue
			}
			roundTrip(t, prefix, k)
			roundTrip(t, "", k)
		}

		fields := map[string]string{}
		for name, v := range map[string]string{"id": id, "type": typ, "deleted_at": deleted, extra: extra} {
			if v != "" {
				fields[name] = v
			}
		}
		k, err := redismigrations.ClassifyV0(key, fields)
		if err != nil {
			return
		}
		found := false
		for _, p := range ps {
			found = found || p == k
		}
		if !found {
			t.Fatalf("ClassifyV0(%q, %v) = %+v, not a reading of the name %v", key, fields, k, ps)
		}
	})
}

// content is what a live record of k holds that names it: its id, or for a
// summary one destination entry.
func content(k redismigrations.Key) map[string]string {
	switch k.Kind {
	case redismigrations.KindTenant:
		return map[string]string{"id": k.TenantID, "created_at": "1"}
	case redismigrations.KindDestination:
		return map[string]string{"id": k.DestID, "type": "webhook"}
	}
	return map[string]string{"d1": `{"id":"d1","type":"webhook"}`}
}

// roundTrip: whatever bytes the ids hold, k's hash-tagged name, in a
// keyspace where k's tenant exists in that layout, reads back as k (never
// as a legacy key, never as another record) or is reported ambiguous; and
// without a prefix k's legacy name, where k's legacy tenant exists, reads
// back as the legacy k or is reported ambiguous. A name whose layout the
// name alone decides (not Mixed) reads back as k by name and content.
func roundTrip(t *testing.T, prefix string, k redismigrations.Key) {
	t.Helper()
	fields := content(k)
	v1Owner := redismigrations.Key{Kind: redismigrations.KindTenant, TenantID: k.TenantID}.V1(prefix)
	name := k.V1(prefix)
	if redismigrations.Mixed(prefix, name) {
		got, legacy, err := redismigrations.Resolve(prefix, name, fields, func(o string) bool { return o == v1Owner })
		if err != nil && !errors.Is(err, redismigrations.ErrAmbiguous) {
			t.Fatalf("Resolve(%q, %q): %v", prefix, name, err)
		}
		if err == nil && (legacy || got != k) {
			t.Fatalf("Resolve(%q, %q) = %+v legacy=%v, want hash-tagged %+v", prefix, name, got, legacy, k)
		}
	} else if got, ok := redismigrations.ParseV1(prefix, name); !ok || got != k {
		t.Fatalf("ParseV1(%q, %q) = %+v %v, want %+v", prefix, name, got, ok, k)
	}
	if prefix != "" {
		return
	}
	name = k.V0()
	if redismigrations.Mixed("", name) {
		got, legacy, err := redismigrations.Resolve("", name, fields, func(o string) bool { return o == "tenant:"+k.TenantID })
		if err != nil && !errors.Is(err, redismigrations.ErrAmbiguous) {
			t.Fatalf("Resolve(%q): %v", name, err)
		}
		if err == nil && (!legacy || got != k) {
			t.Fatalf("Resolve(%q) = %+v legacy=%v, want legacy %+v", name, got, legacy, k)
		}
		return
	}
	if !redismigrations.IsV0Candidate(name) {
		t.Fatalf("legacy name %q is not a legacy candidate", name)
	}
	if got, err := redismigrations.ClassifyV0(name, fields); err != nil || got != k {
		t.Fatalf("ClassifyV0(%q) = %+v %v, want %+v", name, got, err, k)
	}
}
