package redisphase

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Watcher is implemented by a Set that can send its writes through
// scan.Others and make right what other clients changed during a pass.
// Without it every apply ends with a full confirming pass.
type Watcher interface {
	// UseOthers routes the set's writes through o (nil: the client).
	UseOthers(o *scan.Others)
	// CatchUp makes right or reports the keys others changed (changed),
	// recording failures and issues under the migrations' names and its
	// outcomes under the labels of OthersLabels.
	CatchUp(ctx context.Context, todo, done, changed []string, t *scan.Tally) error
}

// OthersLabels are the tally labels of CatchUp's outcomes, in the order of
// report.Others' fields Right, Migrated, Recopied, Converted, Reported,
// Gone.
var OthersLabels = [6]string{"others:right", "others:migrated", "others:recopied", "others:converted", "others:reported", "others:gone"}

// ServeRule is the guide's rule that writers during apply break.
const ServeRule = "the only requirement is that `outpost migrate apply` completes before `outpost serve` starts"

// RecentWriteS is how recent a client's last write must be to be called
// recent in the warning.
const RecentWriteS = 10

// maxCatchUpRounds bounds the catch-up: each round waits for the changes
// reported so far and makes them right; a writer that never stops is
// reported after this many.
const maxCatchUpRounds = 10

// watchOthers starts watching the deployment's tenant keys when the set
// supports it; nil when it does not.
func (p *Phase) watchOthers(ctx context.Context, run *batch.Run) (*scan.Others, Watcher, error) {
	wt, ok := p.set.(Watcher)
	if !ok {
		return nil, nil, nil
	}
	o, err := scan.WatchOthers(ctx, p.c, p.prefix+"tenant:", 0)
	if err != nil {
		o.Close()
		return nil, nil, err
	}
	if why := o.Broken(); why != "" {
		progress.Warnf(run.Events, "writes by other clients cannot be watched (%s): apply ends with a full confirming pass", why)
	}
	wt.UseOthers(o)
	return o, wt, nil
}

// catchUp waits for what others changed during the pass and makes it
// right, round after round until a round finds nothing new. ok is false
// when detection became unavailable: the caller then runs the confirming
// pass.
func (p *Phase) catchUp(ctx context.Context, run *batch.Run, o *scan.Others, wt Watcher, todo, done []string, pass *scan.Tally, out *report.Others, earlier []string) (*scan.Tally, bool, error) {
	t := scan.NewTally()
	for round := 1; ; round++ {
		keys, err := o.Sync(ctx)
		if err != nil {
			return nil, false, err
		}
		if o.Broken() != "" {
			return nil, false, nil
		}
		if round == 1 {
			// What an earlier apply reported is looked at again.
			keys = slices.Compact(slices.Sorted(slices.Values(append(keys, earlier...))))
		}
		// A key the pass already reported stays reported (exit 4, a rerun
		// looks again): the catch-up must not list it twice.
		keys = slices.DeleteFunc(keys, pass.HasIssue)
		if len(keys) == 0 {
			break
		}
		if round > maxCatchUpRounds {
			for _, k := range keys {
				t.Fail(todo[0], report.Issue{Key: k, Reason: fmt.Sprintf("changed by another client after %d catch-up rounds: a client is still writing; stop it (%s) and rerun apply", maxCatchUpRounds, ServeRule)})
			}
			out.Reported += int64(len(keys))
			break
		}
		out.Rounds = round
		run.Emit(progress.Event{Event: progress.PassStarted, Migration: strings.Join(todo, "+"),
			Msg: fmt.Sprintf("catch-up round %d: %d keys changed by other clients during the pass", round, len(keys))})
		if err := wt.CatchUp(ctx, todo, done, keys, t); err != nil {
			return nil, false, err
		}
	}
	fields := []*int64{&out.Right, &out.Migrated, &out.Recopied, &out.Converted, &out.Reported, &out.Gone}
	for i, l := range OthersLabels {
		*fields[i] += t.Counts(l).Changed
	}
	out.Detection = "client_tracking"
	out.KeysChanged, out.PerMaster = o.Total(), o.PerMaster()
	return t, true, nil
}

