package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// One restoreBatchScript holds at most this many twins and payload bytes:
// the server runs it at once and holds its arguments meanwhile. 256 twins
// of the usual size keep it near a millisecond.
const (
	restoreBatchKeys  = 256
	restoreBatchBytes = 4 << 20
)

// restoreBatch is restore for a fenced pass on a standalone server: the
// twins go in batches, each one script that checks the fence once. A
// script per twin spent more of Redis's time on the fence (TIME, TYPE,
// GET) and the script call than on the RESTORE itself.
func (s *Set) restoreBatch(ctx context.Context, ws []twinWrite, payloads [][]byte) ([]error, error) {
	deadline, value, lockKey := s.fenceArgs(ctx)
	errs := make([]error, len(ws))
	todo := batchRanges(payloads)
	for attempt := 0; len(todo) > 0; attempt++ {
		if err := scan.CheckFence(ctx); err != nil {
			return nil, err
		}
		var names []string
		first := make([]string, len(todo))
		for i, b := range todo {
			first[i] = ws[b[0]].name
			for j := b[0]; j < b[1]; j++ {
				names = append(names, ws[j].name)
			}
		}
		cmds := make([]*goredis.Cmd, len(todo))
		s.others.ExpectScript(names)
		s.pipelined(ctx, first, func(pipe goredis.Pipeliner, i int) {
			keys, args := restoreBatchArgs(ws, payloads, todo[i], deadline, value, lockKey)
			cmds[i] = restoreBatchScript.EvalSha(ctx, pipe, keys, args...)
		})
		again, wrote, err := restoreBatchReplies(cmds, todo, errs, attempt)
		s.others.SettleScript(ctx, names, wrote)
		if err != nil {
			if err == errLockLost {
				return nil, lockLostError(deadline, lockKey)
			}
			return nil, err
		}
		if len(again) > 0 {
			if err := restoreBatchScript.Load(ctx, s.c).Err(); err != nil {
				return nil, rediserr.Classify(err, "SCRIPT LOAD")
			}
		}
		todo = again
	}
	return errs, nil
}

// batchRanges cuts the twins into [start, end) ranges within the limits.
func batchRanges(payloads [][]byte) [][2]int {
	var out [][2]int
	for start := 0; start < len(payloads); {
		end, size := start, 0
		for end < len(payloads) && end-start < restoreBatchKeys && (end == start || size+len(payloads[end]) <= restoreBatchBytes) {
			size += len(payloads[end])
			end++
		}
		out = append(out, [2]int{start, end})
		start = end
	}
	return out
}

func restoreBatchArgs(ws []twinWrite, payloads [][]byte, b [2]int, deadline int64, value, lockKey string) ([]string, []any) {
	keys := make([]string, 0, b[1]-b[0]+1)
	args := make([]any, 0, 2+3*(b[1]-b[0]))
	args = append(args, deadline, value)
	for j := b[0]; j < b[1]; j++ {
		keys = append(keys, ws[j].name)
		ttl, abs := ws[j].expiry.restoreArgs()
		flag := "0"
		if abs {
			flag = "1"
		}
		args = append(args, ttl, flag, payloads[j])
	}
	if lockKey != "" {
		keys = append(keys, lockKey)
	}
	return keys, args
}

// errLockLost: a batch found the lease gone.
var errLockLost = report.E(report.CodeLockLost, "lease lost")

// restoreBatchReplies reads each batch's reply into errs (nil: created)
// and wrote (by twin, in the order of the batches); again lists the
// batches to send again once the script is loaded.
func restoreBatchReplies(cmds []*goredis.Cmd, todo [][2]int, errs []error, attempt int) (again [][2]int, wrote []bool, err error) {
	for i, b := range todo {
		base := len(wrote)
		wrote = append(wrote, make([]bool, b[1]-b[0])...)
		cerr := cmds[i].Err()
		switch {
		case cerr == nil:
		case goredis.HasErrorPrefix(cerr, "NOSCRIPT") && attempt < 2:
			again = append(again, b)
			continue
		default:
			err = rediserr.Classify(cerr, "RESTORE in a script")
			continue
		}
		switch v := cmds[i].Val().(type) {
		case int64:
			if v == lockLost {
				err = errLockLost
				continue
			}
			err = report.E(report.CodeInternal, "restore script reply %v", v)
		case []any:
			for j, r := range v {
				switch r := r.(type) {
				case int64:
					wrote[base+j] = r == 1
					if r == 0 {
						errs[b[0]+j] = serverError("BUSYKEY Target key name already exists.")
					}
				case string:
					errs[b[0]+j] = serverError(r)
				}
			}
		default:
			err = report.E(report.CodeInternal, "restore script reply %v", v)
		}
	}
	return again, wrote, err
}
