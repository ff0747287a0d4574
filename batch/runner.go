package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/outpost-migrate/outpost/batch/poll"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// Locker is the migration lock as the runner needs it; package batch/lock
// provides the Redis lease, cmd adapts it.
type Locker interface {
	// Acquire takes the lock, waiting up to wait for a busy one. A busy
	// lock is a report.CodeLockHeld error whose details name the holder.
	Acquire(ctx context.Context, command string, wait time.Duration) (Lease, error)
	// Inspect reports the lock without touching it.
	Inspect(ctx context.Context) (*report.Lock, error)
	// ForceUnlock removes the lock whoever holds it and returns what it
	// removed (nil when there was none).
	ForceUnlock(ctx context.Context) (*report.Lock, error)
}

// Lease is a held lock.
type Lease interface {
	Fence
	// Lost is closed when the lease was taken away.
	Lost() <-chan struct{}
	// Err says why the lease was lost (report.CodeLockLost), or nil.
	Err() error
	Release(ctx context.Context) error
	Info() *report.Lock
}

// TargetKnower is implemented by phases that can say whether a --target
// names one of their migrations.
type TargetKnower interface{ TargetKnown(target string) bool }

// Runner runs commands over phases, SQL before Redis. It is used by one
// goroutine.
type Runner struct {
	// Phases in the order they run (SQL first).
	Phases []Phase
	// Locker is nil when the command's scope has no Redis (the SQL phase
	// then relies on PostgreSQL's advisory lock alone).
	Locker Locker
	Events progress.Sink
	RunID  string
}

// Options are what the command line tells the runner.
type Options struct {
	Target     string
	Repair     bool // apply --repair
	LockWait   time.Duration
	MaxRuntime time.Duration
	Sample     int
	Stop       <-chan struct{}
	StopCause  func() error
	StatusWait time.Duration // status --wait: poll until up to date
	// Plan is a saved plan (apply --plan): apply runs exactly its pending
	// migrations, and refuses before any write when the stores no longer
	// match it.
	Plan      *report.SavedPlan
	PollEvery time.Duration
}

// stopCause is why o.Stop was closed: its StopCause, or an interruption.
func (o Options) stopCause() error {
	if o.StopCause != nil {
		if err := o.StopCause(); err != nil {
			return err
		}
	}
	return report.E(report.CodeInterrupted, "interrupted")
}

// stopper merges the reasons to stop at a safe point: a signal, the
// deadline, a lost lease.
type stopper struct {
	once  sync.Once
	ch    chan struct{}
	mu    sync.Mutex
	cause error
}

func newStopper() *stopper { return &stopper{ch: make(chan struct{})} }

func (s *stopper) stop(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.cause = err
		s.mu.Unlock()
		close(s.ch)
	})
}

func (s *stopper) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

func (r *Runner) newRun(ctx context.Context, command string, o Options, lease Lease) (*Run, func()) {
	st := newStopper()
	done := make(chan struct{})
	go func() {
		var lost <-chan struct{}
		if lease != nil {
			lost = lease.Lost()
		}
		var deadline <-chan time.Time
		if o.MaxRuntime > 0 {
			t := time.NewTimer(o.MaxRuntime)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-o.Stop:
			st.stop(o.stopCause())
		case <-lost:
			st.stop(lease.Err())
		case <-deadline:
			st.stop(maxRuntimeErr(command, o.MaxRuntime))
		case <-ctx.Done():
		case <-done:
		}
	}()
	run := &Run{ID: r.RunID, Command: command, Target: o.Target, Repair: o.Repair, Sample: o.Sample, Events: r.events(), Stop: st.ch, StopCause: st.err}
	if lease != nil {
		run.Fence = lease
	}
	return run, func() { close(done) }
}

// maxRuntimeErr says what --max-runtime's stop means for command: apply
// and cleanup keep checkpoints and a rerun resumes; verify keeps none, and
// says so rather than promise a resume it cannot make.
func maxRuntimeErr(command string, d time.Duration) error {
	if command == "verify" {
		return report.E(report.CodeTimeout, "--max-runtime %s reached; verify keeps no checkpoint, so a rerun starts over from the beginning (raise --max-runtime, or spot-check with --sample N)", d).With("resumes", false)
	}
	return report.E(report.CodeTimeout, "--max-runtime %s reached; stopped at a safe point with progress saved (every node did at least one chunk, so a rerun gets further)", d).With("resumes", true)
}

func (r *Runner) events() progress.Sink {
	if r.Events == nil {
		return progress.Nop
	}
	return r.Events
}

