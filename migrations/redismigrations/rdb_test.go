package redismigrations_test

import (
	"context"
	"hash/crc64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"

	"github.com/outpost-migrate/outpost/report"
)

// The check value of CRC-64/Jones as Redis computes it (crc64.c's test),
// and slicing-by-8 against hash/crc64's byte-at-a-time on every length
// up to 300 (each tail length, unaligned starts).
func TestRedisCRC64(t *testing.T) {
	require.Equal(t, uint64(0xe9c6d914c4b8d9ca), redismigrations.RedisCRC64([]byte("123456789")))
	table := crc64.MakeTable(0x95AC9329AC4BC9B5)
	buf := make([]byte, 301)
	for i := range buf {
		buf[i] = byte(i*131 + 7)
	}
	for n := 0; n <= 300; n++ {
		p := buf[1 : 1+n]
		require.Equal(t, ^crc64.Update(^uint64(0), table, p), redismigrations.RedisCRC64(p), "length %d", n)
	}
}

// TestHashPayloadRestores: a real server takes the payloads, whatever the
// sizes (each RDB length form, listpack and hashtable encodings), binary
// values and TTLs, and holds exactly the fields given; a payload is refused
// when corrupted (so the CRC is what the server checks).
func TestHashPayloadRestores(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	many := map[string]string{}
	for i := range 300 {
		many["f"+strings.Repeat("x", i%70)+string(rune('a'+i%26))+string(rune('0'+i/26))] = strings.Repeat("v", i)
	}
	cases := map[string]map[string]string{
		"small":  {"id": "t1", "created_at": "1735787045000"},
		"binary": {"credentials": "\x00\xff\x10nonce\x00\x01", "": "empty name", "empty value": ""},
		"14-bit": {"config": strings.Repeat("c", 70), "metadata": strings.Repeat("m", 16383)},
		"32-bit": {"big": strings.Repeat("b", 1<<16+3)},
		"many":   many,
	}
	for name, fields := range cases {
		key := "tenant:{" + name + "}:tenant"
		payload := redismigrations.AppendHashPayload([]byte("junk before"), fields)[len("junk before"):]
		require.NoError(t, c.Restore(ctx, key, 0, string(payload)).Err(), name)
		got, err := c.HGetAll(ctx, key).Result()
		require.NoError(t, err)
		require.Equal(t, fields, got, name)
		require.EqualValues(t, -1, c.PTTL(ctx, key).Val(), name)

		ttlKey := key + ":ttl"
		require.NoError(t, c.Restore(ctx, ttlKey, 90*time.Second, string(payload)).Err())
		require.InDelta(t, float64(90*time.Second), float64(c.PTTL(ctx, ttlKey).Val()), float64(2*time.Second))

		require.ErrorContains(t, c.Restore(ctx, key, 0, string(payload)).Err(), "BUSYKEY", "never over an existing key")
		bad := []byte(string(payload))
		bad[1] ^= 1
		require.ErrorContains(t, c.Restore(ctx, key+":bad", 0, string(bad)).Err(), "checksum")
	}
}

// TestCopyWithoutRestore: an ACL user that may not RESTORE (it is in
// @dangerous, often denied) still migrates everything exactly, through
// the copy script.
func TestCopyWithoutRestore(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithACLUser("migrator", "pw", "~*", "&*", "+@all", "-restore"))
	c := srv.Client(t)
	require.ErrorContains(t, c.Restore(ctx, "x", 0, "payload").Err(), "NOPERM")
	o := smallSeed(300)
	st, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	want := countsOf(t, st)
	l := line(t, lines, redismigrations.HashTags)
	require.Equal(t, report.State("applied"), l.State)
	require.Equal(t, want.legacy, l.Counts.Changed)
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "apply through the script")
	stats, err := c.Info(ctx, "commandstats").Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, calls(t, stats, "evalsha"), want.legacy, "every twin written by the script")
}

// calls reads a command's calls from INFO commandstats.
func calls(t *testing.T, info, cmd string) int64 {
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_"+cmd+":calls="); ok {
			n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

// TestRestoreProbe: miniredis takes RESTORE but stores the payload as a
// string; the probe sees it and the copy goes through the script, so the
// twins are hashes. The probe leaves no key behind.
func TestRestoreProbe(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	defer c.Close()
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Equal(t, report.State("applied"), line(t, lines, redismigrations.Entity).State)
	got, err := c.HGetAll(ctx, "tenant:{t1}:tenant").Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "t1", "created_at": "1735787045000", "entity": "tenant"}, got)
	keys, err := c.Keys(ctx, "*probe*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)

	// On a real server the probe passes and leaves nothing either.
	real := servertest.Redis(t).Client(t)
	require.NoError(t, real.HSet(ctx, "tenant:t1", "id", "t1").Err())
	_, err = phaseFor(real, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Empty(t, real.Keys(ctx, "*probe*").Val())
	stats := real.Info(ctx, "commandstats").Val()
	require.EqualValues(t, 3, calls(t, stats, "restore"), "the two probes (type 4, listpack) and the twin")
	require.EqualValues(t, 2, calls(t, stats, "exec"), "each probe is one transaction: no key outlives it, even after kill -9")
	require.Equal(t, "listpack", real.ObjectEncoding(ctx, "tenant:{t1}:tenant").Val())
}
