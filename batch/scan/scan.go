// Package scan walks a Redis keyspace in SCAN-cursor chunks and hands each
// chunk to a step, on a standalone server or on every master of a cluster
// (concurrently, with shared cancellation), saving a checkpoint per node after
// every chunk whose writes all succeeded.
//
// Facts it is built on (see shared/spec/batch-engine.md): a full SCAN
// iteration returns every key present from its start to its end, perhaps more
// than once, so steps must be idempotent; a cursor is valid only against the
// same server process, so a checkpoint stores the node id and the server's
// run_id beside the cursor and a node whose run_id or id changed is scanned
// again from 0; SCAN on a cluster is per node, so every master is scanned
// through ForEachMaster, and the per-node client is used only for SCAN (it
// does not follow MOVED): steps read and write through the cluster client.
package scan

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// Tuning: defaults and limits of the chunking knobs, defined here once and
// used by the flags (--scan-count, --parallel, --window), the Redis phase and
// the executor. The defaults were measured with the benchmark in cmd/outpost
// (README, Performance): chunks of about 2000 keys, two in flight per node,
// each processed as 4 concurrent parts, keep Redis busy while the client
// decodes one chunk's replies; a crash repeats at most two chunks (~4000
// keys) per node. One chunk of 4000 in flight left Redis idle ~20% of the
// apply pass.
const (
	DefaultCount    = 2000 // SCAN COUNT hint: about the keys per chunk and per checkpoint
	MaxCount        = 100_000
	DefaultParallel = 4 // parts of a chunk processed at once
	MaxParallel     = 64
	DefaultWindow   = 2 // chunks per node in flight
	MaxWindow       = 16
)

// CheckTuning refuses knob values outside their limits.
func CheckTuning(count int64, parallel, window int) error {
	if count < 1 || count > MaxCount || parallel < 1 || parallel > MaxParallel || window < 1 || window > MaxWindow {
		return report.E(report.CodeUsage, "--scan-count must be 1..%d, --parallel 1..%d and --window 1..%d", MaxCount, MaxParallel, MaxWindow)
	}
	return nil
}

// Spec says which keys a pass walks.
type Spec struct {
	// Match is the SCAN MATCH pattern; use EscapeGlob on literal parts.
	Match string
	// Type is the SCAN TYPE filter ("hash"); empty for every type.
	Type string
	// Count is the COUNT hint; 0 means DefaultCount.
	Count int64
}

// Step processes one chunk of keys. It must be idempotent: after a crash
// the chunk after the last checkpoint is processed again. It reads and
// writes through its own client (the cluster client on a cluster), records
// per-key outcomes in t, and returns an error only when the store itself
// failed (the pass then stops without moving the checkpoint).
type Step func(ctx context.Context, keys []string, t *Tally) error

// Executor runs passes over a keyspace. One Executor is used by one
// goroutine; the nodes of a pass are scanned concurrently inside it.
type Executor struct {
	Client redis.UniversalClient
	Spec   Spec
	// Store saves checkpoints; nil runs without them (plan, verify).
	Store *Store
	// Name names the checkpoint ("apply", "cleanup").
	Name string
	// Fingerprint says what the pass does (the migration set); a checkpoint
	// saved with another fingerprint is not resumed.
	Fingerprint string
	// RunID is this invocation's id, saved with checkpoints.
	RunID  string
	Events progress.Sink
	// Label names the work in events (the migrations of the pass).
	Label string
	// Stop, when it returns an error, stops the pass at the next safe point:
	// it is called before each chunk's step, when the previous chunk's
	// checkpoint is saved. Pass then returns that error once every node
	// has reached its safe point.
	Stop func() error
	// TotalEstimate is the number of keys events compute the ETA against;
	// 0 means the masters' DBSIZE when the pass starts (no estimate with a
	// Limit).
	TotalEstimate int64
	// EventEvery throttles chunk and checkpoint events per node; 0 = 1s.
	EventEvery time.Duration
	// Limit stops the pass once this many keys were scanned in all (a
	// sample); 0 = no limit.
	Limit int64
	// Parallel splits each chunk into this many parts that the step
	// processes concurrently (steps must allow it: they are idempotent per
	// key and write their tallies under a lock). The chunk stays the unit
	// of the checkpoint. 0 or 1: one part.
	Parallel int
	// Fence, when set, is checked before each chunk's step and handed to
	// the step in its context (see CheckFence): a run that lost its lease
	// writes nothing more. Nil for read-only passes.
	Fence Fence
	// Window is how many chunks of a node are worked on at once, so that
	// Redis is not idle while the tool decodes one chunk's replies and
	// builds its writes. Chunks are committed (checkpoint, counts, events)
	// in SCAN order, each once it and every chunk before it succeeded, so
	// a crash repeats at most Window chunks per node. 0 or 1: one.
	Window int
}

