package stores

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// neededCommands are the commands a run cannot do without, with why; a
// server that renamed or disabled one (rename-command) is refused up front
// with its name (issue #22: it was exit 1 UNKNOWN quoting Lua source, or,
// for INFO, a run that silently trusted cursors of another server process).
// RESTORE is not here: without it the copy falls back to a script.
var neededCommands = []struct{ name, why string }{
	{"scan", "walks the keyspace"},
	{"info", "tells a restarted server (whose saved cursors mean nothing) from the same one, and reads memory and role"},
	{"eval", "runs the compare-and-set and lock scripts (EVALSHA, when missing, is replaced by it: see scriptAbility)"},
	{"hgetall", "reads records"},
	{"hmget", "reads records"},
	{"exists", "checks copies"},
	{"pttl", "copies TTLs"},
	{"del", "releases the lock and removes checkpoints"},
}

// checkServer refuses a server that cannot run a migration: a replica
// (read-only: 78 naming its master), one loading its dataset (75: a rerun
// or --wait-for rides it out), one without a command the tool needs (78
// naming it). A user the ACL denies COMMAND or INFO is let through: the
// commands themselves then fail with 77, as documented.
func checkServer(ctx context.Context, client redis.UniversalClient, c config.Redis) error {
	sc, ok := client.(*redis.Client)
	if !ok {
		cc := client.(*redis.ClusterClient)
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := missingCommands(ctx, m, m.Options().Addr); err != nil {
				return err
			}
			return scriptAbility(ctx, m, client, m.Options().Addr)
		})
	}
	if err := missingCommands(ctx, sc, c.Addr()); err != nil {
		return err
	}
	if err := scriptAbility(ctx, sc, client, c.Addr()); err != nil {
		return err
	}
	// One section per INFO: Redis before 7 takes only one.
	var info string
	for _, section := range []string{"replication", "persistence"} {
		v, err := sc.Info(ctx, section).Result()
		if err != nil {
			return nil // denied: the run reports it where INFO is needed
		}
		info += v
	}
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	if f["role"] == "slave" {
		master := f["master_host"] + ":" + f["master_port"]
		state := "in sync"
		if f["master_link_status"] != "up" || f["master_sync_in_progress"] == "1" {
			state = "not in sync (its data may be partial: plan and status would be wrong)"
		}
		return report.E(report.CodeConfig, "redis at %s is a read-only replica of %s, %s: point REDIS_HOST and REDIS_PORT at the master %s; nothing was read or written", c.Addr(), master, state, master).
			With("setting", config.KeyRedisHost).With("master", master)
	}
	if f["loading"] == "1" {
		return report.E(report.CodeTemporary, "redis at %s is loading its dataset into memory: retry when it is done (--wait-for waits); nothing was read or written", c.Addr())
	}
	return nil
}

// missingCommands asks COMMAND INFO for every needed command: a renamed or
// disabled one comes back empty.
func missingCommands(ctx context.Context, c *redis.Client, addr string) error {
	args := []any{"command", "info"}
	for _, n := range neededCommands {
		args = append(args, n.name)
	}
	res, err := c.Do(ctx, args...).Slice()
	if err != nil || len(res) != len(neededCommands) {
		if err != nil && rediserr.Code(err) == report.CodeUnreachable {
			return rediserr.Classify(err, "COMMAND INFO on "+addr)
		}
		return nil // COMMAND itself denied or renamed: cannot tell
	}
	for i, r := range res {
		if r == nil {
			n := neededCommands[i]
			if n.name == "eval" && luascript.Missing(c.Do(ctx, "evalsha", noSuchScript, 0).Err(), "evalsha") {
				return report.E(report.CodeConfig, "redis at %s has neither EVALSHA nor EVAL (renamed or disabled with rename-command): the migration runs its compare-and-set and lock scripts with one of them (EVAL is the fallback for EVALSHA); restore one under its own name; nothing was read or written", addr).
					With("command", "EVALSHA,EVAL")
			}
			return report.E(report.CodeConfig, "redis at %s has no %s command (renamed or disabled with rename-command, or removed): the migration needs it because it %s; restore it under its own name (or run against a server that has it); nothing was read or written", addr, strings.ToUpper(n.name), n.why).
				With("command", strings.ToUpper(n.name))
		}
	}
	return nil
}
