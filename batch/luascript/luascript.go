// Package luascript runs the tool's Lua scripts: by hash (EVALSHA, loading
// the script when the server lost it) where the server allows it, and by
// source (EVAL) on a server where EVALSHA is renamed away (rename-command)
// or denied by an ACL while EVAL is not (issue #22: such a server gave exit
// 1 UNKNOWN quoting Lua source, or was refused up front). The choice is
// remembered per client, so that every package running scripts over one
// connection (the lock, the migrations) makes it once.
package luascript

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/report"
)

// noSha holds the clients whose server does not run EVALSHA for us.
var noSha sync.Map // client (comparable: a pointer) -> struct{}

// Warning is what a run says, on stderr and in its report, when it sends
// scripts with EVAL.
const Warning = "EVALSHA is renamed away or denied on this server: the scripts are sent whole with EVAL instead (the same scripts and results, a few hundred bytes more per call)"

// UseEval makes every later script on client go by EVAL.
func UseEval(client any) { noSha.Store(client, struct{}{}) }

// UsesEval says whether scripts on client go by EVAL.
func UsesEval(client any) bool {
	_, ok := noSha.Load(client)
	return ok
}

// Missing says whether err is a server's refusal of the command name (not
// of a key, not of the script): renamed away ("unknown command 'evalsha'")
// or denied by an ACL ("NOPERM ... the 'evalsha' command").
func Missing(err error, name string) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	if !strings.Contains(msg, "'"+name+"'") {
		return false
	}
	return strings.Contains(msg, "unknown command") || strings.Contains(msg, "noperm") && strings.Contains(msg, "command")
}

// Run runs s on client: EVALSHA (EVAL when the server lost the script, as
// go-redis's Script.Run does), or EVAL once EVALSHA was found missing.
// When both are refused, the error names both.
func Run(ctx context.Context, client redis.Scripter, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if !UsesEval(client) {
		cmd := s.Run(ctx, client, keys, args...)
		if !Missing(cmd.Err(), "evalsha") {
			return cmd
		}
		shaErr := cmd.Err()
		UseEval(client)
		cmd = s.Eval(ctx, client, keys, args...)
		if err := cmd.Err(); Missing(err, "eval") {
			cmd.SetErr(Both(shaErr, err))
		}
		return cmd
	}
	return s.Eval(ctx, client, keys, args...)
}

// Both is the error for a server that refuses EVALSHA and EVAL, naming
// both: 77 when an ACL denies them, 78 when they are renamed away.
func Both(shaErr, evalErr error) error {
	code := report.CodeConfig
	if strings.Contains(evalErr.Error(), "NOPERM") || strings.Contains(shaErr.Error(), "NOPERM") {
		code = report.CodePermission
	}
	return report.Wrap(code, evalErr, "redis refuses EVALSHA (%v) and EVAL, its fallback: the migration runs its compare-and-set and lock scripts with one of them; allow one (ACL +evalsha or +eval) or restore its name", shaErr).(*report.Error).With("command", "EVALSHA,EVAL")
}
