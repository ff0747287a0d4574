package redisphase

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// Memory: a migration that copies keys (001) roughly doubles the tenant
// keyspace. Against a maxmemory limit, Redis then either refuses writes
// mid-run (noeviction: OOM replies) or, worse, evicts keys to make room
// (allkeys-*: records lost for good; volatile-*: records with a TTL and the
// migration lock itself). So apply estimates what the copies add before it
// writes anything and refuses when it would not fit, and while it runs it
// watches evicted_keys and stops at the first eviction (issue #22).

const (
	// memorySampleKeys is how many keys are scanned to estimate how many
	// the copies are (scaled to DBSIZE), memoryUsageKeys how many of them
	// are measured with MEMORY USAGE: bounded, whatever the keyspace.
	memorySampleKeys = 5000
	memoryUsageKeys  = 200
	// noEvictionMargin and evictionMargin are how much headroom the
	// estimate must leave: 10% when Redis would only refuse writes (the run
	// stops cleanly), 50% when it would evict data instead.
	noEvictionMargin = 1.1
	evictionMargin   = 1.5
	memorySlack      = 1 << 20
	// guardEvery bounds how often the guard reads INFO during a pass.
	guardEvery = 250 * time.Millisecond
)

// nodeMemory is what INFO says about one master's memory.
type nodeMemory struct {
	addr      string
	used, max int64
	policy    string
	evicted   int64
	keys      int64
}

func (n nodeMemory) evicts() bool { return n.policy != "" && n.policy != "noeviction" }

// forEachNode runs fn on every master (the one server when standalone).
func (p *Phase) forEachNode(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := p.c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", p.c)
}

