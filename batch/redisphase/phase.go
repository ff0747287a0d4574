package redisphase

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Options tune a phase; the zero value is sensible.
type Options struct {
	// MaxPasses bounds apply passes (a pass is repeated when the cluster's
	// topology changed or the confirming pass still finds work). Default 3.
	MaxPasses int
	// CountLimit: plan counts exactly when the keyspace holds at most this
	// many keys, else estimates from a sample of SampleSize keys. Defaults
	// 200,000 and 20,000.
	CountLimit int64
	SampleSize int64
	// ScanCount is the SCAN COUNT hint (default scan.DefaultCount).
	ScanCount int64
	// Parallel is how many parts of a chunk are processed at once
	// (default scan.DefaultParallel).
	Parallel int
	// Window is how many chunks per node are worked on at once (default
	// scan.DefaultWindow); a crash repeats at most this many chunks per node.
	Window int
	// EventEvery throttles progress events (default 1s).
	EventEvery time.Duration
	// Examples is how many records of each kind plan shows before and after
	// (plan --show-examples); 0 shows none.
	Examples int
	// NoCheckpoints runs apply and cleanup without saving checkpoints, for
	// the benchmark that measures what checkpointing costs. A crash then
	// means starting over.
	NoCheckpoints bool
	// SkipMemoryCheck: apply goes on when the memory preflight says the
	// copies would not fit (the eviction watch stays on).
	SkipMemoryCheck bool
}

// Phase implements batch.Phase for Redis.
type Phase struct {
	c       redis.UniversalClient
	prefix  string
	lockKey string
	set     Set
	opts    Options
	closer  func() error
	// guard is the memory check of this apply, made by Preflight.
	guard *memoryGuard
}

var _ batch.Phase = (*Phase)(nil)

// New returns the Redis phase over client for the deployment whose key
// prefix is prefix; lockKey is the migration lock's key (checkpoints live in
// its hash slot). closer, if not nil, is called by Close.
func New(c redis.UniversalClient, prefix, lockKey string, set Set, opts Options, closer func() error) *Phase {
	if opts.MaxPasses <= 0 {
		opts.MaxPasses = 3
	}
	if opts.CountLimit <= 0 {
		opts.CountLimit = 200_000
	}
	if opts.SampleSize <= 0 {
		opts.SampleSize = 20_000
	}
	if opts.ScanCount <= 0 {
		opts.ScanCount = scan.DefaultCount
	}
	if opts.Parallel <= 0 {
		opts.Parallel = scan.DefaultParallel
	}
	if opts.Window <= 0 {
		opts.Window = scan.DefaultWindow
	}
	return &Phase{c: c, prefix: prefix, lockKey: lockKey, set: set, opts: opts, closer: closer}
}

// Backend implements batch.Phase.
func (p *Phase) Backend() string { return "redis" }

// Close implements batch.Phase.
func (p *Phase) Close() error {
	if p.closer != nil {
		return p.closer()
	}
	return nil
}

// StateKey is where Outpost reads a migration's state.
func (p *Phase) StateKey(name string) string { return p.prefix + "outpost:migration:" + name }

type state struct {
	status, appliedAt, reason string
}

func (s state) satisfied() bool { return s.status == "applied" || s.status == "not_applicable" }

func (p *Phase) readStates(ctx context.Context) (map[string]state, error) {
	pipe := p.c.Pipeline()
	cmds := map[string]*redis.MapStringStringCmd{}
	for _, m := range p.set.Migrations() {
		cmds[m.Name] = pipe.HGetAll(ctx, p.StateKey(m.Name))
	}
	_, _ = pipe.Exec(ctx)
	out := map[string]state{}
	for name, c := range cmds {
		v, err := c.Result()
		if err != nil {
			return nil, rediserr.Classify(err, "read migration state "+name)
		}
		out[name] = state{status: v["status"], appliedAt: v["applied_at"], reason: v["reason"]}
	}
	return out, nil
}

func (p *Phase) line(m Migration) report.Migration {
	return report.Migration{ID: "redis/" + m.Name, Backend: "redis", Name: m.Name, Description: m.Description,
		Checksum: report.Checksum(m.Name, m.Description)}
}