// Plan fills rep with what apply would do.
func (r *Runner) Plan(ctx context.Context, rep *report.Report) error {
	if err := r.collect(rep, func(p Phase) ([]report.Migration, error) { return p.Plan(ctx) }); err != nil {
		return err
	}
	r.inspectLock(ctx, rep)
	r.pendingOutcome(rep)
	rep.Changed = rep.Outcome == report.OutcomePending
	return nil
}

// Status fills rep with versions, pending migrations, the lock and any
// unfinished run; with o.StatusWait it polls (every o.PollEvery, 2 s by
// default) until the stores are current.
func (r *Runner) Status(ctx context.Context, rep *report.Report, o Options) error {
	every := o.PollEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	// A signal ends the wait between polls (a poll in flight finishes).
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-o.Stop:
			cancel(o.stopCause())
		case <-waitCtx.Done():
		}
	}()
	err := poll.Policy{Wait: o.StatusWait, First: every}.Until(waitCtx,
		func(int) (bool, error) {
			rep.Migrations = nil
			if err := r.collect(rep, func(p Phase) ([]report.Migration, error) { return p.Status(ctx) }); err != nil {
				return false, err
			}
			r.inspectLock(ctx, rep)
			r.pendingOutcome(rep)
			return rep.Outcome == report.OutcomeUpToDate, nil
		},
		func(int, time.Duration) {
			progress.Infof(r.events(), "waiting for migrations to be applied (%d pending)", rep.Summary["pending"]+rep.Summary["partial"])
		})
	var ended *poll.Ended
	switch {
	case errors.Is(err, poll.ErrExpired) && o.StatusWait <= 0:
		return nil // plain status: what it found is the answer
	case errors.Is(err, poll.ErrExpired):
		return report.E(report.CodeTimeout, "stores still not up to date after --wait %s", o.StatusWait)
	case errors.As(err, &ended):
		return ended.Cause
	}
	return err
}

// collect runs f on each phase in order, adding the lines it returns to
// rep, until one fails.
func (r *Runner) collect(rep *report.Report, f func(Phase) ([]report.Migration, error)) error {
	for _, p := range r.Phases {
		lines, err := f(p)
		rep.Migrations = append(rep.Migrations, lines...)
		if err != nil {
			return err
		}
	}
	return nil
}

// List fills rep with every migration and its state.
func (r *Runner) List(ctx context.Context, rep *report.Report) error {
	if err := r.collect(rep, func(p Phase) ([]report.Migration, error) { return p.Status(ctx) }); err != nil {
		return err
	}
	rep.Outcome = report.OutcomeListed
	rep.Summary = summarize(rep.Migrations)
	rep.Msg = fmt.Sprintf("%d migrations", len(rep.Migrations))
	return nil
}

func summarize(lines []report.Migration) map[string]int {
	s := map[string]int{}
	for _, l := range lines {
		s[string(l.State)]++
	}
	return s
}

// countUnfinished counts the lines that apply still has work for.
func countUnfinished(lines []report.Migration) int {
	n := 0
	for _, l := range lines {
		if l.State.Unfinished() {
			n++
		}
	}
	return n
}

func (r *Runner) pendingOutcome(rep *report.Report) {
	rep.Summary = summarize(rep.Migrations)
	if n := countUnfinished(rep.Migrations); n > 0 {
		rep.Outcome = report.OutcomePending
		rep.Msg = fmt.Sprintf("%d migrations pending", n)
	} else {
		rep.Outcome = report.OutcomeUpToDate
		rep.Msg = "up to date"
	}
	if err := NewerData(rep); err != nil {
		rep.Msg += "; but this tool is older than the data: " + err.Error()
		progress.Warnf(r.events(), "this tool is older than the data: %v", err)
	}
}

// NewerData is the error of a store that records a version newer than
// every migration this tool knows (a line in state unknown after a
// successful read): apply and verify refuse it (65); plan and status say
// so in msg and return it under --detailed-exitcode, so that every command
// reports it the same way (issue #22: status said up_to_date, exit 0).
func NewerData(rep *report.Report) error {
	for _, l := range rep.Migrations {
		if l.State == report.StateUnknown && l.Version > 0 && l.Reason != "" {
			return report.E(report.CodeDataRefused, "%s", l.Reason).With("version", l.Version)
		}
	}
	return nil
}

func (r *Runner) inspectLock(ctx context.Context, rep *report.Report) {
	if r.Locker == nil {
		return
	}
	if l, err := r.Locker.Inspect(ctx); err == nil {
		rep.Lock = l
	} else {
		progress.Warnf(r.events(), "cannot read the lock: %v", err)
	}
}

