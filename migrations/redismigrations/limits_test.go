package redismigrations

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalOutBuf(t *testing.T) {
	require.Equal(t, int64(0), normalOutBuf("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"))
	require.Equal(t, int64(8388608), normalOutBuf("normal 8388608 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"))
	require.Equal(t, int64(1048576), normalOutBuf("normal 8388608 1048576 10 replica 0 0 0"), "a soft limit closes too")
	require.Equal(t, int64(0), normalOutBuf(""))
}

func TestLimitsBounds(t *testing.T) {
	l := serverLimits{bulk: defaultBulk}
	require.Equal(t, int64(bigRecordBytes), l.bigAt())
	require.Empty(t, l.tooBig(50<<20), "no output limit, 512 MiB arguments")
	l.outBuf = 8 << 20
	require.Contains(t, l.tooBig(50<<20), "client-output-buffer-limit")
	require.Empty(t, l.tooBig(6<<20))
	l = serverLimits{bulk: 16 << 20}
	require.Contains(t, l.tooBig(50<<20), "proto-max-bulk-len")
	require.Equal(t, int64(1<<20), l.pieceAt())
	l.outBuf = 2 << 20
	require.Equal(t, int64(512<<10), l.bigAt(), "a quarter of a low output limit")
}

func TestTempName(t *testing.T) {
	n, ok := tempName("", "tenant:{t1}:destination:d", true)
	require.True(t, ok)
	require.Regexp(t, `^outpost:migrate:big:\{t1\}:[0-9a-f]{16}$`, n)
	n, ok = tempName("prod:", "prod:tenant:{a}b}:tenant", true)
	require.True(t, ok)
	require.Regexp(t, `^prod:outpost:migrate:big:\{a\}:`, n, "the twin's own tag: up to the first }")
	_, ok = tempName("", "tenant:{}x}:tenant", true)
	require.False(t, ok, "no tag: not on a cluster")
	_, ok = tempName("", "tenant:{}x}:tenant", false)
	require.True(t, ok)
}