// lines is the state of every migration, as recorded (and, for not yet
// recorded non-applicable ones, as it would be recorded).
func (p *Phase) lines(ctx context.Context) ([]report.Migration, map[string]state, error) {
	states, err := p.readStates(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []report.Migration
	for _, m := range p.set.Migrations() {
		l := p.line(m)
		st := states[m.Name]
		switch {
		case st.satisfied():
			l.State = report.State(st.status)
			l.AppliedAt = st.appliedAt
			l.Reason = st.reason
		case m.NotApplicable != nil && m.NotApplicable(p.prefix) != "":
			l.State = report.StateNotApplicable
			l.Reason = m.NotApplicable(p.prefix) + " (recorded by the next apply)"
		default:
			l.State = report.StatePending
			if st.status != "" {
				l.Reason = "recorded status is " + st.status
			}
		}
		out = append(out, l)
	}
	return out, states, nil
}

func (p *Phase) store(f batch.Fence) *scan.Store {
	s := &scan.Store{Client: p.c, LockKey: p.lockKey}
	if f != nil {
		s.Writer = f
	}
	return s
}

// attachCheckpoint marks the lines of an unfinished run.
func (p *Phase) attachCheckpoint(ctx context.Context, lines []report.Migration, name string) error {
	saved, err := p.store(nil).Load(ctx, name)
	if err != nil || saved == nil {
		return err
	}
	members := strings.Split(saved.Meta.Fingerprint, "+")
	prog := progressOf(saved)
	var scanned int64
	done := 0
	for _, n := range prog.Nodes {
		scanned += n.Scanned
		if n.Done {
			done++
		}
	}
	for i := range lines {
		for _, m := range members {
			if lines[i].Name == m && lines[i].State != report.StateApplied {
				lines[i].State = report.StatePartial
				pr := prog
				lines[i].Progress = &pr
				lines[i].Resumable = true
				lines[i].Reason = fmt.Sprintf("an unfinished %s run %s stopped at %s after scanning %d keys (%d of %d nodes done); a rerun resumes it",
					name, saved.Meta.RunID, prog.UpdatedAt, scanned, done, len(prog.Nodes))
			}
		}
	}
	return nil
}

func progressOf(s *scan.Saved) report.Progress {
	pr := report.Progress{RunID: s.Meta.RunID, UpdatedAt: s.Meta.UpdatedAt}
	for _, n := range s.Nodes {
		pr.Nodes = append(pr.Nodes, report.NodeProgress{Node: n.Node, Addr: n.Addr, RunID: n.ServerRunID, Cursor: n.Cursor, Done: n.Done, Scanned: n.Scanned})
		if n.UpdatedAt > pr.UpdatedAt {
			pr.UpdatedAt = n.UpdatedAt
		}
	}
	return pr
}

// Status implements batch.Phase.
func (p *Phase) Status(ctx context.Context) ([]report.Migration, error) {
	lines, _, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	return lines, p.attachCheckpoint(ctx, lines, "apply")
}

func (p *Phase) dbsize(ctx context.Context) (int64, error) {
	nodes, err := scan.Nodes(ctx, p.c)
	if err != nil {
		return 0, err
	}
	return scan.KeyCount(ctx, nodes)
}

// Plan implements batch.Phase: pending migrations with the number of keys
// each would change, counted exactly on a small keyspace and estimated from
// a sample on a large one.
func (p *Phase) Plan(ctx context.Context) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	todo, done := p.pending(states, "")
	if len(todo) > 0 {
		size, err := p.dbsize(ctx)
		if err != nil {
			return lines, err
		}
		ex := p.executor(nil, "", nil)
		sampled := size > p.opts.CountLimit
		if sampled {
			ex.Limit = p.opts.SampleSize
			// One chunk at a time: a sample stops at its size.
			ex.Window = 1
			// Sample without MATCH so that the share of matching keys can be
			// scaled to the whole keyspace.
			ex.Spec.Match = ""
		}
		res, err := ex.Pass(ctx, p.set.Check(todo, done))
		if err != nil {
			return lines, err
		}
		var seen int64
		for _, n := range res.Nodes {
			seen += n.Scanned
		}
		for i := range lines {
			if !has(todo, lines[i].Name) {
				continue
			}
			c := res.Tally.Counts(lines[i].Name)
			est := &report.Estimate{Units: "keys", Value: c.Changed, Method: "counted",
				Note: fmt.Sprintf("%d keys to %s, %d already right and kept as they are", c.Changed, verbOf(lines[i].Name, p.set), c.Unchanged)}
			if sampled && seen > 0 {
				est = &report.Estimate{Units: "keys", Method: "sampled", Sampled: seen,
					Value: int64(float64(c.Changed) / float64(seen) * float64(size)),
					Note:  fmt.Sprintf("%d of %d sampled keys need work; scaled to %d keys", c.Changed, seen, size)}
			}
			lines[i].Estimate = est
			if lines[i].Name == todo[0] {
				others := &report.Others{}
				p.warnClients(ctx, progress.Nop, others)
				if len(others.Clients) > 0 {
					lines[i].Others = others
				}
			}
			lines[i].Issues, lines[i].IssuesTotal = res.Tally.Issues(lines[i].Name)
			if c.Failed > 0 {
				lines[i].Reason = fmt.Sprintf("%d keys cannot be converted (see issues); apply will report them and not mark the migration applied", c.Failed)
			}
		}
		if err := p.examples(ctx, lines, todo, done); err != nil {
			return lines, err
		}
		if err := p.planMemory(ctx, lines, todo, done); err != nil {
			return lines, err
		}
	}
	return lines, p.attachCheckpoint(ctx, lines, "apply")
}

