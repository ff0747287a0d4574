package redismigrations

import (
	"context"
	"strings"

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

// restoreFenced writes the twins of a fenced pass so that none is written
// once the lease is gone: on a standalone server in one transaction under
// WATCH of the lock (restoreTx), else in batches, each one script that
// checks the fence once (restoreBatch; on a cluster one per master, with
// the flag that lets a script write keys of several slots); a twin the
// batches cannot take (Redis 6, a slot moving) gets a script of its own. A
// script per twin spent more of Redis's time on the fence (TIME, TYPE, GET)
// and the call than on the RESTORE itself: a cluster apply of 480k keys
// took 20 s that way against 8 s unfenced.
func (s *Set) restoreFenced(ctx context.Context, ws []twinWrite, payloads [][]byte) ([]error, error) {
	if _, standalone := s.c.(*goredis.Client); standalone {
		errs, ok, err := s.restoreTx(ctx, ws, payloads)
		if ok || err != nil {
			return errs, err
		}
		errs, _, err = s.restoreBatch(ctx, ws, payloads, batchRanges(payloads, nil), restoreBatchScript)
		return errs, err
	}
	if s.noCrossSlot.Load() {
		return s.restoreEach(ctx, ws, payloads)
	}
	ws, payloads, groups, back, err := s.byMaster(ctx, ws, payloads)
	if err != nil {
		return nil, err
	}
	errs, redo, err := s.restoreBatch(ctx, ws, payloads, batchRanges(payloads, groups), restoreCrossSlotScript)
	if err != nil {
		return nil, err
	}
	if len(redo) > 0 {
		rw, rp := make([]twinWrite, len(redo)), make([][]byte, len(redo))
		for j, i := range redo {
			rw[j], rp[j] = ws[i], payloads[i]
		}
		rerrs, err := s.restoreEach(ctx, rw, rp)
		if err != nil {
			return nil, err
		}
		for j, i := range redo {
			errs[i] = rerrs[j]
		}
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[back[i]] = e
	}
	return out, nil
}

// byMaster orders the twins by the master that serves them: groups holds
// where each master's run ends, back[i] the original index of twin i.
func (s *Set) byMaster(ctx context.Context, ws []twinWrite, payloads [][]byte) ([]twinWrite, [][]byte, []int, []int, error) {
	cc := s.c.(*goredis.ClusterClient)
	byAddr := map[string][]int{}
	var addrs []string
	for i, w := range ws {
		m, err := cc.MasterForKey(ctx, w.name)
		if err != nil {
			return nil, nil, nil, nil, rediserr.Classify(err, "find the master of "+w.name)
		}
		a := m.Options().Addr
		if byAddr[a] == nil {
			addrs = append(addrs, a)
		}
		byAddr[a] = append(byAddr[a], i)
	}
	ows, ops := make([]twinWrite, 0, len(ws)), make([][]byte, 0, len(ws))
	var groups, back []int
	for _, a := range addrs {
		for _, i := range byAddr[a] {
			ows, ops, back = append(ows, ws[i]), append(ops, payloads[i]), append(back, i)
		}
		groups = append(groups, len(ows))
	}
	return ows, ops, groups, back, nil
}

// restoreBatch sends the twins in the given ranges, one script each, all
// in one pipeline per master. redo lists the twins of batches the server
// would not run as a batch (a slot that moved, a server without script
// flags): the caller writes them one by one.
func (s *Set) restoreBatch(ctx context.Context, ws []twinWrite, payloads [][]byte, todo [][2]int, sc *goredis.Script) (errs []error, redo []int, err error) {
	deadline, value, lockKey := s.fenceArgs(ctx)
	errs = make([]error, len(ws))
	for attempt := 0; len(todo) > 0; attempt++ {
		if err := scan.CheckFence(ctx); err != nil {
			return nil, nil, err
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
			keys, args := restoreBatchArgs(ws, payloads, todo[i], deadline, value, lockKey, sc == restoreCrossSlotScript)
			cmds[i] = sc.EvalSha(ctx, pipe, keys, args...)
		})
		again, single, wrote, err := s.restoreBatchReplies(cmds, todo, errs, attempt)
		s.others.SettleScript(ctx, names, wrote)
		if err != nil {
			if err == errLockLost {
				return nil, nil, lockLostError(deadline, lockKey)
			}
			return nil, nil, err
		}
		redo = append(redo, single...)
		if len(again) > 0 {
			if err := sc.Load(ctx, s.c).Err(); err != nil {
				return nil, nil, rediserr.Classify(err, "SCRIPT LOAD")
			}
		}
		todo = again
	}
	return errs, redo, nil
}

