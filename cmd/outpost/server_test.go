package main

// Issue #22, the server's role and abilities checked up front: a replica is
// 78 naming its master; a server without a command the tool needs
// (rename-command) is 78 naming the command. Nothing is read or written.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestServerReplicaRefused: plan, status and apply against a replica exit
// 78 naming the master, whether the replica is in sync or not; the master
// is untouched.
func TestServerReplicaRefused(t *testing.T) {
	t.Parallel()
	master := servertest.Redis(t)
	replica := servertest.Redis(t)
	mc, rc := master.Client(t), replica.Client(t)
	ctx := context.Background()
	seedTenants(t, mc, 50)
	before := snapshot(t, mc)
	require.NoError(t, rc.SlaveOf(ctx, master.Host, itoa(master.Port)).Err())
	require.Eventually(t, func() bool { return rc.DBSize(ctx).Val() == mc.DBSize(ctx).Val() }, 10*time.Second, 50*time.Millisecond)

	for _, args := range [][]string{
		{"migrate", "plan", "--redis-only"},
		{"migrate", "status", "--redis-only"},
		{"migrate", "apply", "--yes", "--redis-only"},
	} {
		r := run(t, redisEnv(replica), args...)
		require.Equal(t, 78, r.code, r.stdout)
		require.Equal(t, "CONFIG_INVALID", errorCode(r))
		e := r.rep["error"].(map[string]any)
		require.Equal(t, false, e["retryable"])
		require.Contains(t, e["message"], "read-only replica of "+master.Addr)
		require.Contains(t, e["message"], "point REDIS_HOST and REDIS_PORT at the master")
		require.Equal(t, master.Addr, e["details"].(map[string]any)["master"])
		require.Equal(t, "redis.host", e["details"].(map[string]any)["setting"])
	}
	requireSame(t, before, snapshot(t, mc), "the master must be untouched")

	// A replica whose master is gone (not in sync) is refused the same way.
	master.Stop(t)
	r := run(t, redisEnv(replica), "migrate", "plan", "--redis-only")
	require.Equal(t, 78, r.code, r.stdout)
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "not in sync")
}

// TestServerMissingCommands: EVAL, INFO or SCAN renamed away (rename-command)
// is 78 naming the command and why it is needed, before anything is
// written.
func TestServerMissingCommands(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"EVAL", "INFO", "SCAN"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			srv := servertest.Redis(t, servertest.WithConfig("rename-command", cmd, "renamed-"+cmd))
			c := srv.Client(t)
			seedTenants(t, c, 50)
			ctx := context.Background()
			size := c.DBSize(ctx).Val()
			var before map[string]string
			if cmd != "SCAN" {
				before = snapshot(t, c)
			}
			r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 78, r.code, r.stdout)
			require.Equal(t, "CONFIG_INVALID", errorCode(r))
			e := r.rep["error"].(map[string]any)
			require.Equal(t, false, e["retryable"])
			require.Contains(t, e["message"], "has no "+cmd+" command (renamed or disabled")
			require.Equal(t, cmd, e["details"].(map[string]any)["command"])
			require.Equal(t, size, c.DBSize(ctx).Val())
			if cmd != "SCAN" {
				requireSame(t, before, snapshot(t, c), "nothing may be written")
			}
		})
	}
}
