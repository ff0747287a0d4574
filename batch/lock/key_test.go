package lock

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// TestSlots checks on the real cluster that SlotKey's names share the lock's
// hash slot, with and without a deployment prefix, and that Slot agrees with
// CLUSTER KEYSLOT.
func TestSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := servertest.RedisCluster(t).Client(t)
	slot := func(k string) int {
		n, err := c.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		return int(n)
	}
	for _, prefix := range []string{"", "dep1:", "prod-eu-west:", "a{b}c:", "x{y:"} {
		lk := Key(prefix)
		require.Equal(t, prefix+".outpost:migration_lock", lk)
		require.NoError(t, checkKey(lk))
		for _, suffix := range []string{"fence", "checkpoint:redis/001_hash_tags", "run"} {
			sk := SlotKey(lk, suffix)
			require.Equal(t, slot(lk), slot(sk), "%q vs %q", lk, sk)
			require.Equal(t, slot(sk), Slot(sk))
		}
	}
	require.Equal(t, "{.outpost:migration_lock}:fence", SlotKey(Key(""), "fence"))
	require.Equal(t, "{dep1:.outpost:migration_lock}:fence", SlotKey(Key("dep1:"), "fence"))

	// A holder without a run id would read as foreign: refused.
	_, err := Acquire(ctx, c, Options{Key: Key("")})
	requireCode(t, report.CodeInternal, err)

	// A prefix whose braces defeat hash tags is refused up front.
	_, err = Acquire(ctx, c, Options{Key: Key("a}b:"), Holder: holder("r-x")})
	requireCode(t, report.CodeConfig, err)

	// Slot (used to refuse cross-slot fenced writes) is Redis's own.
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab{}:xyz.-_0123456789"
	for range 300 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		require.Equal(t, slot(string(b)), Slot(string(b)), "key %q", b)
	}
}
