package redisphase

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Apply implements batch.Phase.
func (p *Phase) Apply(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.recordNotApplicable(ctx, run, lines, states); err != nil {
		return lines, err
	}
	if run.Repair {
		return p.repair(ctx, run, lines, states)
	}
	todo, done := p.pending(states, run.Target)
	if len(todo) == 0 {
		return lines, nil
	}
	guard := p.guard
	if guard == nil {
		if guard, err = p.preflight(ctx, run, todo, done); err != nil {
			return lines, err
		}
	}
	started := time.Now()
	a := &applier{p: p, run: run, lines: lines, todo: todo, done: done, guard: guard,
		ex: p.executor(run, "apply", run.Fence), others: &report.Others{}, total: scan.NewTally()}
	a.ex.Stop = guard.stop(run)
	// Writes outside the passes (the catch-up) are fenced too.
	ctx = scan.WithFence(ctx, a.ex.Fence)
	a.ex.Fingerprint = strings.Join(todo, "+")
	a.ex.Label = a.ex.Fingerprint
	for _, n := range todo {
		run.Emit(progress.Event{Event: progress.MigrationStarted, Migration: "redis/" + n, Msg: "applying redis/" + n})
	}
	p.warnClients(ctx, run.Events, a.others)
	if a.o, a.wt, err = p.watchOthers(ctx, run); err != nil {
		return lines, err
	}
	if a.wt != nil {
		defer func() { a.wt.UseOthers(nil); a.o.Close() }()
		if a.earlier, err = p.readReported(ctx); err != nil {
			return lines, err
		}
	}
	defer func() { lines[indexOf(lines, todo[0])].Others = a.others }()
	confirm, err := a.passes(ctx)
	if err != nil {
		return lines, err
	}
	failedErr, err := p.record(ctx, run, lines, todo, a.total, confirm, &report.Progress{RunID: run.ID, Resumed: a.resumed, Nodes: a.nodes}, started)
	if err != nil {
		return lines, err
	}
	if err := p.clear(ctx, a.ex, "apply"); err != nil {
		return lines, err
	}
	if a.wt != nil && len(a.earlier)+len(a.reported) > 0 {
		if err := p.checkFence(ctx, run); err != nil {
			return lines, err
		}
		if err := p.saveReported(ctx, a.reported); err != nil {
			return lines, err
		}
	}
	return lines, failedErr
}

// recordNotApplicable records the migrations that do not apply to this
// deployment, as Outpost does, and marks their lines.
func (p *Phase) recordNotApplicable(ctx context.Context, run *batch.Run, lines []report.Migration, states map[string]state) error {
	for i, m := range p.set.Migrations() {
		if states[m.Name].satisfied() || m.NotApplicable == nil || m.NotApplicable(p.prefix) == "" {
			continue
		}
		if err := p.checkFence(ctx, run); err != nil {
			return err
		}
		now := time.Now().UTC().Format(time.RFC3339)
		reason := m.NotApplicable(p.prefix)
		if err := p.c.HSet(ctx, p.StateKey(m.Name), "status", "not_applicable", "checked_at", now, "reason", reason, "run_id", run.ID).Err(); err != nil {
			return rediserr.Classify(err, "record "+m.Name)
		}
		lines[i].State, lines[i].Reason, lines[i].Counts = report.StateNotApplicable, reason, &report.Counts{}
		states[m.Name] = state{status: "not_applicable"}
	}
	return nil
}

// applier is one apply of the migrations todo: its passes and what they
// found so far.
type applier struct {
	p          *Phase
	run        *batch.Run
	lines      []report.Migration
	todo, done []string
	guard      *memoryGuard
	ex         *scan.Executor
	o          *scan.Others
	wt         Watcher
	others     *report.Others
	total      *scan.Tally
	nodes      []report.NodeProgress
	resumed    bool
	// earlier are the records the last apply's catch-up reported,
	// reported those this one's did (see reported.go).
	earlier, reported []string
}

