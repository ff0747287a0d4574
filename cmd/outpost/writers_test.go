package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestRedisWarnsAboutOtherClients: plan and apply list the clients other
// than the tool connected to the master (address, name, last command,
// idle), say which wrote in the last seconds, and quote the guide's rule;
// the tool's own connections are not listed.
func TestRedisWarnsAboutOtherClients(t *testing.T) {
	ctx := context.Background()
	binary(t) // built before the clock of "recent" starts
	srv := servertest.Redis(t)
	rmSeedRedis(t, srv, 30)
	old := srv.Client(t)
	require.NoError(t, old.Do(ctx, "CLIENT", "SETNAME", "old-outpost").Err())
	require.NoError(t, old.HSet(ctx, "tenant:t-late", "id", "t-late").Err())
	envs := redisEnv(srv)
	// Every connection now open is the test's.
	ours := map[string]bool{}
	list, err := old.ClientList(ctx).Result()
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		for _, f := range strings.Fields(l) {
			if a, ok := strings.CutPrefix(f, "addr="); ok {
				ours[a] = true
			}
		}
	}
	for _, args := range [][]string{{"migrate", "plan", "--redis-only"}, {"migrate", "apply", "--yes", "--redis-only"}} {
		// The binary, not in-process: the test's own connections must
		// show as another process's.
		require.NoError(t, old.HSet(ctx, "tenant:t-late", "id", "t-late").Err())
		p := startProc(t, envs, append(args, "-o", "json")...)
		<-p.done
		p.mu.Lock()
		r := &result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String()}
		p.mu.Unlock()
		checkReport(t, r)
		require.Equal(t, 0, r.code, r.stdout)
		others, ok := rmLine(t, r, "redis/001_hash_tags")["others"].(map[string]any)
		require.True(t, ok, "%s: no others in %s", args[1], r.stdout)
		require.Contains(t, others["warning"], "completes before `outpost serve` starts", args[1])
		var c map[string]any
		for _, x := range others["clients"].([]any) {
			cl := x.(map[string]any)
			require.True(t, ours[cl["addr"].(string)], "the tool's own connection %v is listed", cl)
			if cl["name"] == "old-outpost" {
				c = cl
			}
		}
		require.NotNil(t, c, "the old server's connection is listed: %v", others["clients"])
		require.Equal(t, "old-outpost", c["name"])
		require.Equal(t, "hset", c["last_command"])
		require.Equal(t, true, c["recent_write"])
		require.NotEmpty(t, c["addr"])
		if args[1] == "apply" {
			require.Contains(t, r.stderr, "old-outpost", "warned on stderr too")
		}
	}
}
