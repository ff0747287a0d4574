package redismigrations_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/migrations/redismigrations"
)

func tenant(tid string) redismigrations.Key {
	return redismigrations.Key{Kind: redismigrations.KindTenant, TenantID: tid}
}
func summary(tid string) redismigrations.Key {
	return redismigrations.Key{Kind: redismigrations.KindSummary, TenantID: tid}
}
func destination(tid, did string) redismigrations.Key {
	return redismigrations.Key{Kind: redismigrations.KindDestination, TenantID: tid, DestID: did}
}

func TestClassifyV0(t *testing.T) {
	const entry = `{"id":"d1","type":"webhook","topics":["*"],"disabled":false}`
	cases := []struct {
		name   string
		key    string
		fields map[string]string
		want   redismigrations.Key
		err    string // substring of the error; "" = no error
	}{
		{"tenant", "tenant:t1", map[string]string{"id": "t1", "created_at": "2025-01-02T03:04:05Z"}, tenant("t1"), ""},
		{"tenant id with ':'", "tenant:org:acme:7", map[string]string{"id": "org:acme:7"}, tenant("org:acme:7"), ""},
		{"tenant id containing ':destination:'", "tenant:a:destination:b", map[string]string{"id": "a:destination:b", "created_at": "x"}, tenant("a:destination:b"), ""},
		{"tenant id ending in ':destinations'", "tenant:x:destinations", map[string]string{"id": "x:destinations"}, tenant("x:destinations"), ""},
		{"soft-deleted tenant keeping its fields", "tenant:t9", map[string]string{"id": "t9", "created_at": "2025-01-02T03:04:05Z", "deleted_at": "2025-04-01T12:00:00Z"}, tenant("t9"), ""},
		{"soft-deleted tenant, only deleted_at", "tenant:t3", map[string]string{"deleted_at": "2025-04-01T12:00:00Z"}, tenant("t3"), ""},
		{"soft-deleted tenant whose id ends in ':destinations'", "tenant:x:destinations", map[string]string{"deleted_at": "2025-04-01T12:00:00Z"}, tenant("x:destinations"), ""},

		{"summary", "tenant:t1:destinations", map[string]string{"d1": entry}, summary("t1"), ""},
		{"summary of a tenant id with ':'", "tenant:org:x:1:destinations", map[string]string{"d1": entry}, summary("org:x:1"), ""},
		{"summary listing a destination called deleted_at", "tenant:t1:destinations", map[string]string{"deleted_at": `{"id":"deleted_at","type":"webhook"}`}, summary("t1"), ""},
		{"summary listing a destination called id", "tenant:t1:destinations", map[string]string{"id": `{"id":"id","type":"webhook"}`}, summary("t1"), ""},
		{"summary of a tenant id containing ':destination:'", "tenant:a:destination:b:destinations", map[string]string{"d1": entry}, summary("a:destination:b"), ""},
		{"summary with invalid JSON", "tenant:t1:destinations", map[string]string{"d1": "{not json"}, redismigrations.Key{}, `field "d1" is not a JSON object`},
		{"summary entry under another id", "tenant:t1:destinations", map[string]string{"d2": entry}, redismigrations.Key{}, `field "d2" holds destination id "d1"`},

		{"destination", "tenant:t1:destination:d1", map[string]string{"id": "d1", "type": "webhook"}, destination("t1", "d1"), ""},
		{"destination id with ':'", "tenant:t2:destination:dest:9", map[string]string{"id": "dest:9", "type": "webhook"}, destination("t2", "dest:9"), ""},
		{"both ids with ':'", "tenant:org:x:1:destination:wh:ab:3", map[string]string{"id": "wh:ab:3", "type": "aws_sqs"}, destination("org:x:1", "wh:ab:3"), ""},
		{"destination id containing ':destination:'", "tenant:a:destination:b:destination:c", map[string]string{"id": "b:destination:c", "type": "webhook"}, destination("a", "b:destination:c"), ""},
		{"tenant id containing ':destination:'", "tenant:a:destination:b:destination:c", map[string]string{"id": "c", "type": "webhook"}, destination("a:destination:b", "c"), ""},
		{"destination named destinations", "tenant:a:destination:destinations", map[string]string{"id": "destinations", "type": "webhook"}, destination("a", "destinations"), ""},
		{"destination without type", "tenant:t1:destination:d1", map[string]string{"id": "d1", "created_at": "x"}, destination("t1", "d1"), ""},
		{"soft-deleted destination keeping its fields", "tenant:t1:destination:d1", map[string]string{"id": "d1", "type": "webhook", "deleted_at": "2025-08-05T00:00:00Z"}, destination("t1", "d1"), ""},
		{"soft-deleted destination, only deleted_at", "tenant:t1:destination:gone", map[string]string{"deleted_at": "2025-08-05T00:00:00Z"}, destination("t1", "gone"), ""},
		{"soft-deleted destination with ':' ids", "tenant:org:x:1:destination:dest:3:abc", map[string]string{"deleted_at": "2025-08-05T00:00:00Z"}, destination("org:x:1", "dest:3:abc"), ""},
		{"soft-deleted, ambiguous name: leftmost split", "tenant:a:destination:b:destination:c", map[string]string{"deleted_at": "2025-08-05T00:00:00Z"}, destination("a", "b:destination:c"), ""},
		{"soft-deleted destination named destinations", "tenant:a:destination:destinations", map[string]string{"deleted_at": "2025-08-05T00:00:00Z"}, destination("a", "destinations"), ""},

		{"id matching no reading", "tenant:t1:destination:d1", map[string]string{"id": "d2", "type": "webhook"}, redismigrations.Key{}, `id "d2" matches no reading`},
		{"tenant with another id", "tenant:t1", map[string]string{"id": "t2"}, redismigrations.Key{}, `id "t2" matches no reading`},
		{"stub without id or deleted_at", "tenant:t1", map[string]string{"entity": "tenant"}, redismigrations.Key{}, "neither id nor deleted_at"},
		{"not a tenant key", "tenants:t1", map[string]string{"id": "t1"}, redismigrations.Key{}, "cannot tell"},
		{"empty tenant id", "tenant:", map[string]string{"id": ""}, redismigrations.Key{}, "cannot tell"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := redismigrations.ClassifyV0(c.key, c.fields)
			if c.err != "" {
				require.Error(t, err)
				require.True(t, errors.Is(err, redismigrations.ErrUnclassifiable), "%v wraps ErrUnclassifiable", err)
				require.Contains(t, err.Error(), c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			require.Equal(t, c.key, got.V0(), "the reading spells the key")
		})
	}
}

func TestKeyNames(t *testing.T) {
	for _, c := range []struct {
		k      redismigrations.Key
		prefix string
		v1     string
	}{
		{tenant("t1"), "", "tenant:{t1}:tenant"},
		{summary("org:x:1"), "", "tenant:{org:x:1}:destinations"},
		{destination("org:x:1", "dest:3:abc"), "", "tenant:{org:x:1}:destination:dest:3:abc"},
		{destination("a:destination:b", "c"), "dep:", "dep:tenant:{a:destination:b}:destination:c"},
		{tenant("t1"), "my-dep:", "my-dep:tenant:{t1}:tenant"},
	} {
		name := c.k.V1(c.prefix)
		require.Equal(t, c.v1, name)
		back, ok := redismigrations.ParseV1(c.prefix, name)
		require.True(t, ok, name)
		require.Equal(t, c.k, back)
		// Without a prefix every hash-tagged name also reads as a legacy
		// one (a legacy id may start with '{'): content and the tenant
		// records decide (Resolve).
		require.Equal(t, c.prefix == "", redismigrations.Mixed(c.prefix, name), "%s", name)
		require.True(t, redismigrations.IsV0Candidate(c.k.V0()), "%s is a v0 name", c.k.V0())
	}
	for _, bad := range []struct{ prefix, key string }{
		{"", "tenant:t1"},                       // v0
		{"", "tenant:t1:destination:d1"},        // v0
		{"", "tenant:{t1}:other"},               // unknown suffix
		{"", "tenant:{t1}:destination:"},        // empty destination id
		{"", "tenant:{}:tenant"},                // empty tenant id
		{"dep:", "tenant:{t1}:tenant"},          // another deployment (none)
		{"", "dep:tenant:{t1}:tenant"},          // another deployment
		{"dep:", "dep2:tenant:{t1}:tenant"},     // another deployment
		{"", "tenant_idx"},                      // search index
		{"", "outpost:migration:001_hash_tags"}, // state
	} {
		_, ok := redismigrations.ParseV1(bad.prefix, bad.key)
		require.False(t, ok, "%q under prefix %q", bad.key, bad.prefix)
	}
}

func TestToUnixMilli(t *testing.T) {
	for _, c := range []struct {
		in, out string
		changed bool
		err     bool
	}{
		{"2025-08-01T10:30:00.123456789+07:00", "1754019000123", true, false},
		{"2025-01-02T03:04:05Z", "1735787045000", true, false},
		{"2025-01-02T03:04:05.5Z", "1735787045500", true, false},
		{"2025-01-02T03:04:05.9999999Z", "1735787045999", true, false}, // truncated, not rounded
		{"2025-03-01T00:00:00.000-05:00", "1740805200000", true, false},
		{"1754019000123", "1754019000123", false, false}, // already ms: left alone
		{"0", "0", false, false},
		{"yesterday", "", false, true},
		{"2025-08-01 10:30:00", "", false, true},
		{"", "", false, true},
		{"1.754e12", "", false, true},
	} {
		out, changed, err := redismigrations.ToUnixMilli(c.in)
		if c.err {
			require.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.out, out, c.in)
		require.Equal(t, c.changed, changed, c.in)
	}
	require.True(t, redismigrations.SameInstant("2025-08-01T10:30:00.123456789+07:00", "1754019000123"))
	require.True(t, redismigrations.SameInstant("2025-08-01T03:30:00.123Z", "2025-08-01T10:30:00.123999+07:00"))
	require.False(t, redismigrations.SameInstant("2025-08-01T03:30:00.124Z", "1754019000123"))
	require.False(t, redismigrations.SameInstant("bad", "bad"))
}
