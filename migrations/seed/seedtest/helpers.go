package seedtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/migrations/seed"
)

// The helpers the tests of seed and of this package share.

// SmallOptions is a v0 dataset small enough to check key by key, with
// every kind of record present several times.
func SmallOptions() seed.Options {
	o := seed.DefaultOptions()
	o.Tenants = 400
	o.SoftDeletedRatio = 0.1
	o.ColonIDRatio = 0.1
	o.MissingFromSummaryRatio = 0.1
	o.Seed = 42
	o.UnrelatedKeys = 40
	return o
}

// WantDumpV0 is the recorded hash of the sorted dump (Dump) of
// SmallOptions, layout 0, on any server. If the generator changes on
// purpose, record the new value printed by the failing test.
const WantDumpV0 = "83424a6fa6d38bcc209666e14845b381a6945013d9f7f555a000c9cf4269628d"

// testCallTimeout bounds one test's calls to the servers.
const testCallTimeout = 50 * time.Second

// Ctx is a context for one test's calls, cancelled when it ends.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Dump hashes the whole keyspace in a canonical form: sorted keys, each
// with its type, TTL presence and content (hash fields and set members
// sorted), every string length-prefixed so binary values cannot collide.
func Dump(t testing.TB, ctx context.Context, client redis.UniversalClient) (string, int) {
	t.Helper()
	var keys []string
	require.NoError(t, ScanAll(ctx, client, func(k []string) error {
		keys = append(keys, k...)
		return nil
	}))
	sort.Strings(keys)
	keys = compactStrings(keys)
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		pipe := client.Pipeline()
		types := make([]*redis.StatusCmd, len(batch))
		ttls := make([]*redis.DurationCmd, len(batch))
		for i, k := range batch {
			types[i] = pipe.Type(ctx, k)
			ttls[i] = pipe.PTTL(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		pipe = client.Pipeline()
		contents := make([]redis.Cmder, len(batch))
		for i, k := range batch {
			switch types[i].Val() {
			case seed.TypeHash:
				contents[i] = pipe.HGetAll(ctx, k)
			case seed.TypeString:
				contents[i] = pipe.Get(ctx, k)
			case seed.TypeSet:
				contents[i] = pipe.SMembers(ctx, k)
			case seed.TypeZSet:
				contents[i] = pipe.ZRangeWithScores(ctx, k, 0, -1)
			default:
				t.Fatalf("key %q has type %s", k, types[i].Val())
			}
		}
		_, err = pipe.Exec(ctx)
		require.NoError(t, err)
		for i, k := range batch {
			put(k)
			put(types[i].Val())
			put(strconv.FormatBool(ttls[i].Val() > 0))
			switch c := contents[i].(type) {
			case *redis.MapStringStringCmd:
				m := c.Val()
				names := make([]string, 0, len(m))
				for n := range m {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					put(n)
					put(m[n])
				}
			case *redis.StringCmd:
				put(c.Val())
			case *redis.StringSliceCmd:
				m := c.Val()
				sort.Strings(m)
				for _, v := range m {
					put(v)
				}
			case *redis.ZSliceCmd:
				for _, z := range c.Val() {
					put(fmt.Sprint(z.Member))
					put(strconv.FormatFloat(z.Score, 'g', -1, 64))
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), len(keys)
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// MustWrite writes o's dataset and checks that seed.Write's stats are the
// model's (seed.Count).
func MustWrite(t testing.TB, ctx context.Context, client redis.UniversalClient, o seed.Options) seed.Stats {
	t.Helper()
	st, err := seed.Write(ctx, client, o)
	require.NoError(t, err)
	want, err := seed.Count(o)
	require.NoError(t, err)
	assert.Equal(t, want.Keys, st.Keys)
	assert.GreaterOrEqual(t, st.Commands, st.Keys)
	st.Commands = 0
	assert.Equal(t, want, st, "seed.Write's stats are the model's")
	return st
}
