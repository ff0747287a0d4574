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

func (p *Phase) checkFence(ctx context.Context, run *batch.Run) error {
	if run != nil && run.Fence != nil {
		return run.Fence.Check(ctx)
	}
	return nil
}

// countLine puts the counts and issues t holds for name on name's line, and
// returns the line and the counts.
func countLine(lines []report.Migration, name string, t *scan.Tally) (*report.Migration, report.Counts) {
	l := &lines[indexOf(lines, name)]
	c := t.Counts(name)
	l.Counts = &c
	l.Issues, l.IssuesTotal = t.Issues(name)
	return l, c
}

func indexOf(lines []report.Migration, name string) int {
	for i := range lines {
		if lines[i].Name == name {
			return i
		}
	}
	panic("redisphase: no line for " + name)
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
