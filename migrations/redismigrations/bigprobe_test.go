package redismigrations

// Issue #22, the size probe: a record of a few huge values passes the
// field count and was read whole once before it was found too big; the
// probe (sizesScript) now asks its bytes too, so it is never read whole.

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

// TestDigesterIsDigest: the digest of a record handed over piece by piece
// is written.digest of the whole record, whatever the pieces' order.
func TestDigesterIsDigest(t *testing.T) {
	s := &Set{created: newWritten()}
	m := map[string]string{"": "", "a": "1", "b": strings.Repeat("x", 1000), "c\x00": "\xff"}
	for i := range 50 {
		m["f"+strconv.Itoa(i)] = strconv.Itoa(i * i)
	}
	d := s.created.digester()
	for f, v := range m {
		d.add(f, v)
	}
	require.Equal(t, s.created.digest(m), d.value())
	m["a"] = "2"
	require.NotEqual(t, s.created.digest(m), d.value())
	require.Zero(t, (&Set{}).created.digester().value(), "no set of twins: unknown")
}

// TestSplitBySize: over bigFields fields or bigAt bytes a record is big;
// groups stop at groupFields fields and at the bytes bound.
func TestSplitBySize(t *testing.T) {
	l := serverLimits{bulk: defaultBulk, outBuf: 8 << 20}
	groups, big := splitBySize([]recSize{{3, 200}, {bigFields + 1, 0}, {1, 3 << 20}, {5, 900}, {1, 1 << 20}, {1, 1 << 20}}, l)
	require.Equal(t, []int{1, 2}, big, "the wide one and the one of a few huge values")
	require.Equal(t, [][]int{{0, 3, 4}, {5}}, groups, "a group holds at most a quarter of the output limit: 2 MiB")
	sizes := make([]recSize, groupFields/bigFields+1)
	for i := range sizes {
		sizes[i] = recSize{bigFields, 0}
	}
	groups, big = splitBySize(sizes, l)
	require.Empty(t, big)
	require.Len(t, groups, 2)
	require.Len(t, groups[0], groupFields/bigFields, "at most groupFields fields")
}

// TestProbeFindsFewHugeValues: against a real server, the probe sizes a
// record of one 12 MiB value as big (and one of 3000 small fields), so
// that readSized does not read it; under `client-output-buffer-limit
// normal 8mb` the small ones are read without the server closing the
// connection. The Go heap allocated by readSized, probe on and off,
// side by side: on, well under the value; off, the value read whole.
func TestProbeFindsFewHugeValues(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	var keys []string
	for i := range 40 {
		k := "tenant:t" + strconv.Itoa(i)
		require.NoError(t, c.HSet(ctx, k, "id", "t"+strconv.Itoa(i), "created_at", "2024-05-06T07:08:09Z").Err())
		keys = append(keys, k)
	}
	huge := strings.Repeat("0123456789abcdef", 12<<20/16)
	require.NoError(t, c.HSet(ctx, "tenant:few", "id", "few", "metadata", huge).Err())
	wide := []any{"id", "wide"}
	for i := range 3000 {
		wide = append(wide, fmt.Sprintf("f%04d", i), "v")
	}
	require.NoError(t, c.HSet(ctx, "tenant:wide", wide...).Err())
	keys = append(keys[:20:20], append([]string{"tenant:few", "tenant:wide"}, keys[20:]...)...)

	s := New(c, "")
	groups, big, err := s.splitKeys(ctx, keys)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"tenant:few", "tenant:wide"}, big)
	require.Len(t, groups, 1)
	require.Len(t, groups[0], 40)

	allocated := func(probe bool) (int64, []bool) {
		probeBytes = probe
		defer func() { probeBytes = true }()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		recs, isBig, err := New(c, "").readSized(ctx, keys)
		runtime.ReadMemStats(&after)
		require.NoError(t, err)
		require.Len(t, recs, len(keys))
		return int64(after.TotalAlloc - before.TotalAlloc), isBig
	}
	on, isBig := allocated(true)
	off, _ := allocated(false)
	t.Logf("Go heap allocated by readSized over 42 records, one of 12 MiB: probe with bytes %d KiB, HLEN only %d KiB", on>>10, off>>10)
	require.Less(t, on, int64(2<<20), "the 12 MiB value is not read")
	require.Greater(t, off, int64(12<<20), "without the bytes it is read whole")
	require.True(t, isBig[20] && isBig[21])

	// With the output buffer limited, the small ones are read and the
	// connection is not closed (it would fail the group: all big).
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", "normal 8mb 0 0").Err())
	recs, isBig, err := New(c, "").readSized(ctx, keys)
	require.NoError(t, err)
	for i, k := range keys {
		require.Equal(t, k == "tenant:few" || k == "tenant:wide", isBig[i], k)
		if !isBig[i] {
			require.NotEmpty(t, recs[i].fields, k)
		}
	}
}