// checkTarget refuses a --target that no phase knows.
func (r *Runner) checkTarget(target string) error {
	if target == "" {
		return nil
	}
	for _, p := range r.Phases {
		if k, ok := p.(TargetKnower); ok && k.TargetKnown(target) {
			return nil
		}
	}
	return report.E(report.CodeUsage, "--target %q names no migration in scope (see `outpost migrate list`)", target)
}

// locked runs fn under the lease (when there is a Locker) and fills
// rep.Lock.
func (r *Runner) locked(ctx context.Context, rep *report.Report, command string, o Options, fn func(run *Run) error) (err error) {
	var lease Lease
	if r.Locker != nil {
		lease, err = r.Locker.Acquire(ctx, command, o.LockWait)
		if err != nil {
			if l, ierr := r.Locker.Inspect(ctx); ierr == nil {
				rep.Lock = l
			}
			return err
		}
		defer func() {
			// Release even when ctx was cancelled by a second signal.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			rerr := lease.Release(rctx)
			rep.Lock = lease.Info()
			if rerr != nil && err == nil {
				err = rerr
			}
		}()
	}
	run, done := r.newRun(ctx, command, o, lease)
	defer done()
	// A stop that comes after the last safe point does not turn finished
	// work into an interrupted run: only fn's own error counts.
	return fn(run)
}

// Apply applies pending migrations in order, SQL first, then Redis, under
// one lease.
func (r *Runner) Apply(ctx context.Context, rep *report.Report, o Options) error {
	if err := r.checkTarget(o.Target); err != nil {
		return err
	}
	err := r.locked(ctx, rep, "apply", o, func(run *Run) error {
		if o.Plan != nil {
			target, err := r.holdToPlan(ctx, rep, o.Plan)
			if err != nil || target == "" {
				return err
			}
			o.Target, run.Target = target, target
		}
		for _, p := range r.Phases {
			if pf, ok := p.(Preflighter); ok {
				if err := pf.Preflight(ctx, run); err != nil {
					return err
				}
			}
		}
		for _, p := range r.Phases {
			lines, err := p.Apply(ctx, run)
			rep.Migrations = append(rep.Migrations, lines...)
			if err != nil {
				return err
			}
			if o.Target != "" {
				if k, ok := p.(TargetKnower); ok && k.TargetKnown(o.Target) {
					break
				}
			}
		}
		return nil
	})
	rep.Summary = summarize(rep.Migrations)
	applied := 0
	for _, l := range rep.Migrations {
		if l.Counts != nil && l.State.Satisfied() {
			applied++
		}
	}
	rep.Changed = applied > 0
	if err != nil {
		if report.IsStop(err) {
			rep.Next = "rerun the same command: it resumes from the saved checkpoints"
		} else if report.CodeOf(err) == report.CodePlanMismatch {
			rep.Next = "make a new plan (`outpost migrate plan --out FILE`), review it, and apply that one"
		} else if report.CodeOf(err) == report.CodeMigrationFailed {
			rep.Next = "fix the records listed in issues, then rerun apply: completed work is kept"
		} else if report.CodeOf(err) == report.CodeMemory {
			rep.Next = "give Redis the memory error.details names (CONFIG SET maxmemory, maxmemory-policy noeviction) or free memory, then rerun apply: completed work is kept and the run resumes from the checkpoint"
		}
		return err
	}
	if applied > 0 {
		rep.Outcome = report.OutcomeApplied
		rep.Msg = fmt.Sprintf("applied %d migrations", applied)
	} else {
		rep.Outcome = report.OutcomeUpToDate
		rep.Msg = "nothing to apply: up to date"
	}
	return nil
}

// holdToPlan plans again under the lease and compares with the saved plan:
// any difference that matters refuses the apply before it writes anything.
// It returns the last migration the plan applies (the target), or "" when
// the plan has nothing pending.
func (r *Runner) holdToPlan(ctx context.Context, rep *report.Report, saved *report.SavedPlan) (string, error) {
	now := &report.Report{Kind: "PlanReport", Tool: rep.Tool, Targets: rep.Targets}
	if err := r.collect(now, func(p Phase) ([]report.Migration, error) { return p.Plan(ctx) }); err != nil {
		return "", err
	}
	if diffs := saved.Mismatch(now); len(diffs) > 0 {
		rep.Migrations = now.Migrations
		return "", report.E(report.CodePlanMismatch, "the stores no longer match the saved plan of %s (run %s): %s; nothing was changed: review a new plan",
			saved.CreatedAt.Format(time.RFC3339), saved.RunID, strings.Join(diffs, "; ")).With("differences", diffs)
	}
	if len(saved.Pending) == 0 {
		return "", nil
	}
	return saved.Pending[len(saved.Pending)-1].ID, nil
}

