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
	"time"

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
	d := s.newDigester()
	for f, v := range m {
		d.add(f, v)
	}
	require.Equal(t, s.created.digest(m), d.value())
	m["a"] = "2"
	require.NotEqual(t, s.created.digest(m), d.value())
	require.Zero(t, (&Set{}).newDigester().value(), "no set of twins: unknown")
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

// BenchmarkProbeCost compares, side by side in one run, what the main
// apply pass costs the server with the probe asking bytes (HLEN and, for
// records of at most bigFields fields, MEMORY USAGE SAMPLES 0) and with
// HLEN only: two servers seeded alike, one apply each, the server time
// of every command (INFO commandstats) and the wall time. Run with
// -run XXX -bench ProbeCost -benchtime 1x.
func BenchmarkProbeCost(b *testing.B) {
	ctx := context.Background()
	o := seed.DefaultOptions()
	o.Tenants, o.DestinationsPerTenant, o.Seed, o.UnrelatedKeys = 6000, 3, 5, 0
	type result struct {
		usec float64
		wall time.Duration
	}
	run := func(probe bool) result {
		c := servertest.Redis(b).Client(b)
		_, err := seed.Write(ctx, c, o)
		require.NoError(b, err)
		probeBytes = probe
		defer func() { probeBytes = true }()
		require.NoError(b, c.ConfigResetStat(ctx).Err())
		p := redisphase.New(c, "", ".outpost:migration_lock", New(c, ""), redisphase.Options{}, nil)
		start := time.Now()
		_, err = p.Apply(ctx, &batch.Run{ID: "bench", Command: "apply", Events: progress.Nop})
		require.NoError(b, err)
		wall := time.Since(start)
		var usec float64
		for _, line := range strings.Split(c.Info(ctx, "commandstats").Val(), "\n") {
			if i := strings.Index(line, "usec="); i >= 0 {
				v, _ := strconv.ParseFloat(strings.SplitN(line[i+5:], ",", 2)[0], 64)
				usec += v
			}
		}
		return result{usec: usec, wall: wall}
	}
	for range b.N {
		off := run(false)
		on := run(true)
		b.ReportMetric(on.usec/off.usec, "server-time-ratio")
		b.ReportMetric(float64(on.wall)/float64(off.wall), "wall-ratio")
		b.Logf("apply of %d tenants: server time with bytes/HLEN only %.3f; wall %.3f", o.Tenants, on.usec/off.usec, float64(on.wall)/float64(off.wall))
	}
}
