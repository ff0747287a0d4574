package main

// Issue #22, missing commands: a server without EVALSHA for this user
// (renamed away, or denied by an ACL) runs every script with EVAL, says
// so on stderr and in the report, and migrates exactly; without EVAL
// either it is refused naming both.

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/servertest"
)

// TestServerEvalFallback: EVALSHA renamed away (rename-command EVALSHA "")
// or denied by an ACL: apply completes, every record exact, the report's
// targets.redis.warnings and stderr name the fallback, the EVAL calls
// are counted by the server, and verify, a second apply and unlock work.
func TestServerEvalFallback(t *testing.T) {
	t.Parallel()
	const pw = "fallback-pw"
	cases := map[string]struct {
		opts []servertest.RedisOption
		env  func(s *servertest.RedisServer) map[string]string
	}{
		"renamed": {opts: []servertest.RedisOption{servertest.WithConfig("rename-command", "EVALSHA", "")}, env: redisEnv},
		"acl": {opts: []servertest.RedisOption{servertest.WithACLUser("noevalsha", pw, "~*", "&*", "+@all", "-evalsha")},
			env: func(s *servertest.RedisServer) map[string]string {
				e := redisEnv(s)
				e["REDIS_USERNAME"], e["REDIS_PASSWORD"] = "noevalsha", pw
				return e
			}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := servertest.Redis(t, tc.opts...)
			c := srv.Client(t)
			o := seedTenants(t, c, 60)
			r := run(t, tc.env(srv), "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
			requireMigrated(t, c, o)
			red := r.rep["targets"].(map[string]any)["redis"].(map[string]any)
			require.Equal(t, []any{luascript.Warning}, red["warnings"])
			require.Contains(t, r.stderr, "scripts are sent whole with EVAL")
			stats := c.Info(context.Background(), "commandstats").Val()
			require.Contains(t, stats, "cmdstat_eval:", "the scripts ran with EVAL")
			require.NotRegexp(t, `cmdstat_evalsha:calls=[1-9]`, stats, "no EVALSHA ran")

			v := run(t, tc.env(srv), "migrate", "verify", "--redis-only")
			require.Equal(t, 0, v.code, v.stdout)
			again := run(t, tc.env(srv), "migrate", "apply", "--yes", "--redis-only")
			require.Equal(t, 0, again.code, again.stdout)
			require.Equal(t, "up_to_date", again.rep["outcome"])
			u := run(t, tc.env(srv), "migrate", "unlock", "--yes")
			require.Equal(t, 0, u.code, u.stdout)
		})
	}
}

// TestServerNoScripting: neither EVALSHA nor EVAL (both renamed away) is
// 78 naming both, nothing written; an ACL denying both is 77 naming both.
func TestServerNoScripting(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t, servertest.WithConfig("rename-command", "EVALSHA", ""), servertest.WithConfig("rename-command", "EVAL", ""))
	c := srv.Client(t)
	seedTenants(t, c, 20)
	before := snapshot(t, c)
	r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 78, r.code, r.stdout)
	require.Equal(t, "CONFIG_INVALID", errorCode(r))
	e := r.rep["error"].(map[string]any)
	require.Contains(t, e["message"], "has neither EVALSHA nor EVAL")
	require.Equal(t, "EVALSHA,EVAL", e["details"].(map[string]any)["command"])
	requireSame(t, before, snapshot(t, c), "nothing may be written")

	const pw = "noscript-pw"
	acl := servertest.Redis(t, servertest.WithACLUser("noscript", pw, "~*", "&*", "+@all", "-eval", "-evalsha"))
	ac := acl.Client(t)
	seedTenants(t, ac, 20)
	before = snapshot(t, ac)
	env := redisEnv(acl)
	env["REDIS_USERNAME"], env["REDIS_PASSWORD"] = "noscript", pw
	r = run(t, env, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 77, r.code, r.stdout)
	require.Equal(t, "PERMISSION_DENIED", errorCode(r))
	msg := r.rep["error"].(map[string]any)["message"].(string)
	require.Contains(t, msg, "'evalsha'")
	require.Contains(t, msg, "'eval'")
	requireSame(t, before, snapshot(t, ac), "nothing may be written")
}
