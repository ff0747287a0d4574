package redismigrations_test

import (
	"context"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
)

// TestListpackPayloadIsRedis: a hash restored from a listpack payload the
// tool builds is the very hash the server builds with HSET of the same
// fields in the same order: DUMP of both is byte for byte the same (so
// every entry has the server's own encoding and length), across every
// integer encoding and its bounds, strings that look like integers but are
// not canonical, binary values, and entry lengths at each boundary of the
// backwards length (127/128, 16382-16384, 2097150-2097152).
func TestListpackPayloadIsRedis(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	// Long strings stay in a listpack only under a higher limit.
	require.NoError(t, c.ConfigSet(ctx, "hash-max-listpack-value", "4000000").Err())
	var values []string
	for _, v := range []int64{0, 1, 127, 128, -1, 4095, 4096, -4096, -4097, 32767, 32768, -32768, -32769,
		8388607, 8388608, -8388608, -8388609, 2147483647, 2147483648, -2147483648, -2147483649,
		9223372036854775807, -9223372036854775808, 1700000000000} {
		values = append(values, strconv.FormatInt(v, 10))
	}
	values = append(values, "9223372036854775808", "-9223372036854775809", "007", "-0", "+1", " 1", "1 ", "1.5", "",
		"0x10", "\x00\xff\r\n", "-", "12345678901234567890123", "created_at")
	// Entry lengths (header + data) at the boundaries of the backwards
	// length: 6-bit strings have a 1-byte header, 12-bit 2, 32-bit 5.
	for _, n := range []int{63, 64, 125, 126, 127, 4095, 4096, 16377, 16378, 16379, 2097145, 2097146, 2097147} {
		values = append(values, strings.Repeat("x", n))
	}
	check := func(name string, kv []string) {
		t.Helper()
		a, b := "lp:hset:"+name, "lp:restore:"+name
		args := make([]any, len(kv))
		for i, s := range kv {
			args[i] = s
		}
		require.NoError(t, c.HSet(ctx, a, args...).Err())
		require.Equal(t, "listpack", c.ObjectEncoding(ctx, a).Val(), name)
		require.NoError(t, c.RestoreReplace(ctx, b, 0, string(redismigrations.AppendListpackPayload(nil, kv))).Err(), name)
		require.Equal(t, c.Dump(ctx, a).Val(), c.Dump(ctx, b).Val(), "%s: DUMP of HSET and of the restored payload", name)
		require.Equal(t, c.HGetAll(ctx, a).Val(), c.HGetAll(ctx, b).Val(), name)
		require.Equal(t, "listpack", c.ObjectEncoding(ctx, b).Val(), name)
	}
	for i, v := range values {
		check("value"+strconv.Itoa(i), []string{"f", v})
		if v != "" {
			check("field"+strconv.Itoa(i), []string{v, "x"})
		}
	}
	check("all", func() []string {
		var kv []string
		for i, v := range values[:40] {
			kv = append(kv, "f"+strconv.Itoa(i), v)
		}
		return kv
	}())
	// Random records shaped like Outpost's: ids, timestamps, JSON.
	r := rand.New(rand.NewSource(1))
	for n := 0; n < 300; n++ {
		var kv []string
		for i := 0; i < 1+r.Intn(20); i++ {
			kv = append(kv, "f"+strconv.Itoa(i), values[r.Intn(len(values)-13)])
		}
		check("random"+strconv.Itoa(n), kv)
	}
}
