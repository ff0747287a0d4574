package scan_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
)

// A write script in the style of the migrations: it writes KEYS[1] when
// ARGV[1] is "write" and returns 1, else writes nothing and returns 0.
var maybeWrite = redis.NewScript(`
if ARGV[1] == 'write' then redis.call('HSET', KEYS[1], 'f', 'v') return 1 end
return 0
`)

// ownScript runs maybeWrite on key through the watched writer, declared
// to the watch as the run's scripts are.
func ownScript(t *testing.T, o *scan.Others, key string, write bool) {
	ctx := context.Background()
	arg := "skip"
	if write {
		arg = "write"
	}
	var cmd *redis.Cmd
	o.ExpectScript([]string{key})
	o.Pipelined(ctx, []string{key}, func(pipe redis.Pipeliner, _ int) {
		cmd = maybeWrite.Eval(ctx, pipe, []string{key}, arg)
	})
	require.NoError(t, cmd.Err())
	o.SettleScript(ctx, []string{key}, []bool{cmd.Val().(int64) > 0})
}

// TestOwnScriptWritesAreNotOthers: the run's own script writes are never
// reported as another client's, and every write by another client is,
// whether made by a plain command or a script, before or after the run's
// own, or on a key the run's script then left alone.
func TestOwnScriptWritesAreNotOthers(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "standalone", true: "cluster"}[cluster], func(t *testing.T) {
			ctx := context.Background()
			var c redis.UniversalClient
			if cluster {
				c = servertest.RedisCluster(t).Client(t)
			} else {
				c = servertest.Redis(t).Client(t)
			}
			o, err := scan.WatchOthers(ctx, c, "tenant:", 0)
			require.NoError(t, err)
			defer o.Close()
			require.Empty(t, o.Broken())
			keys, err := o.Sync(ctx)
			require.NoError(t, err)
			require.Empty(t, keys, "the probe is not a write by others")

			ownScript(t, o, "tenant:{a}:own", true)
			require.NoError(t, maybeWrite.Eval(ctx, c, []string{"tenant:{b}:script-by-other"}, "write").Err())
			require.NoError(t, c.HSet(ctx, "tenant:{c}:other-then-own-noop", "f", "x").Err())
			ownScript(t, o, "tenant:{c}:other-then-own-noop", false)
			ownScript(t, o, "tenant:{d}:own-then-other", true)
			require.NoError(t, c.HSet(ctx, "tenant:{d}:own-then-other", "f", "y").Err())
			require.NoError(t, c.HSet(ctx, "tenant:{e}:other-then-own", "f", "z").Err())
			ownScript(t, o, "tenant:{e}:other-then-own", true)
			ownScript(t, o, "tenant:{f}:own-noop", false)

			keys, err = o.Sync(ctx)
			require.NoError(t, err)
			require.Empty(t, o.Broken())
			require.Equal(t, []string{"tenant:{b}:script-by-other", "tenant:{c}:other-then-own-noop", "tenant:{d}:own-then-other", "tenant:{e}:other-then-own"}, keys)
			require.EqualValues(t, 4, o.Total())

			// After a Sync nothing is carried over: a later write by
			// another client is named again.
			require.NoError(t, c.HSet(ctx, "tenant:{a}:own", "f", "w").Err())
			keys, err = o.Sync(ctx)
			require.NoError(t, err)
			require.Equal(t, []string{"tenant:{a}:own"}, keys)
		})
	}
}
