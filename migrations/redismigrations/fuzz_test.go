package redismigrations_test

import (
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
		// V1 of a key built from the fuzzed ids round-trips when the
		// tenant id holds no '}' (a brace would end the hash tag).
		for _, k := range []redismigrations.Key{
			{Kind: redismigrations.KindTenant, TenantID: id},
			{Kind: redismigrations.KindSummary, TenantID: id},
			{Kind: redismigrations.KindDestination, TenantID: id, DestID: typ},
		} {
			if k.TenantID == "" || strings.Contains(k.TenantID, "}") || k.Kind == redismigrations.KindDestination && k.DestID == "" {
				continue
			}
			name := k.V1(prefix)
			got, ok := redismigrations.ParseV1(prefix, name)
			if !ok || got != k {
				t.Fatalf("ParseV1(%q, %q) = %+v %v, want %+v", prefix, name, got, ok, k)
			}
			if redismigrations.IsV0Candidate(name[len(prefix):]) {
				t.Fatalf("v1 name %q taken for a v0 candidate", name)
			}
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