// passes runs apply passes until one settles (others' writes caught up, or
// a confirming pass finds nothing left) or MaxPasses, and returns the
// failures to record: the confirming pass's, or the pass's and the
// catch-up's.
func (a *applier) passes(ctx context.Context) (*scan.Tally, error) {
	p, run, ex := a.p, a.run, a.ex
	for pass := 1; ; pass++ {
		run.Emit(progress.Event{Event: progress.PassStarted, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d over %s", pass, ex.Spec.Match)})
		res, err := ex.Pass(ctx, p.set.Apply(a.todo, a.done))
		if res != nil {
			a.total.Merge(res.Tally)
			a.nodes = res.Nodes
			a.resumed = a.resumed || res.Resumed
		}
		if err != nil {
			again, rerr := p.reshardAgain(ctx, run, pass, "", err)
			if !again {
				return nil, a.unfinished(a.guard.explain(ctx, rerr))
			}
			continue
		}
		if res.TopologyChanged {
			again, rerr := p.reshardAgain(ctx, run, pass, res.TopologyWhy, nil)
			if !again {
				return nil, a.unfinished(rerr)
			}
			if err := p.clear(ctx, ex, "apply"); err != nil {
				return nil, err
			}
			continue
		}
		cu, reported, settled, err := p.settle(ctx, run, a.o, a.wt, a.todo, a.done, res, a.total, a.others, a.earlier)
		if err != nil {
			return nil, a.unfinished(err)
		}
		if settled {
			a.reported = reported
			run.Emit(progress.Event{Event: progress.PassDone, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d done; other clients changed %d keys during it (%d catch-up rounds)", pass, a.others.KeysChanged, a.others.Rounds)})
			return cu, nil
		}
		confirm, left, again, err := a.confirm(ctx, pass)
		if err != nil {
			return nil, err
		}
		if again {
			continue
		}
		run.Emit(progress.Event{Event: progress.PassDone, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d done; confirming pass found %d keys left to change", pass, left)})
		if left == 0 || pass >= p.opts.MaxPasses {
			return confirm, a.lookAgain(ctx, confirm)
		}
		if err := p.clear(ctx, ex, "apply"); err != nil {
			return nil, err
		}
	}
}

// lookAgain runs the catch-up over the records the last apply reported
// when the pass was settled by a confirming pass instead (which checks
// that twins exist and are converted, not that they agree), adding its
// failures to confirm's.
func (a *applier) lookAgain(ctx context.Context, confirm *scan.Tally) error {
	if a.wt == nil || len(a.earlier) == 0 {
		return nil
	}
	t := scan.NewTally()
	if err := a.wt.CatchUp(ctx, a.todo, a.done, a.earlier, t); err != nil {
		return a.unfinished(err)
	}
	confirm.Merge(mainFailures(a.todo, nil, t))
	a.reported = t.IssueKeys()
	return nil
}

// confirm runs the confirming pass: read-only, it finds what is left to do
// (left) and the keys that cannot be converted. It keeps its own checkpoint
// (counts included), so that a run stopped in it (--max-runtime, a signal,
// kill -9) resumes it rather than starting it over: reruns on exit 75
// converge. again: the cluster moved, and another apply pass is due.
func (a *applier) confirm(ctx context.Context, pass int) (t *scan.Tally, left int64, again bool, err error) {
	p, run, ex := a.p, a.run, a.ex
	a.others.ConfirmingPass = true
	cex := p.executor(run, "confirm", run.Fence)
	cex.Stop = ex.Stop
	cex.Fingerprint = ex.Fingerprint
	cex.Label = "confirm " + ex.Label
	cres, err := fullPass(ctx, cex, p.set.Check(a.todo, a.done))
	if err == nil {
		// Evictions since the last check would undo what the confirming
		// pass just confirmed.
		err = a.guard.check(ctx, true)
	}
	if err != nil {
		again, rerr := p.reshardAgain(ctx, run, pass, "", err)
		if !again {
			return nil, 0, false, a.unfinished(a.guard.explain(ctx, rerr))
		}
		if err := p.clear(ctx, ex, "apply"); err != nil {
			return nil, 0, false, err
		}
		return nil, 0, true, p.clear(ctx, cex, "confirm")
	}
	if err := p.clear(ctx, cex, "confirm"); err != nil {
		return nil, 0, false, err
	}
	for _, n := range a.todo {
		left += cres.Tally.Counts(n).Changed
	}
	return cres.Tally, left, false, nil
}

// unfinished fills the lines of a run that stopped (signal, deadline, lost
// lease, store failure) and returns its error.
func (a *applier) unfinished(err error) error {
	state := report.StopState(err)
	if isResharding(err) {
		state = report.StateInterrupted
	}
	for _, name := range a.todo {
		l, _ := countLine(a.lines, name, a.total)
		l.State = state
		l.Resumable = true
		l.Progress = &report.Progress{RunID: a.run.ID, Resumed: a.resumed, Nodes: a.nodes}
		l.Reason = "stopped before the end; a rerun resumes from the saved checkpoint"
	}
	return err
}

// record fills the lines of todo after the pass and records as applied
// each migration that has no failures and nothing left to do, as long as
// every migration before it in the pass did too. It returns the failure of
// the first that did not (failed), or a store or fence error (err).
func (p *Phase) record(ctx context.Context, run *batch.Run, lines []report.Migration, todo []string, total, confirm *scan.Tally, prog *report.Progress, started time.Time) (failed error, err error) {
	// A migration is applied only when it and every migration before it in
	// the pass have no failures and nothing left to do.
	blocked := ""
	var failedErr error
	for _, name := range todo {
		i := indexOf(lines, name)
		c := total.Counts(name)
		cc := confirm.Counts(name)
		c.Failed = cc.Failed
		lines[i].Counts = &c
		lines[i].Issues, lines[i].IssuesTotal = confirm.Issues(name)
		lines[i].DurationMS = time.Since(started).Milliseconds()
		lines[i].Progress = prog
		switch {
		case blocked != "":
			lines[i].State = report.StatePending
			lines[i].Reason = "not applied because " + blocked + " did not complete"
		case cc.Failed > 0 || cc.Changed > 0:
			lines[i].State = report.StateFailed
			lines[i].Resumable = true
			lines[i].Reason = fmt.Sprintf("%d keys failed and %d are left to change; fix the keys listed and run apply again (done work is kept)", cc.Failed, cc.Changed)
			blocked = name
			if failedErr == nil {
				failedErr = report.E(report.CodeMigrationFailed, "redis/%s: %d keys could not be migrated", name, cc.Failed+cc.Changed).With("migration", "redis/"+name)
			}
		default:
			if err := p.checkFence(ctx, run); err != nil {
				return nil, err
			}
			now := time.Now().UTC().Format(time.RFC3339)
			if err := p.c.HSet(ctx, p.StateKey(name), "status", "applied", "applied_at", now, "run_id", run.ID,
				"scanned", c.Scanned, "changed", c.Changed, "duration_ms", lines[i].DurationMS).Err(); err != nil {
				return nil, rediserr.Classify(err, "record "+name)
			}
			lines[i].State = report.StateApplied
			lines[i].AppliedAt = now
			run.Emit(progress.Event{Event: progress.MigrationFinished, Migration: "redis/" + name, Counts: &c, Msg: "applied redis/" + name})
		}
	}
	return failedErr, nil
}