// memoryInfo reads INFO memory, stats and keyspace of every master.
func (p *Phase) memoryInfo(ctx context.Context) ([]nodeMemory, error) {
	var mu sync.Mutex
	var out []nodeMemory
	err := p.forEachNode(ctx, func(ctx context.Context, c *redis.Client) error {
		// One section per INFO: Redis before 7 takes only one.
		var info string
		for _, section := range []string{"memory", "stats"} {
			v, err := c.Info(ctx, section).Result()
			if err != nil {
				return rediserr.Classify(err, "INFO "+section+" on "+c.Options().Addr)
			}
			info += v
		}
		keys, err := c.DBSize(ctx).Result()
		if err != nil {
			return rediserr.Classify(err, "DBSIZE on "+c.Options().Addr)
		}
		f := infoFields(info)
		n := nodeMemory{addr: c.Options().Addr, policy: f["maxmemory_policy"], keys: keys}
		n.used, _ = strconv.ParseInt(f["used_memory"], 10, 64)
		n.max, _ = strconv.ParseInt(f["maxmemory"], 10, 64)
		n.evicted, _ = strconv.ParseInt(f["evicted_keys"], 10, 64)
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	return out, err
}

func infoFields(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// growth is the estimate of what apply's copies add.
type growth struct {
	copies   int64 // keys that get a copy
	perKey   int64 // average MEMORY USAGE of a tenant key, bytes
	sampled  int64 // keys scanned for the copy count
	measured int64 // keys measured with MEMORY USAGE
}

func (g growth) bytes() int64 { return g.copies * g.perKey }

// estimateGrowth estimates the bytes the pending copying migrations add:
// the share of keys that need a copy in a bounded sample (the Check step,
// as plan does), scaled to DBSIZE, times the mean MEMORY USAGE of up to
// memoryUsageKeys tenant keys.
func (p *Phase) estimateGrowth(ctx context.Context, todo, done []string, grows []string) (growth, error) {
	var g growth
	size, err := p.dbsize(ctx)
	if err != nil || size == 0 {
		return g, err
	}
	ex := p.executor(nil, "", nil)
	ex.Limit, ex.Window, ex.Spec.Match = memorySampleKeys, 1, ""
	ex.Spec.Count = min(ex.Spec.Count, memorySampleKeys)
	res, err := ex.Pass(ctx, p.set.Check(todo, done))
	if err != nil {
		return g, err
	}
	for _, n := range res.Nodes {
		g.sampled += n.Scanned
	}
	var changed int64
	for _, name := range grows {
		changed = max(changed, res.Tally.Counts(name).Changed)
	}
	if g.sampled == 0 || changed == 0 {
		return g, nil
	}
	g.copies = changed
	if !res.Complete {
		g.copies = int64(float64(changed) / float64(g.sampled) * float64(size))
	}
	var mu sync.Mutex
	var total int64
	err = p.forEachNode(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, _, err := c.Scan(ctx, 0, p.set.Spec().Match, memoryUsageKeys*5).Result()
		if err != nil {
			return rediserr.Classify(err, "SCAN for MEMORY USAGE")
		}
		for _, k := range keys[:min(len(keys), memoryUsageKeys)] {
			n, err := c.MemoryUsage(ctx, k).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return rediserr.Classify(err, "MEMORY USAGE")
			}
			mu.Lock()
			total += n
			g.measured++
			mu.Unlock()
		}
		return nil
	})
	if err != nil || g.measured == 0 {
		return g, err
	}
	g.perKey = total / g.measured
	return g, nil
}

// growing returns the migrations of todo that copy keys.
func (p *Phase) growing(todo []string) []string {
	var out []string
	for _, m := range p.set.Migrations() {
		if m.Copies && has(todo, m.Name) {
			out = append(out, m.Name)
		}
	}
	return out
}

// memoryGuard is the in-run half: the state at the start, and the check
// the executor calls between chunks.
type memoryGuard struct {
	p      *Phase
	off    bool // the server does not report memory
	start  []nodeMemory
	need   int64
	mu     sync.Mutex
	last   time.Time
	failed error
}

// preflight estimates, compares with every master's free memory under
// maxmemory and its eviction policy, and refuses before any write when the
// copies would not fit (INSUFFICIENT_MEMORY, exit 65) unless skip. It
// returns the guard that watches the run.
func (p *Phase) preflight(ctx context.Context, run *batch.Run, todo, done []string) (*memoryGuard, error) {
	nodes, err := p.memoryInfo(ctx)
	if err != nil && report.CodeOf(err) == report.CodeUnknown {
		// A server that does not report memory (miniredis: "section
		// (memory) is not supported"): nothing to check against.
		progress.Warnf(run.Events, "memory check skipped: %v", err)
		return &memoryGuard{p: p, off: true}, nil
	}
	if err != nil {
		return nil, err
	}
	g := &memoryGuard{p: p, start: nodes}
	grows := p.growing(todo)
	limited := false
	for _, n := range nodes {
		limited = limited || n.max > 0
	}
	if len(grows) == 0 || !limited {
		return g, nil // nothing to copy, or no maxmemory to run into
	}
	est, err := p.estimateGrowth(ctx, todo, done, grows)
	if err != nil {
		return nil, err
	}
	g.need = est.bytes()
	var total int64
	for _, n := range nodes {
		total += n.keys
	}
	for _, n := range nodes {
		need := g.need
		if total > 0 && len(nodes) > 1 {
			need = int64(float64(g.need) * float64(n.keys) / float64(total))
		}
		err := memoryVerdict(n, need, est)
		if err == nil {
			continue
		}
		if p.opts.SkipMemoryCheck {
			progress.Warnf(run.Events, "%v (--skip-memory-check: going on)", err)
			continue
		}
		return nil, err
	}
	return g, nil
}

// Preflight implements batch.Preflighter: the memory check, before the SQL
// phase writes anything.
func (p *Phase) Preflight(ctx context.Context, run *batch.Run) error {
	if run.Target != "" && !p.TargetKnown(run.Target) {
		return nil // the target is a SQL migration: this phase will not run
	}
	_, states, err := p.lines(ctx)
	if err != nil {
		return err
	}
	todo, done := p.pending(states, run.Target)
	if len(todo) == 0 {
		return nil
	}
	p.guard, err = p.preflight(ctx, run, todo, done)
	return err
}

// memoryVerdict says whether need more bytes fit on node n.
func memoryVerdict(n nodeMemory, need int64, est growth) error {
	if n.max == 0 || need == 0 {
		return nil
	}
	margin := noEvictionMargin
	if n.evicts() {
		margin = evictionMargin
	}
	want := int64(float64(need)*margin) + memorySlack
	free := n.max - n.used
	if want <= free {
		return nil
	}
	what := "Redis would refuse writes (OOM) part-way through"
	if n.evicts() {
		what = fmt.Sprintf("its maxmemory-policy %s would evict keys (records lost for good, or the migration lock)", n.policy)
	}
	return report.E(report.CodeMemory,
		"not enough memory on %s for 001's copies: it uses %s of maxmemory %s (%s free) and the copies need about %s (%d keys x %s, estimated from %d sampled keys and MEMORY USAGE of %d); %s. Nothing was written: raise maxmemory to at least %d (CONFIG SET maxmemory %d), or free memory, then rerun apply (--skip-memory-check runs anyway)",
		n.addr, mib(n.used), mib(n.max), mib(max(free, 0)), mib(need), est.copies, mib(est.perKey), est.sampled, est.measured, what, n.used+want, n.used+want).
		With("node", n.addr).With("used_memory", n.used).With("maxmemory", n.max).With("maxmemory_policy", n.policy).
		With("estimated_bytes", need).With("free_bytes", free).With("required_maxmemory", n.used+want)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Stop is the executor's stop check: the run's own (signals, deadline)
// and, at most every guardEvery, the eviction watch.
func (g *memoryGuard) stop(run *batch.Run) func() error {
	return func() error {
		if err := g.check(context.Background(), false); err != nil {
			return err
		}
		return run.Stopped()
	}
}

// check reads evicted_keys on every master and fails once any grew since
// the start: Redis dropped keys to make room, perhaps ours.
func (g *memoryGuard) check(ctx context.Context, force bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.off || g.failed != nil || (!force && time.Since(g.last) < guardEvery) {
		return g.failed
	}
	g.last = time.Now()
	now, err := g.p.memoryInfo(ctx)
	if err != nil {
		return nil // the pass itself will meet an unreachable store
	}
	for _, n := range now {
		for _, s := range g.start {
			if s.addr == n.addr && n.evicted > s.evicted {
				g.failed = report.E(report.CodeMemory,
					"Redis on %s evicted %d keys during the run (maxmemory-policy %s, maxmemory %s): records (or the migration lock) may be gone; stopped. Set maxmemory-policy noeviction and raise maxmemory, check the data, then rerun apply: it resumes from the checkpoint",
					n.addr, n.evicted-s.evicted, n.policy, mib(n.max)).
					With("node", n.addr).With("evicted_keys", n.evicted-s.evicted).With("maxmemory_policy", n.policy).With("maxmemory", n.max).With("used_memory", n.used)
				return g.failed
			}
		}
	}
	return nil
}

// explain turns the error of a stopped run into a memory error when memory
// is why: an OOM reply (with how much more is needed), or evictions (a
// lost lock included: volatile-* policies evict keys with a TTL).
func (g *memoryGuard) explain(ctx context.Context, err error) error {
	if err == nil || g == nil || g.off {
		return err
	}
	if ev := g.check(ctx, true); ev != nil {
		return ev
	}
	if report.CodeOf(err) != report.CodeMemory {
		return err
	}
	now, ierr := g.p.memoryInfo(ctx)
	if ierr != nil {
		return err
	}
	var grown, used, maxmem int64
	for _, n := range now {
		used, maxmem = max(used, n.used), max(maxmem, n.max)
		for _, s := range g.start {
			if s.addr == n.addr {
				grown += n.used - s.used
			}
		}
	}
	more := max(g.need-grown, 0)
	need := used + int64(float64(more)*noEvictionMargin) + memorySlack
	e := &report.Error{Code: report.CodeMemory, Err: err, Message: fmt.Sprintf(
		"Redis ran out of memory (used %s of maxmemory %s); the copies still to write need about %s more. Raise maxmemory to at least %d (CONFIG SET maxmemory %d) or free memory, then rerun apply: it resumes from the checkpoint",
		mib(used), mib(maxmem), mib(more), need, need)}
	return e.With("used_memory", used).With("maxmemory", maxmem).With("estimated_more_bytes", more).With("required_maxmemory", need)
}

// memoryImpact is plan's view of the copies' memory: the same estimate the
// apply preflight makes, the servers' memory, and the preflight's verdict
// as a warning. A server that does not report memory gives no impact.
func (p *Phase) memoryImpact(ctx context.Context, todo, done []string) (*report.MemoryImpact, error) {
	grows := p.growing(todo)
	if len(grows) == 0 {
		return nil, nil
	}
	nodes, err := p.memoryInfo(ctx)
	if err != nil {
		if report.CodeOf(err) == report.CodeUnknown {
			return nil, nil
		}
		return nil, err
	}
	est, err := p.estimateGrowth(ctx, todo, done, grows)
	if err != nil {
		return nil, err
	}
	m := &report.MemoryImpact{EstimatedBytes: est.bytes(), Copies: est.copies, BytesPerKey: est.perKey, Sampled: est.sampled, Measured: est.measured}
	var total int64
	for _, n := range nodes {
		total += n.keys
		m.Nodes = append(m.Nodes, report.NodeMemory{Addr: n.addr, UsedBytes: n.used, MaxBytes: n.max, Policy: n.policy})
	}
	for _, n := range nodes {
		need := m.EstimatedBytes
		if total > 0 && len(nodes) > 1 {
			need = int64(float64(need) * float64(n.keys) / float64(total))
		}
		if err := memoryVerdict(n, need, est); err != nil {
			m.Warning = "apply would refuse: " + err.Error()
			break
		}
	}
	return m, nil
}
