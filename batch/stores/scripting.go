package stores

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/report"
)

// noSuchScript is a SHA1 no script has: EVALSHA answers NOSCRIPT for it
// where the command is there for us, without running anything.
const noSuchScript = "0000000000000000000000000000000000000000"

// scriptAbility finds out, before anything is written, whether the server
// runs scripts by hash for this user: EVALSHA renamed away or denied by an
// ACL makes every later script on client go by EVAL (luascript.UseEval;
// OpenRedis says so). Both refused is 78 (renamed) or 77 (ACL) naming both.
// Any other answer lets the run go on: the scripts meet it themselves.
func scriptAbility(ctx context.Context, c *redis.Client, client redis.UniversalClient, addr string) error {
	shaErr := c.Do(ctx, "evalsha", noSuchScript, 0).Err()
	if !luascript.Missing(shaErr, "evalsha") {
		return nil
	}
	evalErr := c.Do(ctx, "eval", "return 1", 0).Err()
	if luascript.Missing(evalErr, "eval") {
		e := luascript.Both(shaErr, evalErr).(*report.Error)
		e.Message = "redis at " + addr + ": " + e.Message
		return e
	}
	luascript.UseEval(client)
	return nil
}

// Warnings are what a run on client should say in its report about how it
// talks to the server (today: scripts sent with EVAL).
func Warnings(client redis.UniversalClient) []string {
	if luascript.UsesEval(client) {
		return []string{luascript.Warning}
	}
	return nil
}
