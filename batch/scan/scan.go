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
	"fmt"
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
	var saved *Saved
	if e.Store != nil {
		if saved, err = e.Store.Load(ctx, e.Name); err != nil {
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
		if err := e.Store.SaveMeta(ctx, e.Name, meta); err != nil {
			return nil, err
		}
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
		np := report.NodeProgress{Node: n.ID, Addr: n.Addr, RunID: n.RunID, Cursor: "0"}
		start := uint64(0)
		nodeTally := NewTally()
		if saved != nil {
			if sn, ok := saved.Nodes[n.ID]; ok {
				c, perr := strconv.ParseUint(sn.Cursor, 10, 64)
				if n.RunID != "" && sn.ServerRunID == n.RunID && perr == nil {
					start = c
					np.ResumedFrom = sn.Cursor
					np.Scanned = sn.Scanned
					np.Done = sn.Done
					np.Cursor = sn.Cursor
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
		}
		res.Nodes[i] = np
		if np.Done {
			res.Tally.Merge(nodeTally)
			continue
		}
		wg.Add(1)
		go func(i int, n Node, start uint64, nodeTally *Tally) {
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
		}(i, n, start, nodeTally)
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

type chunk struct {
	keys []string
	next uint64
	err  error
}

// scanNode walks one master from cursor to the end, restarting from 0 when
// the server process changed under it.
func (e *Executor) scanNode(ctx context.Context, n Node, cursor, count uint64, step Step, t *Tally, np *report.NodeProgress, ps *passState) error {
	for restarts := 0; ; restarts++ {
		if err := e.walk(ctx, n, cursor, count, step, t, np, ps); err != nil || !np.Done {
			return err
		}
		if n.RunID == "" {
			return nil
		}
		// go-redis silently reconnects and retries a command after a
		// network error, so a server restarted in the middle of the walk
		// may have been handed a cursor of its predecessor, which skips
		// keys: a node is done only if the process that answered the last
		// SCAN is the one that answered the first.
		info, err := n.client.Info(ctx, "server").Result()
		if err != nil {
			return rediserr.Classify(err, "INFO server on "+n.Addr)
		}
		runID := infoField(info, "run_id")
		if runID == n.RunID {
			return nil
		}
		if restarts >= maxRestartsPerNode {
			return report.E(report.CodeTemporary, "the Redis server at %s restarted %d times during one pass; try again when it is stable", n.Addr, restarts+1).With("node", n.ID)
		}
		progress.Warnf(e.Events, "the Redis server at %s restarted during the pass (run_id %s, was %s): scanning it again from 0", n.Addr, runID, n.RunID)
		n.RunID = runID
		np.RunID = runID
		np.Restarted = true
		np.Done = false
		np.Cursor = "0"
		cursor = 0
	}
}

// walk scans n from cursor until cursor 0, a stop, the limit or an error,
// chunk by chunk: SCAN (prefetched), step, checkpoint, event.
func (e *Executor) walk(ctx context.Context, n Node, cursor, count uint64, step Step, t *Tally, np *report.NodeProgress, ps *passState) error {
	// Prefetch: the next SCAN runs while the step works on this chunk. The
	// channel's small buffer bounds memory to a few chunks per node.
	chunks := make(chan chunk, 1)
	scanCtx, stopScan := context.WithCancel(ctx)
	defer stopScan()
	go func() {
		defer close(chunks)
		c := cursor
		for {
			keys, next, err := n.client.ScanType(scanCtx, c, e.Spec.Match, int64(count), e.Spec.Type).Result()
			select {
			case chunks <- chunk{keys: keys, next: next, err: err}:
			case <-scanCtx.Done():
				return
			}
			if err != nil || next == 0 {
				return
			}
			c = next
		}
	}()
	every := e.EventEvery
	if every == 0 {
		every = time.Second
	}
	var lastEvent time.Time
	// commit records a chunk whose step has succeeded: its counts, the
	// position, the checkpoint, an event. It returns true when the walk is
	// over (cursor 0 or limit). A chunk's counts join the pass's only here,
	// so a checkpoint never counts work of a chunk after it, which a
	// resumed run does again.
	commit := func(ch chunk, counts *Tally) (bool, error) {
		t.Merge(counts)
		np.Scanned += int64(len(ch.keys))
		np.Cursor = strconv.FormatUint(ch.next, 10)
		np.Done = ch.next == 0
		if e.Store != nil {
			if err := e.Store.SaveNode(ctx, e.Name, SavedNode{
				Node: n.ID, Addr: n.Addr, ServerRunID: n.RunID, Cursor: np.Cursor, Done: np.Done,
				Scanned: np.Scanned, Counts: t.snapshot(), RunID: e.RunID, UpdatedAt: now(),
			}); err != nil {
				return true, err
			}
		}
		ps.now.Add(int64(len(ch.keys)))
		ps.overall.Add(int64(len(ch.keys)))
		if time.Since(lastEvent) >= every || np.Done {
			lastEvent = time.Now()
			e.emitChunk(n, np, t, ps)
		}
		return np.Done || (e.Limit > 0 && ps.now.Load() >= e.Limit), nil
	}
	// Up to Window chunks are worked on at once; they are committed in
	// SCAN order, so a saved position is always one before which every
	// chunk's writes succeeded.
	window := e.Window
	if window <= 0 {
		window = DefaultWindow
	}
	type job struct {
		ch    chunk
		tally *Tally
		err   error
		done  chan struct{}
	}
	var inflight []*job
	// drain waits for the chunks still in flight; when keep, it commits
	// those that succeeded, in order, up to the first that failed.
	drain := func(keep bool) error {
		var first error
		for _, j := range inflight {
			<-j.done
			if !keep || first != nil {
				continue
			}
			if j.err != nil {
				first = j.err
				continue
			}
			if _, err := commit(j.ch, j.tally); err != nil {
				first = err
			}
		}
		inflight = nil
		return first
	}
	source := chunks
	var stopErr error
	taken := 0 // chunks this node has started in this pass
	for {
		for source != nil && len(inflight) < window {
			ch, ok := <-source
			if !ok {
				source = nil
				break
			}
			if ch.err != nil {
				_ = drain(false)
				if cerr := context.Cause(ctx); cerr != nil {
					return cerr
				}
				return rediserr.Classify(ch.err, "SCAN on "+n.Addr)
			}
			// A safe point: everything before this chunk is done (and, in
			// a checkpointed pass, saved).
			if e.Stop != nil {
				if err := e.Stop(); err != nil && stopsBefore(err, taken) {
					stopErr = stopError{err}
					source = nil
					break
				}
			}
			j := &job{ch: ch, tally: NewTally(), done: make(chan struct{})}
			taken++
			inflight = append(inflight, j)
			if len(ch.keys) == 0 {
				close(j.done)
				continue
			}
			go func() {
				defer close(j.done)
				j.err = e.runStep(ctx, step, ch.keys, j.tally)
			}()
		}
		if len(inflight) == 0 {
			break
		}
		j := inflight[0]
		inflight = inflight[1:]
		<-j.done
		if j.err != nil {
			_ = drain(false)
			return j.err
		}
		over, err := commit(j.ch, j.tally)
		if err != nil {
			_ = drain(false)
			return err
		}
		if over {
			// Chunks past the limit already worked on are counted too.
			return drain(true)
		}
	}
	if stopErr != nil {
		return stopErr
	}
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	return ctx.Err()
}

// stopsBefore says whether a stop request ends the node's walk before its
// next chunk. --max-runtime (a TIMEOUT) waits until the node has done one
// chunk in this pass, so that every rerun advances every node's checkpoint
// and a retry loop on exit 75 converges however short the limit (issue
// #22: `--max-runtime 1ms` did nothing, forever). Signals and a lost lease
// stop at once.
func stopsBefore(err error, taken int) bool {
	return taken > 0 || report.CodeOf(err) != report.CodeTimeout
}

// emitChunk reports a node's position. Rate and ETA are the pass's (all
// nodes together): remaining keys are estimated from DBSIZE (or
// Executor.TotalEstimate), an upper bound when MATCH skips keys and a lower
// one when the pass creates keys that it then scans.
func (e *Executor) emitChunk(n Node, np *report.NodeProgress, t *Tally, ps *passState) {
	elapsed := time.Since(ps.started)
	sum := t.Sum()
	sum.Scanned = np.Scanned
	overall := ps.overall.Load()
	// Counts sum the labels (the migrations of a fused pass) with Scanned
	// the node's keys; fields.by_label has each label's own counts.
	ev := progress.Event{Event: progress.ChunkDone, Level: "info", Migration: e.Label, Node: n.ID, Cursor: np.Cursor,
		Msg: fmt.Sprintf("%s: %d keys scanned on %s", e.Label, np.Scanned, n.Addr), Counts: &sum, ElapsedMS: elapsed.Milliseconds(),
		Fields: map[string]any{"by_label": t.snapshot()}}
	if ps.estimate > 0 {
		ev.TotalEstimate = max(ps.estimate, overall)
	}
	if s := elapsed.Seconds(); s > 0 {
		ev.RatePerS = float64(ps.now.Load()) / s
		if ps.estimate > overall && ev.RatePerS > 0 {
			ev.ETAS = float64(ps.estimate-overall) / ev.RatePerS
		}
	}
	e.Events.Emit(ev)
	if e.Store != nil {
		e.Events.Emit(progress.Event{Event: progress.CheckpointSaved, Level: "info", Migration: e.Label, Node: n.ID, Cursor: np.Cursor,
			Msg: fmt.Sprintf("checkpoint %s saved at cursor %s on %s", e.Name, np.Cursor, n.Addr)})
	}
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

// minPart is the smallest part worth a goroutine of its own: below it the
// pipelines get too short to pay for themselves.
const minPart = 64

// runStep calls step on keys, split into up to e.Parallel parts processed
// concurrently; it returns the first error after every part has ended.
func (e *Executor) runStep(ctx context.Context, step Step, keys []string, t *Tally) error {
	if err := CheckFence(ctx); err != nil {
		return err
	}
	parts := min(e.Parallel, len(keys)/minPart)
	if parts <= 1 {
		return step(ctx, keys, t)
	}
	size := (len(keys) + parts - 1) / parts
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for i := 0; i < parts; i++ {
		lo, hi := i*size, min((i+1)*size, len(keys))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func(i int, part []string) {
			defer wg.Done()
			errs[i] = step(ctx, part, t)
		}(i, keys[lo:hi])
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