// batchRanges cuts the twins into [start, end) ranges within the limits,
// none across the end of a group (groups: where each ends; nil: one).
func batchRanges(payloads [][]byte, groups []int) [][2]int {
	var out [][2]int
	g := 0
	for start := 0; start < len(payloads); {
		for g < len(groups) && groups[g] <= start {
			g++
		}
		limit := len(payloads)
		if g < len(groups) {
			limit = groups[g]
		}
		end, size := start, 0
		for end < limit && end-start < restoreBatchKeys && (end == start || size+len(payloads[end]) <= restoreBatchBytes) {
			size += len(payloads[end])
			end++
		}
		out = append(out, [2]int{start, end})
		start = end
	}
	return out
}

// restoreBatchArgs are the KEYS and ARGV of one batch: the twins in KEYS
// (then the lock), or, across slots, the first twin in KEYS and every
// twin's name in ARGV.
func restoreBatchArgs(ws []twinWrite, payloads [][]byte, b [2]int, deadline int64, value, lockKey string, crossSlot bool) ([]string, []any) {
	keys := make([]string, 0, b[1]-b[0]+1)
	args := make([]any, 0, 2+4*(b[1]-b[0]))
	args = append(args, deadline, value)
	for j := b[0]; j < b[1]; j++ {
		ttl, abs := ws[j].expiry.restoreArgs()
		flag := "0"
		if abs {
			flag = "1"
		}
		if crossSlot {
			args = append(args, ws[j].name)
		} else {
			keys = append(keys, ws[j].name)
		}
		args = append(args, ttl, flag, payloads[j])
	}
	if crossSlot {
		keys = append(keys, ws[b[0]].name)
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
// batches to send again once the script is loaded, single the twins to
// write one by one.
func (s *Set) restoreBatchReplies(cmds []*goredis.Cmd, todo [][2]int, errs []error, attempt int) (again [][2]int, single []int, wrote []bool, err error) {
	for i, b := range todo {
		base := len(wrote)
		wrote = append(wrote, make([]bool, b[1]-b[0])...)
		cerr := cmds[i].Err()
		switch {
		case cerr == nil:
		case goredis.HasErrorPrefix(cerr, "NOSCRIPT") && attempt < 2:
			again = append(again, b)
			continue
		case notAsBatch(cerr):
			if strings.Contains(cerr.Error(), "compiling") || strings.Contains(cerr.Error(), "flag") {
				s.noCrossSlot.Store(true)
			}
			for j := b[0]; j < b[1]; j++ {
				single = append(single, j)
			}
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
					if notAsBatch(serverError(r)) {
						// Its slot is moving: on its own, the
						// client follows the cluster there.
						single = append(single, b[0]+j)
						continue
					}
					errs[b[0]+j] = serverError(r)
				}
			}
		default:
			err = report.E(report.CodeInternal, "restore script reply %v", v)
		}
	}
	return again, single, wrote, err
}

// notAsBatch: the server would not run a batch as one script on this node
// (its keys span slots that moved, or it does not know script flags), but
// would take each twin on its own.
func notAsBatch(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "CROSSSLOT", "TRYAGAIN", "non local key", "Error compiling script", "Unexpected flag", "unknown flag"} {
		if strings.Contains(err.Error(), p) {
			return true
		}
	}
	return false
}