// planMemory attaches the copies' memory impact to the line of the first
// copying migration.
func (p *Phase) planMemory(ctx context.Context, lines []report.Migration, todo, done []string) error {
	m, err := p.memoryImpact(ctx, todo, done)
	if err != nil || m == nil {
		return err
	}
	grows := p.growing(todo)
	for i := range lines {
		if lines[i].Name == grows[0] {
			lines[i].Memory = m
		}
	}
	return nil
}

// verbOf says what a migration does to the keys it counts: 001 creates
// copies, the others change keys in place.
func verbOf(name string, set Set) string {
	for _, m := range set.Migrations() {
		if m.Name == name && m.Copies {
			return "create (copies)"
		}
	}
	return "change in place"
}

// Exampler is implemented by sets that can show real records before and
// after their pending migrations (plan --show-examples).
type Exampler interface {
	// Examples returns a read-only step collecting up to n records of each
	// kind per migration of todo, and the function that returns them by
	// migration name.
	Examples(todo, done []string, n int) (scan.Step, func() map[string][]report.Example)
}

// exampleScanLimit bounds the keys plan reads to find examples: a keyspace
// where the pending migrations change nothing in the first keys shows
// fewer examples rather than a full pass.
const exampleScanLimit = 20_000

// examples attaches plan --show-examples records to the lines of todo.
func (p *Phase) examples(ctx context.Context, lines []report.Migration, todo, done []string) error {
	ex, ok := p.set.(Exampler)
	if !ok || p.opts.Examples <= 0 {
		return nil
	}
	step, result := ex.Examples(todo, done, p.opts.Examples)
	e := p.executor(nil, "", nil)
	e.Limit, e.Window = exampleScanLimit, 1
	if _, err := e.Pass(ctx, step); err != nil {
		return err
	}
	got := result()
	for i := range lines {
		lines[i].Examples = got[lines[i].Name]
	}
	return nil
}

// pending returns the applicable, unsatisfied migrations in order (up to
// target, when it names one of them) and the satisfied ones.
func (p *Phase) pending(states map[string]state, target string) (todo, done []string) {
	stop := false
	for _, m := range p.set.Migrations() {
		st := states[m.Name]
		switch {
		case st.satisfied():
			done = append(done, m.Name)
		case m.NotApplicable != nil && m.NotApplicable(p.prefix) != "":
		case !stop:
			todo = append(todo, m.Name)
		}
		if target != "" && matchesTarget(m.Name, target) {
			stop = true
		}
	}
	return todo, done
}