// Result is what a pass did.
type Result struct {
	Tally *Tally
	Nodes []report.NodeProgress
	// Resumed: at least one node continued from a saved cursor or was
	// already done.
	Resumed bool
	// TopologyChanged: the cluster's masters or slots moved during the pass,
	// or were moving at its start or end (see Topo.Settled), so keys may
	// have been missed; run another pass. TopologyWhy says what moved.
	TopologyChanged bool
	TopologyWhy     string
	// Complete: every node reached cursor 0 (false when stopped or limited).
	Complete bool
}

// maxRestartsPerNode bounds how often one pass rescans a node whose server
// process changed under it (a restart or failover each time): a server
// that keeps restarting is an outage, not something to loop on.
const maxRestartsPerNode = 3

// stopError marks the error of Executor.Stop: the node stopped at a safe
// point, so the pass lets the other nodes reach theirs instead of
// cancelling the chunks they are working on.
type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }

// passState is what the nodes of one pass share for progress events.
type passState struct {
	started  time.Time
	estimate int64
	// now: keys scanned by this invocation; overall: also those counted
	// by the checkpoint it resumed from.
	now, overall atomic.Int64
}

// Pass walks every master once (resuming from the checkpoint when it
// matches) and calls step on each non-empty chunk.
//
// Nodes are scanned concurrently, up to Window chunks at a time each (the
// next SCAN is prefetched while the step works), and a node's checkpoint
// moves past a chunk only after the step returned nil for it and for every
// chunk before it, so a crash repeats at most Window chunks per node. A
// store error on one node cancels the others; a stop (Executor.Stop) does
// not: every node finishes the chunks in hand, saves its checkpoint and
// stops, and Pass returns the stop's error.
func (e *Executor) Pass(ctx context.Context, step Step) (*Result, error) {
	if e.Events == nil {
		e.Events = progress.Nop
	}
	ctx = WithFence(ctx, e.Fence)
	count := e.Spec.Count
	if count <= 0 {
		count = DefaultCount
	}
	nodes, err := Nodes(ctx, e.Client)
	if err != nil {
		return nil, err
	}
	topo0, err := Topology(ctx, e.Client)
	if err != nil {
		return nil, err
	}
	saved, err := e.resume(ctx, topo0)
	if err != nil {
		return nil, err
	}
	ps := &passState{started: time.Now(), estimate: e.TotalEstimate}
	if ps.estimate <= 0 && e.Limit == 0 {
		ps.estimate = estimate(ctx, nodes)
	}
	res := &Result{Tally: NewTally(), Nodes: make([]report.NodeProgress, len(nodes)), Complete: true}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	var resMu sync.Mutex
	for i, n := range nodes {
		start, nodeTally := res.startNode(i, n, saved, ps)
		if res.Nodes[i].Done {
			res.Tally.Merge(nodeTally)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.scanNode(ctx, n, start, uint64(count), step, nodeTally, &res.Nodes[i], ps)
			resMu.Lock()
			res.Tally.Merge(nodeTally)
			if !res.Nodes[i].Done {
				res.Complete = false
			}
			resMu.Unlock()
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				var stop stopError
				if !errors.As(err, &stop) {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		var stop stopError
		if errors.As(firstErr, &stop) {
			return res, stop.err
		}
		return res, firstErr
	}
	topo1, err := Topology(ctx, e.Client)
	if err != nil {
		return res, err
	}
	res.TopologyChanged, res.TopologyWhy = topologyMoved(topo0, topo1)
	return res, nil
}

// resume loads the pass's checkpoint when it was saved for this migration
// set on this settled topology (else clears it) and records this run in its
// meta. Nil without a Store or a usable checkpoint.
func (e *Executor) resume(ctx context.Context, topo0 Topo) (*Saved, error) {
	if e.Store == nil {
		return nil, nil
	}
	saved, err := e.Store.Load(ctx, e.Name)
	if err != nil {
		return nil, err
	}
	if saved != nil && (saved.Meta.Fingerprint != e.Fingerprint || saved.Meta.Topology != topo0.Fingerprint || !topo0.Settled) {
		progress.Infof(e.Events, "ignoring checkpoint %q: it was saved for %q on another topology or migration set", e.Name, saved.Meta.Fingerprint)
		saved = nil
	}
	meta := Meta{Fingerprint: e.Fingerprint, Topology: topo0.Fingerprint, RunID: e.RunID, UpdatedAt: now()}
	if saved != nil {
		meta.StartedAt = saved.Meta.StartedAt
		meta.ResumedBy = e.RunID
	} else {
		meta.StartedAt = meta.UpdatedAt
		if err := e.Store.Clear(ctx, e.Name); err != nil {
			return nil, err
		}
	}
	return saved, e.Store.SaveMeta(ctx, e.Name, meta)
}

// startNode sets res.Nodes[i] to where node n starts: its saved cursor and
// counts when the checkpoint has it for the same server process, else 0.
// It returns the cursor and the node's tally so far.
func (res *Result) startNode(i int, n Node, saved *Saved, ps *passState) (uint64, *Tally) {
	np := report.NodeProgress{Node: n.ID, Addr: n.Addr, RunID: n.RunID, Cursor: "0"}
	start := uint64(0)
	nodeTally := NewTally()
	if sn, ok := saved.node(n.ID); ok {
		c, perr := strconv.ParseUint(sn.Cursor, 10, 64)
		if n.RunID != "" && sn.ServerRunID == n.RunID && perr == nil {
			start = c
			np.ResumedFrom, np.Scanned, np.Done, np.Cursor = sn.Cursor, sn.Scanned, sn.Done, sn.Cursor
			for l, cnt := range sn.Counts {
				nodeTally.Add(l, func(d *report.Counts) { addCounts(d, cnt) })
			}
			ps.overall.Add(sn.Scanned)
			res.Resumed = true
		} else {
			// A new server process (restart, failover): its hash seed
			// differs, so the old cursor would skip keys.
			np.Restarted = true
		}
	}
	res.Nodes[i] = np
	return start, nodeTally
}

// topologyMoved says whether keys may have changed node between topology
// reads a and b, and why.
func topologyMoved(a, b Topo) (bool, string) {
	switch {
	case !a.Settled:
		return true, "at the start of the pass: " + a.Why
	case !b.Settled:
		return true, "at the end of the pass: " + b.Why
	case a.Fingerprint != b.Fingerprint:
		return true, "the slot map changed during the pass"
	}
	return false, ""
}

// KeyCount is the number of keys on the masters (the sum of their DBSIZE).
func KeyCount(ctx context.Context, nodes []Node) (int64, error) {
	var total int64
	for _, n := range nodes {
		v, err := n.client.DBSize(ctx).Result()
		if err != nil {
			return 0, rediserr.Classify(err, "DBSIZE "+n.Addr)
		}
		total += v
	}
	return total, nil
}

// estimate is what a pass without MATCH would scan (KeyCount). It only
// feeds progress events (ETA), so a failure leaves it unknown (0) rather
// than failing the pass.
func estimate(ctx context.Context, nodes []Node) int64 {
	n, _ := KeyCount(ctx, nodes)
	return n
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// EscapeGlob escapes the characters SCAN MATCH treats specially, so that a
// deployment id is matched literally.
func EscapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
