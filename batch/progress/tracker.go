package progress

import (
	"sort"
	"strings"
	"time"
)

// Tracker sums the per-node positions that chunk_done and batch_done
// events carry into one view of the running pass, for a progress display
// or periodic progress lines. It is not safe for concurrent use.
type Tracker struct {
	migration string
	unit      string
	nodes     map[string]int64
	total     int64
	started   time.Time
	firstDone int64
	pct       float64
	seen      time.Time
}

// Snapshot is what a display shows.
type Snapshot struct {
	Label string // short: "001+002+003", "sql 000005", "verify"
	Unit  string // keys | rows
	Done  int64
	// Total is the estimate (0: unknown). It may grow while a pass runs
	// (a pass scans keys it creates); Pct never goes backwards.
	Total   int64
	Pct     float64 // 0..1; -1 when there is no total
	Rate    float64 // per second; 0 until it means something
	ETA     time.Duration
	Elapsed time.Duration
	Nodes   []NodeDone // per node, on a cluster
}

// NodeDone is one node's count.
type NodeDone struct {
	Node string
	Done int64
}

// RateAfter is how long a pass runs before its rate is shown: the first
// chunks' rates say more about timers than about throughput.
const RateAfter = time.Second

// Update takes a progress event; it reports false for events that are not
// per-chunk progress. A new migration label starts a new view; so does
// pass_started, whose time is when the pass's clock starts.
func (t *Tracker) Update(e Event, now time.Time) bool {
	if e.Event == PassStarted {
		t.begin(e.Migration, "keys", now)
		return false
	}
	if e.Event != ChunkDone && e.Event != BatchDone {
		return false
	}
	if t.nodes == nil || t.migration != e.Migration {
		unit := "keys"
		if e.Event == BatchDone {
			unit = "rows"
		}
		t.begin(e.Migration, unit, now)
	}
	if e.Counts != nil {
		n := e.Counts.Scanned
		if e.Event == BatchDone {
			n = e.Counts.Rows
		}
		t.nodes[e.Node] = n
	}
	if t.firstDone < 0 {
		t.firstDone = t.done()
	}
	if e.TotalEstimate > t.total {
		t.total = e.TotalEstimate
	}
	t.seen = now
	return true
}

func (t *Tracker) begin(migration, unit string, now time.Time) {
	*t = Tracker{migration: migration, unit: unit, nodes: map[string]int64{}, started: now, pct: -1, firstDone: -1}
}

// Active says whether a pass is being tracked.
func (t *Tracker) Active() bool { return len(t.nodes) > 0 }

// Reset forgets the pass (it ended).
func (t *Tracker) Reset() { *t = Tracker{} }

func (t *Tracker) done() int64 {
	var sum int64
	for _, v := range t.nodes {
		sum += v
	}
	return sum
}

// Snapshot is the view at now.
func (t *Tracker) Snapshot(now time.Time) Snapshot {
	s := Snapshot{Label: ShortLabel(t.migration), Unit: t.unit, Done: t.done(), Total: t.total, Pct: -1, Elapsed: now.Sub(t.started)}
	if s.Total > 0 {
		p := float64(s.Done) / float64(max(s.Total, s.Done))
		// The estimate grows as a pass scans the copies it writes: hold the
		// percentage rather than let it go backwards, and never claim 100%
		// before the pass says it is done.
		p = min(max(p, t.pct), 0.99)
		t.pct = p
		s.Pct = p
	}
	// The rate counts what this process did since the pass started, less
	// the first chunk reported (so a resumed run's earlier keys are not
	// taken for this run's speed): never more than the keys scanned so far
	// per second elapsed.
	if s.Elapsed >= RateAfter && s.Done > t.firstDone {
		s.Rate = float64(s.Done-t.firstDone) / s.Elapsed.Seconds()
		if s.Total > s.Done {
			s.ETA = time.Duration(float64(s.Total-s.Done) / s.Rate * float64(time.Second))
		}
	}
	if len(t.nodes) > 1 {
		for n, d := range t.nodes {
			s.Nodes = append(s.Nodes, NodeDone{Node: n, Done: d})
		}
		sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Node < s.Nodes[j].Node })
	}
	return s
}

// ShortLabel shortens a pass's label for a display:
// "001_hash_tags+002_timestamps" → "001+002", "sql/000005_x" → "sql 000005",
// "confirm 001_hash_tags" → "confirm 001".
func ShortLabel(label string) string {
	prefix := ""
	if p, rest, ok := strings.Cut(label, " "); ok {
		prefix, label = p+" ", rest
	}
	if b, rest, ok := strings.Cut(label, "/"); ok {
		prefix, label = prefix+b+" ", rest
	}
	parts := strings.Split(label, "+")
	for i, p := range parts {
		if n, _, ok := strings.Cut(p, "_"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			parts[i] = n
		}
	}
	return prefix + strings.Join(parts, "+")
}