// settle decides what is left after an apply pass without reading the
// keyspace again: when others' writes were watched through the whole pass
// it catches up on them and returns the failures (settled); on a fresh
// install (no tenant key) nothing can be left. Otherwise the caller runs
// the full confirming pass, and others says why.
func (p *Phase) settle(ctx context.Context, run *batch.Run, o *scan.Others, wt Watcher, todo, done []string, res *scan.Result, total *scan.Tally, others *report.Others, earlier []string) (failures *scan.Tally, reported []string, settled bool, err error) {
	if wt != nil && o.Broken() == "" && !res.TopologyChanged && !res.Resumed {
		cu, ok, err := p.catchUp(ctx, run, o, wt, todo, done, res.Tally, others, earlier)
		if err != nil {
			return nil, nil, false, err
		}
		if ok {
			return mainFailures(todo, res.Tally, cu), cu.IssueKeys(), true, nil
		}
	}
	if wt != nil {
		others.Detection = "unavailable"
		others.Reason = o.Broken()
		if res.Resumed {
			others.Reason = "the pass resumed a checkpoint: writes before this run were not watched"
		} else if res.TopologyChanged {
			others.Reason = "the cluster's topology changed during the pass"
		}
		others.KeysChanged, others.PerMaster = o.Total(), o.PerMaster()
	}
	if total.Sum().Scanned == 0 && !res.TopologyChanged && !res.Resumed {
		// No tenant key at all (a fresh install): nothing can be left to
		// do, so one pass is enough.
		return scan.NewTally(), nil, true, nil
	}
	if wt != nil {
		progress.Warnf(run.Events, "writes by other clients during the pass could not be watched (%s): running a full confirming pass", others.Reason)
	}
	return nil, nil, false, nil
}

// mainFailures is what the confirming pass used to supply when there is
// none: the failures and issues of the pass itself, per migration, plus
// those of the catch-up.
func mainFailures(todo []string, pass, catch *scan.Tally) *scan.Tally {
	out := scan.NewTally()
	for _, src := range []*scan.Tally{pass, catch} {
		if src == nil {
			continue
		}
		for _, name := range todo {
			c := src.Counts(name)
			out.Add(name, func(d *report.Counts) { d.Failed += c.Failed })
			issues, total := src.Issues(name)
			for _, i := range issues {
				out.Issue(name, i)
			}
			// Issues past the first few still count toward the total.
			for n := int64(len(issues)); n < total; n++ {
				out.Issue(name, report.Issue{})
			}
		}
	}
	return out
}

// clients lists the connections to every master other than this
// process's own, with whether each wrote recently.
func (p *Phase) clients(ctx context.Context) ([]report.Client, error) {
	nodes, err := scan.Nodes(ctx, p.c)
	if err != nil {
		return nil, err
	}
	writes := map[string]bool{}
	own := ownAddrs()
	var out []report.Client
	for _, n := range nodes {
		list, err := n.Client().ClientList(ctx).Result()
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			f := clientFields(line)
			// Replicas (flag S) copy the master; they do not write to it.
			if own[f["addr"]] || strings.Contains(f["flags"], "S") || f["addr"] == "" {
				continue
			}
			idle, _ := strconv.ParseInt(f["idle"], 10, 64)
			cmd := f["cmd"]
			if _, ok := writes[cmd]; !ok {
				writes[cmd] = isWrite(ctx, n.Client(), cmd)
			}
			out = append(out, report.Client{Node: n.ID, Addr: f["addr"], Name: f["name"], LastCommand: cmd, IdleS: idle,
				RecentWrite: writes[cmd] && idle < RecentWriteS})
		}
	}
	return out, nil
}

func clientFields(line string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// isWrite says whether cmd (CLIENT LIST's cmd, "client|list" for a
// subcommand) may write: COMMAND INFO's write flag, and scripts,
// functions and transactions, which may.
func isWrite(ctx context.Context, c *redis.Client, cmd string) bool {
	switch strings.SplitN(cmd, "|", 2)[0] {
	case "exec", "eval", "evalsha", "fcall", "NULL", "":
		return cmd != "NULL" && cmd != ""
	}
	info, err := c.Do(ctx, "COMMAND", "INFO", cmd).Slice()
	if err != nil || len(info) == 0 || info[0] == nil {
		return true
	}
	return strings.Contains(fmt.Sprint(info[0]), "write")
}

// warnClients attaches the clients to out and warns about them.
func (p *Phase) warnClients(ctx context.Context, events progress.Sink, out *report.Others) {
	list, err := p.clients(ctx)
	if err != nil {
		progress.Warnf(events, "cannot list the clients connected to Redis: %v", err)
		return
	}
	out.Clients = list
	recent := 0
	for _, c := range list {
		if c.RecentWrite {
			recent++
		}
	}
	if len(list) == 0 {
		return
	}
	var named []string
	for _, c := range list[:min(len(list), 5)] {
		named = append(named, fmt.Sprintf("%s %s (%s, last command %s %ds ago)", c.Node, c.Addr, c.Name, c.LastCommand, c.IdleS))
	}
	out.Warning = fmt.Sprintf("%d other clients are connected to Redis (%d wrote in the last %ds): %s; an old Outpost still running writes legacy keys while apply copies them: %s (Outpost's migration guide)",
		len(list), recent, RecentWriteS, strings.Join(named, "; "), ServeRule)
	progress.Warnf(events, "%s", out.Warning)
}