func matchesTarget(name, target string) bool {
	target = strings.TrimPrefix(target, "redis/")
	return name == target || strings.SplitN(name, "_", 2)[0] == target
}

// TargetKnown says whether target names one of this phase's migrations.
func (p *Phase) TargetKnown(target string) bool {
	for _, m := range p.set.Migrations() {
		if matchesTarget(m.Name, target) {
			return true
		}
	}
	return false
}

func (p *Phase) executor(run *batch.Run, name string, fence batch.Fence) *scan.Executor {
	ex := &scan.Executor{Client: p.c, Spec: p.set.Spec(), Name: name, EventEvery: p.opts.EventEvery, Events: progress.Nop, Parallel: p.opts.Parallel, Window: p.opts.Window}
	ex.Spec.Count = p.opts.ScanCount
	if run != nil {
		ex.RunID = run.ID
		ex.Events = run.Events
		ex.Stop = run.Stopped
	}
	if name != "" && !p.opts.NoCheckpoints {
		ex.Store = p.store(fence)
	}
	if f, ok := fence.(scan.Fence); ok && name != "" {
		ex.Fence = f
	}
	return ex
}

// Apply implements batch.Phase.
func (p *Phase) Apply(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	// Record the migrations that do not apply, as Outpost does.
	for i, m := range p.set.Migrations() {
		if states[m.Name].satisfied() || m.NotApplicable == nil || m.NotApplicable(p.prefix) == "" {
			continue
		}
		if err := p.checkFence(ctx, run); err != nil {
			return lines, err
		}
		now := time.Now().UTC().Format(time.RFC3339)
		reason := m.NotApplicable(p.prefix)
		if err := p.c.HSet(ctx, p.StateKey(m.Name), "status", "not_applicable", "checked_at", now, "reason", reason, "run_id", run.ID).Err(); err != nil {
			return lines, rediserr.Classify(err, "record "+m.Name)
		}
		lines[i].State, lines[i].Reason, lines[i].Counts = report.StateNotApplicable, reason, &report.Counts{}
		states[m.Name] = state{status: "not_applicable"}
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
	ex := p.executor(run, "apply", run.Fence)
	ex.Stop = guard.stop(run)
	// Writes outside the passes (the catch-up) are fenced too.
	ctx = scan.WithFence(ctx, ex.Fence)
	ex.Fingerprint = strings.Join(todo, "+")
	ex.Label = ex.Fingerprint
	for _, n := range todo {
		run.Emit(progress.Event{Event: progress.MigrationStarted, Migration: "redis/" + n, Msg: "applying redis/" + n})
	}
	others := &report.Others{}
	p.warnClients(ctx, run.Events, others)
	o, wt, err := p.watchOthers(ctx, run)
	if err != nil {
		return lines, err
	}
	if wt != nil {
		defer func() { wt.UseOthers(nil); o.Close() }()
	}
	defer func() { lines[indexOf(lines, todo[0])].Others = others }()
	total := scan.NewTally()
	var confirm *scan.Tally
	var nodes []report.NodeProgress
	resumed := false
	for pass := 1; ; pass++ {
		run.Emit(progress.Event{Event: progress.PassStarted, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d over %s", pass, ex.Spec.Match)})
		res, err := ex.Pass(ctx, p.set.Apply(todo, done))
		if res != nil {
			total.Merge(res.Tally)
			nodes = res.Nodes
			resumed = resumed || res.Resumed
		}
		if err != nil {
			again, rerr := p.reshardAgain(ctx, run, pass, "", err)
			if !again {
				return p.unfinished(lines, todo, total, nodes, resumed, run, guard.explain(ctx, rerr))
			}
			continue
		}
		if res.TopologyChanged {
			again, rerr := p.reshardAgain(ctx, run, pass, res.TopologyWhy, nil)
			if !again {
				return p.unfinished(lines, todo, total, nodes, resumed, run, rerr)
			}
			if err := p.clear(ctx, ex, "apply"); err != nil {
				return lines, err
			}
			continue
		}
		cu, settled, err := p.settle(ctx, run, o, wt, todo, done, res, total, others)
		if err != nil {
			return p.unfinished(lines, todo, total, nodes, resumed, run, err)
		}
		if settled {
			confirm = cu
			run.Emit(progress.Event{Event: progress.PassDone, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d done; other clients changed %d keys during it (%d catch-up rounds)", pass, others.KeysChanged, others.Rounds)})
			break
		}
		// The confirming pass: read-only, finds what is left to do and the
		// keys that cannot be converted.
		others.ConfirmingPass = true
		// It keeps its own checkpoint (counts included), so that a run
		// stopped in it (--max-runtime, a signal, kill -9) resumes it
		// rather than starting it over: reruns on exit 75 converge.
		cex := p.executor(run, "confirm", run.Fence)
		cex.Stop = ex.Stop
		cex.Fingerprint = ex.Fingerprint
		cex.Label = "confirm " + ex.Label
		cres, err := cex.Pass(ctx, p.set.Check(todo, done))
		if err == nil && cres.TopologyChanged {
			err = reshardingError(cres.TopologyWhy, nil)
		}
		if err == nil {
			// Evictions since the last check would undo what the
			// confirming pass just confirmed.
			err = guard.check(ctx, true)
		}
		if err != nil {
			again, rerr := p.reshardAgain(ctx, run, pass, "", err)
			if !again {
				return p.unfinished(lines, todo, total, nodes, resumed, run, guard.explain(ctx, rerr))
			}
			if err := p.clear(ctx, ex, "apply"); err != nil {
				return lines, err
			}
			if err := p.clear(ctx, cex, "confirm"); err != nil {
				return lines, err
			}
			continue
		}
		if err := p.clear(ctx, cex, "confirm"); err != nil {
			return lines, err
		}
		confirm = cres.Tally
		left := int64(0)
		for _, n := range todo {
			left += confirm.Counts(n).Changed
		}
		run.Emit(progress.Event{Event: progress.PassDone, Pass: pass, Migration: ex.Label, Msg: fmt.Sprintf("pass %d done; confirming pass found %d keys left to change", pass, left)})
		if left == 0 || pass >= p.opts.MaxPasses {
			break
		}
		if err := p.clear(ctx, ex, "apply"); err != nil {
			return lines, err
		}
	}
	failedErr, err := p.record(ctx, run, lines, todo, total, confirm, &report.Progress{RunID: run.ID, Resumed: resumed, Nodes: nodes}, started)
	if err != nil {
		return lines, err
	}
	if err := p.clear(ctx, ex, "apply"); err != nil {
		return lines, err
	}
	return lines, failedErr
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

func (p *Phase) checkFence(ctx context.Context, run *batch.Run) error {
	if run != nil && run.Fence != nil {
		return run.Fence.Check(ctx)
	}
	return nil
}

func indexOf(lines []report.Migration, name string) int {
	for i := range lines {
		if lines[i].Name == name {
			return i
		}
	}
	panic("redisphase: no line for " + name)
}

// unfinished fills the lines of a run that stopped (signal, deadline, lost
// lease, store failure) and returns its error.
func (p *Phase) unfinished(lines []report.Migration, todo []string, total *scan.Tally, nodes []report.NodeProgress, resumed bool, run *batch.Run, err error) ([]report.Migration, error) {
	state := report.StopState(err)
	if isResharding(err) {
		state = report.StateInterrupted
	}
	for _, name := range todo {
		i := indexOf(lines, name)
		c := total.Counts(name)
		lines[i].Counts = &c
		lines[i].State = state
		lines[i].Resumable = true
		lines[i].Progress = &report.Progress{RunID: run.ID, Resumed: resumed, Nodes: nodes}
		lines[i].Issues, lines[i].IssuesTotal = total.Issues(name)
		lines[i].Reason = "stopped before the end; a rerun resumes from the saved checkpoint"
	}
	return lines, err
}

// Verify implements batch.Phase.
func (p *Phase) Verify(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range p.set.Migrations() {
		if states[m.Name].status == "applied" {
			applied = append(applied, m.Name)
		}
	}
	if len(applied) == 0 {
		return lines, nil
	}
	ex := p.executor(run, "", nil)
	ex.Label = "verify"
	if run.Sample > 0 {
		ex.Limit = int64(run.Sample)
		// The limit is checked between chunks: keep a chunk no larger
		// than the sample.
		if ex.Spec.Count <= 0 || ex.Spec.Count > ex.Limit {
			ex.Spec.Count = ex.Limit
		}
	}
	res, err := ex.Pass(ctx, p.set.Verify(applied))
	if err == nil && res.TopologyChanged {
		// Keys may have been missed: a verify that saw the cluster move
		// proves nothing.
		err = reshardingError(res.TopologyWhy, nil)
	}
	if err != nil {
		return lines, err
	}
	var drift int64
	for _, name := range applied {
		i := indexOf(lines, name)
		c := res.Tally.Counts(name)
		lines[i].Counts = &c
		lines[i].Issues, lines[i].IssuesTotal = res.Tally.Issues(name)
		if c.Failed > 0 {
			lines[i].State = report.StateDrift
			drift += c.Failed
		} else {
			lines[i].State = report.StateVerified
		}
		if run.Sample > 0 {
			lines[i].Reason = fmt.Sprintf("spot check of about %d keys", run.Sample)
		}
	}
	if drift > 0 {
		return lines, report.E(report.CodeDrift, "verify found %d redis records that do not match", drift)
	}
	return lines, nil
}

// Cleanup implements batch.Phase: removes legacy keys whose copies verify.
func (p *Phase) Cleanup(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	step, requires := p.set.Cleanup()
	for _, r := range requires {
		st := states[r]
		if st.status == "not_applicable" {
			i := indexOf(lines, r)
			lines[i].Reason = "nothing to clean: " + st.reason
			return lines, nil
		}
		if st.status != "applied" {
			return lines, report.E(report.CodeDataRefused, "cleanup refuses to run: redis/%s is not applied; run apply (and verify) first", r).With("migration", "redis/"+r)
		}
	}
	ex := p.executor(run, "cleanup", run.Fence)
	ex.Fingerprint = "cleanup"
	ex.Label = "cleanup"
	res, err := ex.Pass(ctx, step)
	if err == nil && res.TopologyChanged {
		// Legacy keys may have been missed: cleanup is not done.
		err = reshardingError(res.TopologyWhy, nil)
	}
	var failed int64
	for _, name := range requires {
		i := indexOf(lines, name)
		if res == nil {
			continue
		}
		c := res.Tally.Counts(name)
		lines[i].Counts = &c
		lines[i].Issues, lines[i].IssuesTotal = res.Tally.Issues(name)
		lines[i].Progress = &report.Progress{RunID: run.ID, Resumed: res.Resumed, Nodes: res.Nodes}
		failed += c.Failed
		if c.Deleted > 0 && c.Failed == 0 {
			lines[i].State = report.StateCleaned
		}
		if err != nil {
			lines[i].State = report.StateInterrupted
			lines[i].Resumable = true
		}
	}
	if err != nil {
		return lines, err
	}
	if err := p.clear(ctx, ex, "cleanup"); err != nil {
		return lines, err
	}
	if failed > 0 {
		return lines, report.E(report.CodeDrift, "cleanup kept %d legacy keys whose copies do not verify (see issues)", failed)
	}
	if err := p.c.HSet(ctx, p.StateKey(requires[0]), "cleaned_at", time.Now().UTC().Format(time.RFC3339), "cleaned_by", run.ID).Err(); err != nil {
		return lines, rediserr.Classify(err, "record cleanup")
	}
	return lines, nil
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (p *Phase) clear(ctx context.Context, ex *scan.Executor, name string) error {
	if ex.Store == nil {
		return nil
	}
	return ex.Store.Clear(ctx, name)
}
