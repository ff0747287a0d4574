package redismigrations_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

// bigOptions is a realistic v0 keyspace of more than 100k keys: soft-deleted
// records with TTLs, ids with ':', binary credentials, destinations missing
// from their summary, unrelated Outpost keys.
func bigOptions() seed.Options {
	o := seed.DefaultOptions()
	o.Tenants = 21_000
	o.DestinationsPerTenant = 3
	o.Seed = 7
	o.SoftDeletedRatio = 0.08
	o.ColonIDRatio = 0.1
	o.MissingFromSummaryRatio = 0.05
	o.UnrelatedKeys = 500
	return o
}

// phaseFor builds the Redis phase as cmd does (lock key, migration set,
// no deployment prefix unless given), with opts.
func phaseFor(c goredis.UniversalClient, prefix string, opts redisphase.Options) *redisphase.Phase {
	return redisphase.New(c, prefix, prefix+".outpost:migration_lock", redismigrations.New(c, prefix), opts, nil)
}

// runFor is a run of command with an id of its own and no event sink.
func runFor(command string) *batch.Run {
	return &batch.Run{ID: "r-" + command, Command: command, Events: progress.Nop}
}

// eachMaster scans every master (every node of a cluster, not a random
// one) for keys matching match and hands them to fn, serialised.
func eachMaster(t *testing.T, ctx context.Context, c goredis.UniversalClient, match string, fn func(keys []string)) {
	t.Helper()
	var mu sync.Mutex
	scanNode := func(ctx context.Context, n *goredis.Client) error {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			fn(keys)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	switch cc := c.(type) {
	case *goredis.ClusterClient:
		require.NoError(t, cc.ForEachMaster(ctx, scanNode))
	case *goredis.Client:
		require.NoError(t, scanNode(ctx, cc))
	default:
		t.Fatalf("unsupported client %T", c)
	}
}

// isLegacyName tells a v0 entity key by its name alone, the way the
// generator writes them (no id holds a brace), independently of the code
// under test.
func isLegacyName(k string) bool {
	return strings.HasPrefix(k, "tenant:") && !strings.Contains(k, "{")
}

// dumpLegacy returns a digest of every v0 key: its type, every field and
// value byte for byte (length-prefixed, so binary values cannot collide),
// and whether it has a TTL.
func dumpLegacy(t *testing.T, ctx context.Context, c goredis.UniversalClient) map[string]string {
	t.Helper()
	var keys []string
	eachMaster(t, ctx, c, "tenant:*", func(ks []string) {
		for _, k := range ks {
			if isLegacyName(k) {
				keys = append(keys, k)
			}
		}
	})
	out := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		pipe := c.Pipeline()
		types := make([]*goredis.StatusCmd, len(batch))
		hs := make([]*goredis.MapStringStringCmd, len(batch))
		ttls := make([]*goredis.DurationCmd, len(batch))
		for i, k := range batch {
			types[i] = pipe.Type(ctx, k)
			hs[i] = pipe.HGetAll(ctx, k)
			ttls[i] = pipe.PTTL(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		for i, k := range batch {
			typ := types[i].Val()
			require.NoError(t, types[i].Err())
			h := sha256.New()
			put := func(s string) {
				var n [8]byte
				binary.BigEndian.PutUint64(n[:], uint64(len(s)))
				h.Write(n[:])
				h.Write([]byte(s))
			}
			put(typ)
			if typ == "hash" {
				require.NoError(t, hs[i].Err())
				fields := hs[i].Val()
				names := make([]string, 0, len(fields))
				for f := range fields {
					names = append(names, f)
				}
				sort.Strings(names)
				for _, f := range names {
					put(f)
					put(fields[f])
				}
			}
			require.NoError(t, ttls[i].Err())
			put(fmt.Sprint(ttls[i].Val() > 0))
			out[k] = fmt.Sprintf("%x", h.Sum(nil))
		}
	}
	return out
}

func requireNoDiffs(t *testing.T, diffs []string, what string) {
	t.Helper()
	if len(diffs) > 0 {
		t.Fatalf("%s: %d differences, first ones:\n%s", what, len(diffs), strings.Join(diffs[:min(20, len(diffs))], "\n"))
	}
}

func line(t *testing.T, lines []report.Migration, name string) report.Migration {
	t.Helper()
	for _, l := range lines {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no line for %s in %+v", name, lines)
	return report.Migration{}
}

// requireApplied checks the state Outpost's server reads.
func requireApplied(t *testing.T, ctx context.Context, c goredis.UniversalClient, prefix, name string) {
	t.Helper()
	st, err := c.HGetAll(ctx, prefix+"outpost:migration:"+name).Result()
	require.NoError(t, err)
	require.Equal(t, "applied", st["status"], name)
	_, err = time.Parse(time.RFC3339, st["applied_at"])
	require.NoError(t, err, "applied_at of %s is RFC3339", name)
}

// expected counts, from the generator's own statistics.
type expectedCounts struct {
	legacy      int64 // v0 tenant, summary and destination keys
	entities    int64 // tenant and destination hashes (live and soft-deleted)
	withStamps  int64 // live tenant and destination hashes: created_at to convert
	expectedAll int   // keys seedtest.Expect lists
}

func countsOf(t *testing.T, st seed.Stats) expectedCounts {
	t.Helper()
	e := expectedCounts{
		legacy:     int64(st.Keys - st.Unrelated),
		entities:   int64(st.Tenants + st.SoftDeletedTenants + st.Destinations + st.SoftDeletedDestinations),
		withStamps: int64(st.Tenants + st.Destinations),
	}
	require.Equal(t, e.legacy, e.entities+int64(st.Summaries))
	return e
}

// migrateBig runs the whole life of a v0 keyspace of more than 100k keys:
// plan, apply, the v0 keys byte-identical, the keyspace exactly as
// expected, verify with exact counts, cleanup, and the keyspace exactly as
// expected after cleanup.
func migrateBig(t *testing.T, c goredis.UniversalClient, nodes int) {
	ctx := context.Background()
	opts := bigOptions()
	t0 := time.Now()
	st, err := seed.Write(ctx, c, opts)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Keys, 100_000, "a keyspace of at least 100k keys")
	require.Positive(t, st.SoftDeletedTenants)
	require.Positive(t, st.SoftDeletedDestinations)
	require.Positive(t, st.MissingFromSummary)
	require.Positive(t, st.ColonTenantIDs)
	require.Positive(t, st.ColonDestinationIDs)
	require.Positive(t, st.BinaryFields)
	want := countsOf(t, st)
	before := dumpLegacy(t, ctx, c)
	require.Len(t, before, int(want.legacy))
	t.Logf("seeded %d keys (%d legacy) in %s", st.Keys, want.legacy, time.Since(t0))

	p := phaseFor(c, "", redisphase.Options{})
	t0 = time.Now()
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	for name, n := range map[string]int64{redismigrations.HashTags: want.legacy, redismigrations.Timestamps: want.withStamps, redismigrations.Entity: want.entities} {
		l := line(t, plan, name)
		require.Equal(t, report.State("pending"), l.State, name)
		require.Equal(t, "counted", l.Estimate.Method, name)
		require.Equal(t, n, l.Estimate.Value, "plan of %s", name)
	}
	t.Logf("plan in %s", time.Since(t0))

	t0 = time.Now()
	lines, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	t.Logf("apply in %s", time.Since(t0))
	for _, name := range []string{redismigrations.HashTags, redismigrations.Timestamps, redismigrations.Entity} {
		l := line(t, lines, name)
		require.Equal(t, report.State("applied"), l.State, name)
		require.Zero(t, l.Counts.Failed, name)
		require.Len(t, l.Progress.Nodes, nodes)
		requireApplied(t, ctx, c, "", name)
	}
	c001 := line(t, lines, redismigrations.HashTags).Counts
	require.Equal(t, want.legacy, c001.Changed, "every legacy key copied once")
	require.GreaterOrEqual(t, c001.Scanned, want.legacy, "SCAN may return a key twice")
	// Each twin counted once for 002/003: when it was written, not again
	// when the scan reached it (it is skipped, not read).
	c002, c003 := line(t, lines, redismigrations.Timestamps).Counts, line(t, lines, redismigrations.Entity).Counts
	require.Equal(t, want.entities, c002.Scanned)
	require.Equal(t, want.withStamps, c002.Changed)
	require.Equal(t, want.entities, c003.Scanned)
	require.Equal(t, want.entities, c003.Changed)

	t0 = time.Now()
	require.Equal(t, before, dumpLegacy(t, ctx, c), "v0 keys must stay byte-identical, TTLs included")
	t.Logf("dump in %s", time.Since(t0))

	t0 = time.Now()
	diffs, checked, err := seedtest.Check(ctx, c, opts, seedtest.Expect)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "after apply")
	require.Equal(t, st.Keys+int(want.legacy), checked)
	t.Logf("seedtest.Check in %s", time.Since(t0))

	t0 = time.Now()
	v, err := p.Verify(ctx, runFor("verify"))
	require.NoError(t, err)
	t.Logf("verify in %s", time.Since(t0))
	for name, n := range map[string]int64{redismigrations.HashTags: want.legacy, redismigrations.Timestamps: want.entities, redismigrations.Entity: want.entities} {
		l := line(t, v, name)
		require.Equal(t, report.State("verified"), l.State, name)
		require.Zero(t, l.IssuesTotal, name)
		require.Equal(t, n, l.Counts.Checked, "verify checks every key of %s", name)
		require.Equal(t, n, l.Counts.Passed, name)
		require.Zero(t, l.Counts.Failed, name)
	}

	t0 = time.Now()
	cl, err := p.Cleanup(ctx, runFor("cleanup"))
	require.NoError(t, err)
	t.Logf("cleanup in %s", time.Since(t0))
	cc := line(t, cl, redismigrations.HashTags).Counts
	require.Equal(t, want.legacy, cc.Deleted)
	require.Equal(t, want.legacy, cc.Passed)
	require.Zero(t, cc.Failed)
	t0 = time.Now()
	diffs, _, err = seedtest.Check(ctx, c, opts, seedtest.ExpectAfterCleanup)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "after cleanup")
	t.Logf("seedtest.Check after cleanup in %s", time.Since(t0))
	state, err := c.HGetAll(ctx, "outpost:migration:"+redismigrations.HashTags).Result()
	require.NoError(t, err)
	require.Equal(t, "applied", state["status"], "cleanup leaves the state Outpost reads as it was")
	require.NotEmpty(t, state["cleaned_at"])
}

func TestBigKeyspaceStandalone(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	migrateBig(t, srv.Client(t), 1)
}

func TestBigKeyspaceCluster(t *testing.T) {
	t.Parallel()
	cl := servertest.RedisCluster(t)
	migrateBig(t, cl.Client(t), 3)
}
