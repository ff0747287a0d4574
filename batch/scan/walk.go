package scan

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

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

// walker is one node's walk: the chunks SCAN hands it, up to Window of them
// in flight, committed in SCAN order.
type walker struct {
	e        *Executor
	ctx      context.Context
	n        Node
	step     Step
	t        *Tally
	np       *report.NodeProgress
	ps       *passState
	every    time.Duration
	window   int
	source   <-chan chunk // nil once SCAN is over or a stop came
	inflight []*job
	taken    int   // chunks this node has started in this pass
	stopErr  error // the stop that ended the walk at a safe point
	last     time.Time
}

// job is a chunk in flight: its step runs in its own goroutine.
type job struct {
	ch    chunk
	tally *Tally
	err   error
	done  chan struct{}
}

// walk scans n from cursor until cursor 0, a stop, the limit or an error,
// chunk by chunk: SCAN (prefetched), step, checkpoint, event. Up to Window
// chunks are worked on at once; they are committed in SCAN order, so a
// saved position is always one before which every chunk's writes
// succeeded.
func (e *Executor) walk(ctx context.Context, n Node, cursor, count uint64, step Step, t *Tally, np *report.NodeProgress, ps *passState) error {
	scanCtx, stopScan := context.WithCancel(ctx)
	defer stopScan()
	w := &walker{e: e, ctx: ctx, n: n, step: step, t: t, np: np, ps: ps,
		every: e.EventEvery, window: e.Window, source: e.prefetch(scanCtx, n, cursor, count)}
	if w.every == 0 {
		w.every = time.Second
	}
	if w.window <= 0 {
		w.window = DefaultWindow
	}
	for {
		if err := w.fill(); err != nil {
			return err
		}
		if len(w.inflight) == 0 {
			break
		}
		over, err := w.commitNext()
		if err != nil {
			_ = w.drain(false)
			return err
		}
		if over {
			// Chunks past the limit already worked on are counted too.
			return w.drain(true)
		}
	}
	if w.stopErr != nil {
		return w.stopErr
	}
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	return ctx.Err()
}

// prefetch runs SCAN from cursor in its own goroutine, so that the next SCAN
// runs while the step works on this chunk. The channel's small buffer
// bounds memory to a few chunks per node.
func (e *Executor) prefetch(ctx context.Context, n Node, cursor, count uint64) <-chan chunk {
	chunks := make(chan chunk, 1)
	go func() {
		defer close(chunks)
		c := cursor
		for {
			keys, next, err := n.client.ScanType(ctx, c, e.Spec.Match, int64(count), e.Spec.Type).Result()
			select {
			case chunks <- chunk{keys: keys, next: next, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || next == 0 {
				return
			}
			c = next
		}
	}()
	return chunks
}

// fill starts chunks until Window are in flight, SCAN is over, or a stop
// ends the walk at the safe point before the next chunk.
func (w *walker) fill() error {
	for w.source != nil && len(w.inflight) < w.window {
		ch, ok := <-w.source
		if !ok {
			w.source = nil
			break
		}
		if ch.err != nil {
			_ = w.drain(false)
			if cerr := context.Cause(w.ctx); cerr != nil {
				return cerr
			}
			return rediserr.Classify(ch.err, "SCAN on "+w.n.Addr)
		}
		// A safe point: everything before this chunk is done (and, in a
		// checkpointed pass, saved).
		if w.e.Stop != nil {
			if err := w.e.Stop(); err != nil && stopsBefore(err, w.taken) {
				w.stopErr = stopError{err}
				w.source = nil
				break
			}
		}
		w.start(ch)
	}
	return nil
}

// start puts ch in flight: its step runs in a goroutine of its own.
func (w *walker) start(ch chunk) {
	j := &job{ch: ch, tally: NewTally(), done: make(chan struct{})}
	w.taken++
	w.inflight = append(w.inflight, j)
	if len(ch.keys) == 0 {
		close(j.done)
		return
	}
	go func() {
		defer close(j.done)
		j.err = w.e.runStep(w.ctx, w.step, ch.keys, j.tally)
	}()
}

// commitNext waits for the oldest chunk in flight and commits it; it
// returns true when the walk is over (cursor 0 or limit).
func (w *walker) commitNext() (bool, error) {
	j := w.inflight[0]
	w.inflight = w.inflight[1:]
	<-j.done
	if j.err != nil {
		return true, j.err
	}
	return w.commit(j.ch, j.tally)
}

// drain waits for the chunks still in flight; when keep, it commits those
// that succeeded, in order, up to the first that failed.
func (w *walker) drain(keep bool) error {
	var first error
	for _, j := range w.inflight {
		<-j.done
		if !keep || first != nil {
			continue
		}
		if j.err != nil {
			first = j.err
			continue
		}
		if _, err := w.commit(j.ch, j.tally); err != nil {
			first = err
		}
	}
	w.inflight = nil
	return first
}

// commit records a chunk whose step has succeeded: its counts, the position,
// the checkpoint, an event. It returns true when the walk is over (cursor 0
// or limit). A chunk's counts join the pass's only here, so a checkpoint
// never counts work of a chunk after it, which a resumed run does again.
func (w *walker) commit(ch chunk, counts *Tally) (bool, error) {
	e, np := w.e, w.np
	w.t.Merge(counts)
	np.Scanned += int64(len(ch.keys))
	np.Cursor = strconv.FormatUint(ch.next, 10)
	np.Done = ch.next == 0
	if e.Store != nil {
		if err := e.Store.SaveNode(w.ctx, e.Name, SavedNode{
			Node: w.n.ID, Addr: w.n.Addr, ServerRunID: w.n.RunID, Cursor: np.Cursor, Done: np.Done,
			Scanned: np.Scanned, Counts: w.t.snapshot(), RunID: e.RunID, UpdatedAt: now(),
		}); err != nil {
			return true, err
		}
	}
	w.ps.now.Add(int64(len(ch.keys)))
	w.ps.overall.Add(int64(len(ch.keys)))
	if time.Since(w.last) >= w.every || np.Done {
		w.last = time.Now()
		e.emitChunk(w.n, np, w.t, w.ps)
	}
	return np.Done || (e.Limit > 0 && w.ps.now.Load() >= e.Limit), nil
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