// TestProbeBytesCluster: on a 3-master cluster the probe is one script
// per master over keys of many slots, and asks the bytes too: a record of
// one 3 MiB value is big, the others are not, and no master refused it.
func TestProbeBytesCluster(t *testing.T) {
	ctx := context.Background()
	c := servertest.RedisCluster(t).Client(t)
	var keys []string
	for i := range 60 {
		k := "tenant:t" + strconv.Itoa(i)
		require.NoError(t, c.HSet(ctx, k, "id", "t"+strconv.Itoa(i), "created_at", "2024-05-06T07:08:09Z").Err())
		keys = append(keys, k)
	}
	require.NoError(t, c.HSet(ctx, "tenant:few", "id", "few", "metadata", strings.Repeat("x", 3<<20)).Err())
	keys = append(keys, "tenant:few", "tenant:gone")
	s := New(c, "")
	sizes, err := s.recordSizes(ctx, keys)
	require.NoError(t, err)
	require.False(t, s.noCrossSlot.Load())
	for i, k := range keys {
		switch k {
		case "tenant:few":
			require.Greater(t, sizes[i].bytes, int64(3<<20), k)
		case "tenant:gone":
			require.Equal(t, recSize{}, sizes[i])
		default:
			require.EqualValues(t, 2, sizes[i].fields, k)
			require.Positive(t, sizes[i].bytes, k)
			require.Less(t, sizes[i].bytes, int64(1<<10), k)
		}
	}
	_, big, err := s.splitKeys(ctx, keys)
	require.NoError(t, err)
	require.Equal(t, []string{"tenant:few"}, big)
}

// BenchmarkProbeCost measures, in one run, what asking the bytes costs
// the server against the main apply pass: on one seeded server, the
// probe over every legacy key in chunks of 500, HLEN only and with bytes
// (HLEN and, for records of at most bigFields fields, MEMORY USAGE SAMPLES
// 0), alternated three times (INFO commandstats: server time of the
// scripts); then one apply of the same keyspace (server time of every
// command). It reports the probe's cost with bytes over HLEN only, and
// the extra time the bytes add over the apply's. Run with
// -run XXX -bench ProbeCost -benchtime 1x.
func BenchmarkProbeCost(b *testing.B) {
	ctx := context.Background()
	o := seed.DefaultOptions()
	o.Tenants, o.DestinationsPerTenant, o.Seed, o.UnrelatedKeys = 6000, 3, 5, 0
	serverUsec := func(c *goredis.Client, cmd string) float64 {
		var usec float64
		for _, line := range strings.Split(c.Info(ctx, "commandstats").Val(), "\n") {
			if !strings.HasPrefix(line, "cmdstat_"+cmd) {
				continue
			}
			if i := strings.Index(line, "usec="); i >= 0 {
				v, _ := strconv.ParseFloat(strings.SplitN(line[i+5:], ",", 2)[0], 64)
				usec += v
			}
		}
		return usec
	}
	for range b.N {
		c := servertest.Redis(b).Client(b)
		_, err := seed.Write(ctx, c, o)
		require.NoError(b, err)
		keys, err := c.Keys(ctx, "tenant:*").Result()
		require.NoError(b, err)
		s := New(c, "")
		probe := func(bytes bool) float64 {
			probeBytes = bytes
			defer func() { probeBytes = true }()
			require.NoError(b, c.ConfigResetStat(ctx).Err())
			for lo := 0; lo < len(keys); lo += 500 {
				_, err := s.recordSizes(ctx, keys[lo:min(lo+500, len(keys))])
				require.NoError(b, err)
			}
			return serverUsec(c, "evalsha")
		}
		var off, on float64
		for range 3 {
			off += probe(false)
			on += probe(true)
		}
		require.NoError(b, c.ConfigResetStat(ctx).Err())
		p := redisphase.New(c, "", ".outpost:migration_lock", New(c, ""), redisphase.Options{}, nil)
		_, err = p.Apply(ctx, &batch.Run{ID: "bench", Command: "apply", Events: progress.Nop})
		require.NoError(b, err)
		apply := serverUsec(c, "")
		b.ReportMetric(on/off, "probe-bytes/hlen")
		b.ReportMetric((on-off)/3/apply, "extra/apply")
		b.Logf("%d legacy keys: probe server time with bytes / HLEN only %.2f; the bytes add %.1f%% of the apply's server time (%.0f µs of %.0f µs, per key %.2f µs)",
			len(keys), on/off, 100*(on-off)/3/apply, (on-off)/3, apply, (on-off)/3/float64(len(keys)))
	}
}