// Verify checks that applied migrations hold in the data. It takes no lock
// (it only reads) but reports the lock so that a reader knows whether an
// apply was running meanwhile.
func (r *Runner) Verify(ctx context.Context, rep *report.Report, o Options) error {
	run, done := r.newRun(ctx, "verify", o, nil)
	defer done()
	var firstErr error
	for _, p := range r.Phases {
		lines, err := p.Verify(ctx, run)
		rep.Migrations = append(rep.Migrations, lines...)
		if err != nil {
			if report.CodeOf(err) != report.CodeDrift {
				if report.IsStop(err) {
					rep.Next = "rerun verify: it starts over from the beginning (verify keeps no checkpoint)"
				}
				return err
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	r.inspectLock(ctx, rep)
	rep.Summary = summarize(rep.Migrations)
	if firstErr != nil {
		return firstErr
	}
	n := rep.Summary["verified"]
	if pending := countUnfinished(rep.Migrations); n == 0 && pending > 0 {
		// A CI gate of `apply; verify` must notice an apply that did not
		// run: nothing verified is not "verified".
		rep.Outcome = report.OutcomePending
		rep.Msg = fmt.Sprintf("nothing to verify: no migration is applied yet (%d pending); run `outpost migrate apply` first", pending)
		return nil
	}
	rep.Outcome = report.OutcomeVerified
	rep.Msg = fmt.Sprintf("%d applied migrations verified", n)
	if rep.Summary["pending"] > 0 {
		rep.Msg += fmt.Sprintf("; %d pending (not verified)", rep.Summary["pending"])
	}
	return nil
}

// Cleanup removes what applied migrations preserved, under the lease.
func (r *Runner) Cleanup(ctx context.Context, rep *report.Report, o Options) error {
	err := r.locked(ctx, rep, "cleanup", o, func(run *Run) error {
		return r.collect(rep, func(p Phase) ([]report.Migration, error) { return p.Cleanup(ctx, run) })
	})
	rep.Summary = summarize(rep.Migrations)
	var deleted int64
	for _, l := range rep.Migrations {
		if l.Counts != nil {
			deleted += l.Counts.Deleted
		}
	}
	rep.Changed = deleted > 0
	if err != nil {
		if report.IsStop(err) {
			rep.Next = "rerun cleanup: it resumes from the saved checkpoint"
		}
		return err
	}
	if deleted > 0 {
		rep.Outcome = report.OutcomeCleaned
		rep.Msg = fmt.Sprintf("removed %d legacy keys whose copies verified", deleted)
	} else {
		rep.Outcome = report.OutcomeNothingToClean
		rep.Msg = "nothing to clean"
	}
	return nil
}

// Unlock removes the lock whoever holds it.
func (r *Runner) Unlock(ctx context.Context, rep *report.Report) error {
	if r.Locker == nil {
		return report.E(report.CodeConfig, "unlock needs Redis: the lock lives there")
	}
	removed, err := r.Locker.ForceUnlock(ctx)
	if err != nil {
		return err
	}
	if removed == nil {
		rep.Outcome = report.OutcomeNoLock
		rep.Msg = "no lock was held"
		rep.Lock = nil
		if l, err := r.Locker.Inspect(ctx); err == nil {
			rep.Lock = l
		}
		return nil
	}
	removed.State = "removed"
	rep.Lock = removed
	rep.Changed = true
	rep.Outcome = report.OutcomeUnlocked
	who := "a lock not written by this tool"
	if h := removed.Holder; h != nil {
		who = fmt.Sprintf("the lock of run %s (%s on %s, pid %d, since %s)", h.RunID, h.Command, h.Host, h.PID, h.StartedAt)
	}
	rep.Msg = "removed " + who
	return nil
}

// Describe is a one-line summary for logs and /dev/termination-log.
func Describe(rep *report.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "outpost migrate %s: %s (exit %d)", rep.Command, rep.Outcome, rep.ExitCode)
	if rep.Msg != "" && rep.Msg != rep.Outcome {
		b.WriteString(": " + rep.Msg)
	}
	if rep.Error != nil {
		fmt.Fprintf(&b, " [%s]", rep.Error.Code)
	}
	return b.String()
}
