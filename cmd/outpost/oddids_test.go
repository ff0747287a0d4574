package main

// Issue #15, item 3: tenant and destination ids with '{', '}', "}:", ':'
// and binary bytes. Every legacy key stays byte-identical, every twin is
// the legacy record under its hash-tagged name with 002/003 applied, and
// verify is exact, whether 001-003 run in one pass or 001 first and the
// rest in a second apply. Names that read both as a legacy and as a
// hash-tagged key of existing tenants are reported and left alone.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

var oddTenantIDs = []string{"{lead}", "{x", "cl}:ose", "a}b", "}{", "bin\xff\x00{}:\x01", "plain"}

const oddCreated = "2025-01-02T03:04:05.123456789+07:00"

type oddRecord struct {
	legacy, twin string
	fields       map[string]string
	entity       string
}

// oddRecords is the legacy keyspace: per tenant its record, its summary
// and two destinations, one with an odd id.
func oddRecords() []oddRecord {
	var out []oddRecord
	for _, tid := range oddTenantIDs {
		out = append(out,
			oddRecord{"tenant:" + tid, "tenant:{" + tid + "}:tenant", map[string]string{"id": tid, "created_at": oddCreated}, "tenant"},
			oddRecord{"tenant:" + tid + ":destinations", "tenant:{" + tid + "}:destinations",
				map[string]string{"d1": `{"id":"d1","type":"webhook","topics":["*"],"disabled":false}`}, ""})
		for _, did := range []string{"d1", "x}:y{\x00"} {
			out = append(out, oddRecord{"tenant:" + tid + ":destination:" + did, "tenant:{" + tid + "}:destination:" + did,
				map[string]string{"id": did, "type": "webhook", "created_at": oddCreated, "credentials": "\x00\xff\x10secret"}, "destination"})
		}
	}
	return out
}

func oddSeed(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	for _, r := range oddRecords() {
		require.NoError(t, c.HSet(ctx, r.legacy, r.fields).Err())
	}
}

// oddRequire checks every legacy key byte for byte and every twin.
func oddRequire(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	ms, err := seedtest.RFC3339ToUnixMilli(oddCreated)
	require.NoError(t, err)
	for _, r := range oddRecords() {
		got, err := c.HGetAll(ctx, r.legacy).Result()
		require.NoError(t, err)
		require.Equal(t, r.fields, got, "legacy key %q changed", r.legacy)
		want := map[string]string{}
		for f, v := range r.fields {
			want[f] = v
		}
		if r.entity != "" {
			want["created_at"] = strconv.FormatInt(ms, 10)
			want["entity"] = r.entity
		}
		got, err = c.HGetAll(ctx, r.twin).Result()
		require.NoError(t, err)
		require.Equal(t, want, got, "twin %q of %q", r.twin, r.legacy)
	}
	n, err := c.DBSize(ctx).Result()
	require.NoError(t, err)
	var keys []string
	require.NoError(t, seedtest.ScanAll(ctx, c, func(ks []string) error {
		for _, k := range ks {
			if !seedtest.IsToolKey(k) {
				keys = append(keys, k)
			}
		}
		return nil
	}))
	sort.Strings(keys)
	require.Len(t, keys, 2*len(oddRecords()), "no key but the legacy ones and their twins (%d keys in all)", n)
}

func TestReliabilityOddIDs(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			srv := servertest.Redis(t)
			c := srv.Client(t)
			envs := redisEnv(srv)
			oddSeed(t, c)
			if split {
				r := run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--target", "001")
				require.Equal(t, 0, r.code, r.stdout)
			}
			r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 0, r.code, r.stdout)
			require.Equal(t, "applied", r.rep["outcome"])
			oddRequire(t, c)
			v := run(t, envs, "migrate", "verify", "--redis-only")
			require.Equal(t, 0, v.code, v.stdout)

			// Verify is exact: a twin of the tenant "{lead}" made wrong
			// is named.
			require.NoError(t, c.HSet(context.Background(), "tenant:{{lead}}:destination:d1", "type", "changed").Err())
			v = run(t, envs, "migrate", "verify", "--redis-only")
			require.Equal(t, 3, v.code, v.stdout)
			require.Contains(t, v.stdout, `tenant:{{lead}}:destination:d1`)
		})
	}
}

// Tenants "lead" and "{lead}" both with destination d1: the legacy name
// "tenant:{lead}:destination:d1" of the second is the twin's name of the
// first. It is reported (exit 4, the key named) and nothing overwrites it.
func TestReliabilityAmbiguousNameLeftAlone(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	d := map[string]string{"id": "d1", "type": "webhook", "created_at": oddCreated}
	require.NoError(t, c.HSet(ctx, "tenant:lead", "id", "lead", "created_at", oddCreated).Err())
	require.NoError(t, c.HSet(ctx, "tenant:{lead}", "id", "{lead}", "created_at", oddCreated).Err())
	require.NoError(t, c.HSet(ctx, "tenant:lead:destination:d1", d).Err())
	require.NoError(t, c.HSet(ctx, "tenant:{lead}:destination:d1", d).Err())
	r := run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 4, r.code, r.stdout)
	require.Contains(t, r.stdout, "ambiguous")
	require.Contains(t, r.stdout, `tenant:{lead}:destination:d1`)
	got, err := c.HGetAll(ctx, "tenant:{lead}:destination:d1").Result()
	require.NoError(t, err)
	require.Equal(t, d, got, "the ambiguous key is never changed in place")
}
