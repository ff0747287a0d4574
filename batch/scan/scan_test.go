package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

const lockKey = ".outpost:migration_lock"

// fill writes n hashes named prefix+i (padded so that names are long) with
// pipelines, and returns their names.
func fill(t testing.TB, c redis.UniversalClient, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, 0, n)
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s%07d", prefix, i)
		keys = append(keys, k)
		pipe.HSet(ctx, k, "id", i)
		if pipe.Len() == 1000 {
			_, err := pipe.Exec(ctx)
			require.NoError(t, err)
		}
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	return keys
}

// recorder is a Step that records every key and every chunk it is handed.
type recorder struct {
	mu     sync.Mutex
	seen   map[string]int
	chunks [][]string
	// ctxErrs counts chunks handed over with a cancelled context.
	ctxErrs int
	// fail, when set, is called after a chunk is recorded (with the number
	// of chunks so far); its error is the step's.
	fail func(n int) error
	// delay makes every chunk take this long, as real work does.
	delay time.Duration
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

func (r *recorder) step(ctx context.Context, keys []string, t *scan.Tally) error {
	r.mu.Lock()
	for _, k := range keys {
		r.seen[k]++
	}
	r.chunks = append(r.chunks, append([]string(nil), keys...))
	n := len(r.chunks)
	fail := r.fail
	r.mu.Unlock()
	time.Sleep(r.delay)
	if ctx.Err() != nil {
		r.mu.Lock()
		r.ctxErrs++
		r.mu.Unlock()
	}
	t.Add("m", func(c *report.Counts) { c.Scanned += int64(len(keys)); c.Changed += int64(len(keys)) })
	if fail != nil {
		return fail(n)
	}
	return nil
}

func (r *recorder) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.seen))
	for k := range r.seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(keys []string) []string {
	out := append([]string(nil), keys...)
	sort.Strings(out)
	return out
}

func runID(t testing.TB, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(context.Background(), "server").Result()
	require.NoError(t, err)
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "run_id:"); ok {
			return v
		}
	}
	t.Fatal("no run_id in INFO server")
	return ""
}

func TestEveryKeyStandalone(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	want := fill(t, c, "tenant:", 25_000)
	// Noise that MATCH and TYPE must leave out.
	fill(t, c, "other:", 3_000)
	for i := 0; i < 2_000; i++ {
		require.NoError(t, c.Set(ctx, fmt.Sprintf("tenant:s%d", i), "x", 0).Err())
	}

	store := &scan.Store{Client: c, LockKey: lockKey}
	rec := newRecorder()
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Type: "hash", Count: 1000}, Store: store,
		Name: "apply", Fingerprint: "m", RunID: "r-1"}
	res, err := ex.Pass(ctx, rec.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.False(t, res.Resumed)
	require.False(t, res.TopologyChanged)
	require.Equal(t, sorted(want), rec.keys(), "every matching hash, and nothing else")
	require.Greater(t, len(rec.chunks), 10, "more keys than several chunks")

	require.Len(t, res.Nodes, 1)
	n := res.Nodes[0]
	require.Equal(t, "standalone", n.Node)
	require.Equal(t, srv.Addr, n.Addr)
	require.Equal(t, runID(t, c), n.RunID)
	require.True(t, n.Done)
	require.Equal(t, "0", n.Cursor)
	var handed int64
	for _, ch := range rec.chunks {
		handed += int64(len(ch))
	}
	require.Equal(t, handed, n.Scanned)
	require.Equal(t, handed, res.Tally.Counts("m").Scanned)

	// The checkpoint: node id, server run_id, cursor, counts, run id, time.
	saved, err := store.Load(ctx, "apply")
	require.NoError(t, err)
	require.NotNil(t, saved)
	require.Equal(t, "m", saved.Meta.Fingerprint)
	require.Equal(t, "r-1", saved.Meta.RunID)
	require.NotEmpty(t, saved.Meta.StartedAt)
	sn := saved.Nodes["standalone"]
	require.Equal(t, "standalone", sn.Node)
	require.Equal(t, runID(t, c), sn.ServerRunID)
	require.Equal(t, "0", sn.Cursor)
	require.True(t, sn.Done)
	require.Equal(t, handed, sn.Scanned)
	require.Equal(t, handed, sn.Counts["m"].Scanned)
	require.Equal(t, "r-1", sn.RunID)
	_, err = time.Parse(time.RFC3339Nano, sn.UpdatedAt)
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Exists(ctx, "{"+lockKey+"}:checkpoint:apply").Val(), "the checkpoint lives in the lock's slot")

	// A pass over a finished checkpoint does nothing and says so.
	again := newRecorder()
	res, err = ex.Pass(ctx, again.step)
	require.NoError(t, err)
	require.True(t, res.Resumed)
	require.True(t, res.Complete)
	require.Empty(t, again.chunks)
	require.Equal(t, "0", res.Nodes[0].ResumedFrom)
	require.Equal(t, handed, res.Tally.Counts("m").Scanned, "counts come back from the checkpoint")
}

// masterOf names the master that holds key.
func masterOf(t testing.TB, cc *redis.ClusterClient, key string) string {
	t.Helper()
	m, err := cc.MasterForKey(context.Background(), key)
	require.NoError(t, err)
	return m.Options().Addr
}

func TestCluster(t *testing.T) {
	cl := servertest.RedisCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	want := fill(t, cc, "tenant:", 15_000)
	// Every master holds keys.
	perMaster := map[string]int64{}
	var mu sync.Mutex
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		perMaster[m.Options().Addr] = n
		mu.Unlock()
		return err
	}))
	require.Len(t, perMaster, 3)
	for addr, n := range perMaster {
		require.Greater(t, n, int64(3_000), addr)
	}

	t.Run("ClusterClient.Scan misses keys", func(t *testing.T) {
		// The loop go-redis users write: the ClusterClient sends each SCAN
		// to one node (go-redis #1282), so a cursor loop sees one node's
		// keys (or a mix of cursors of different nodes), never all.
		seen := map[string]bool{}
		var cursor uint64
		for i := 0; i < 100_000; i++ {
			keys, next, err := cc.Scan(ctx, cursor, "tenant:*", 1000).Result()
			require.NoError(t, err)
			for _, k := range keys {
				seen[k] = true
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		require.Less(t, len(seen), len(want), "a single-node SCAN loop must miss keys on the other masters")
	})

	t.Run("every key on every master", func(t *testing.T) {
		store := &scan.Store{Client: cc, LockKey: lockKey}
		rec := newRecorder()
		ex := &scan.Executor{Client: cc, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: store, Name: "all", Fingerprint: "m", RunID: "r-1"}
		res, err := ex.Pass(ctx, rec.step)
		require.NoError(t, err)
		require.True(t, res.Complete)
		require.Equal(t, sorted(want), rec.keys())
		// Every chunk comes from one master: SCAN is per node.
		for _, ch := range rec.chunks {
			m := masterOf(t, cc, ch[0])
			for _, k := range ch {
				require.Equal(t, m, masterOf(t, cc, k))
			}
		}
		require.Len(t, res.Nodes, 3)
		ids := map[string]bool{}
		var sum int64
		for _, n := range res.Nodes {
			require.True(t, n.Done)
			require.Len(t, n.Node, 40, "a cluster node id")
			ids[n.Node] = true
			sum += n.Scanned
			require.Equal(t, perMaster[n.Addr], n.Scanned, n.Addr)
		}
		require.Len(t, ids, 3)
		require.EqualValues(t, len(want), sum)
		saved, err := store.Load(ctx, "all")
		require.NoError(t, err)
		require.Len(t, saved.Nodes, 3)
		require.NotEmpty(t, saved.Meta.Topology)
		for id, sn := range saved.Nodes {
			require.True(t, ids[id])
			require.True(t, sn.Done)
			require.NotEmpty(t, sn.ServerRunID)
		}
	})

	t.Run("a crash repeats at most one chunk per node", func(t *testing.T) {
		crashResume(t, cc, want, 1, func(key string) string { return masterOf(t, cc, key) })
	})

	t.Run("with two chunks in flight, at most two chunks per node", func(t *testing.T) {
		crashResume(t, cc, want, 2, func(key string) string { return masterOf(t, cc, key) })
	})

	t.Run("a stop lets every node finish its chunk", func(t *testing.T) {
		store := &scan.Store{Client: cc, LockKey: lockKey}
		rec := newRecorder()
		rec.delay = 20 * time.Millisecond
		stopErr := report.E(report.CodeTerminated, "terminated")
		ex := &scan.Executor{Client: cc, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: store, Name: "stop", Fingerprint: "m", RunID: "r-1",
			Stop: func() error {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if len(rec.chunks) >= 7 {
					return stopErr
				}
				return nil
			}}
		res, err := ex.Pass(ctx, rec.step)
		require.ErrorIs(t, err, stopErr)
		require.Equal(t, report.CodeTerminated, report.CodeOf(err))
		require.False(t, res.Complete)
		require.Zero(t, rec.ctxErrs, "a stop must not cancel the chunks other nodes are working on")
		first := len(rec.chunks)

		ex.Stop = nil
		ex.RunID = "r-2"
		res, err = ex.Pass(ctx, rec.step)
		require.NoError(t, err)
		require.True(t, res.Resumed)
		require.Equal(t, sorted(want), rec.keys())
		for k, n := range rec.seen {
			require.Equal(t, 1, n, "stopped at safe points: %s must not be repeated", k)
		}
		require.Greater(t, len(rec.chunks), first)
	})

	t.Run("a store error on one node cancels the others", func(t *testing.T) {
		rec := newRecorder()
		boom := report.E(report.CodeUnreachable, "boom")
		rec.fail = func(n int) error {
			if n == 2 {
				return boom
			}
			return nil
		}
		ex := &scan.Executor{Client: cc, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: &scan.Store{Client: cc, LockKey: lockKey}, Name: "err", Fingerprint: "m"}
		start := time.Now()
		res, err := ex.Pass(ctx, rec.step)
		require.ErrorIs(t, err, boom)
		require.False(t, res.Complete)
		require.Less(t, len(rec.chunks), 15, "the other nodes stop promptly")
		require.Less(t, time.Since(start), 5*time.Second)
	})
}

func TestLimit(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	fill(t, c, "tenant:", 10_000)
	rec := newRecorder()
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Limit: 2_500}
	res, err := ex.Pass(context.Background(), rec.step)
	require.NoError(t, err)
	require.False(t, res.Complete)
	require.GreaterOrEqual(t, res.Nodes[0].Scanned, int64(2_500))
	require.Less(t, res.Nodes[0].Scanned, int64(5_000))
}

func TestEscapeGlob(t *testing.T) {
	require.Equal(t, `a\*b\?c\[d\]e\\f\^g`, scan.EscapeGlob(`a*b?c[d]e\f^g`))
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	prefix := "dep[1]*?:"
	want := fill(t, c, prefix+"tenant:", 50)
	fill(t, c, "dep1x:tenant:", 50)    // matched by the unescaped pattern
	fill(t, c, "dep[1]ab:tenant:", 50) // so is this
	rec := newRecorder()
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: scan.EscapeGlob(prefix) + "tenant:*"}}
	_, err := ex.Pass(ctx, rec.step)
	require.NoError(t, err)
	require.Equal(t, sorted(want), rec.keys())
}

func TestProgressEvents(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	fill(t, c, "tenant:", 12_000)
	var buf bytes.Buffer
	logger := progress.NewLogger(&buf, true, "r-1", "apply")
	rec := newRecorder()
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: &scan.Store{Client: c, LockKey: lockKey},
		Name: "apply", Fingerprint: "m", Label: "m", RunID: "r-1", Events: logger, EventEvery: time.Nanosecond}
	_, err := ex.Pass(context.Background(), rec.step)
	require.NoError(t, err)

	var chunks, grew, checkpoints, withETA int
	var last map[string]any
	scanned := 0.0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		require.NoError(t, report.ValidateEvent([]byte(line)), line)
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev))
		switch ev["event"] {
		case progress.ChunkDone:
			chunks++
			require.Equal(t, "standalone", ev["node"])
			require.Greater(t, ev["rate_per_s"], 0.0, line)
			require.GreaterOrEqual(t, ev["total_estimate"], 12_000.0, line)
			require.NotNil(t, ev["counts"])
			if _, ok := ev["eta_s"]; ok {
				withETA++
			}
			if s := ev["counts"].(map[string]any)["scanned"].(float64); s > scanned {
				grew, scanned = grew+1, s
			}
			last = ev
		case progress.CheckpointSaved:
			checkpoints++
			require.NotEmpty(t, ev["cursor"])
		}
	}
	// SCAN may hand an empty chunk (the last one often is): an event, no
	// step.
	require.Equal(t, len(rec.chunks), grew, "one event per chunk when not throttled")
	require.Equal(t, chunks, checkpoints)
	require.Greater(t, withETA, 0)
	require.Equal(t, "0", last["cursor"])
	require.EqualValues(t, 12_000, last["counts"].(map[string]any)["scanned"])

	// Throttled (the default: one a second per node) a fast pass emits only
	// its first and last chunk.
	buf.Reset()
	ex.EventEvery = 0
	ex.Name = "other"
	_, err = ex.Pass(context.Background(), rec.step)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(buf.String(), `"event":"chunk_done"`))
}

// TestMemoryDoesNotGrowWithTheKeyspace runs a pass over 200k keys with
// long names and checks the live heap (after GC) late in the pass against
// early in it: keeping the keys would cost tens of MB.
func TestMemoryDoesNotGrowWithTheKeyspace(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	const n = 200_000
	fill(t, c, "tenant:"+strings.Repeat("x", 90)+":", n)
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var early, late uint64
	chunks := 0
	step := func(ctx context.Context, keys []string, t *scan.Tally) error {
		chunks++
		t.Add("m", func(c *report.Counts) { c.Scanned += int64(len(keys)) })
		switch chunks {
		case 10:
			early = live()
		case 180:
			late = live()
		}
		return nil
	}
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 1000}, Store: &scan.Store{Client: c, LockKey: lockKey}, Name: "mem", Fingerprint: "m"}
	res, err := ex.Pass(context.Background(), step)
	require.NoError(t, err)
	require.EqualValues(t, n, res.Tally.Counts("m").Scanned)
	require.NotZero(t, late)
	t.Logf("live heap after 10 chunks: %d KiB, after 180: %d KiB", early/1024, late/1024)
	// 170 chunks of 1000 keys of ~110 bytes each is ~20 MB if kept.
	require.Less(t, int64(late)-int64(early), int64(4<<20), "the live heap grew with the keyspace")
}

func TestTally(t *testing.T) {
	a := scan.NewTally()
	for i := 0; i < report.MaxIssues+20; i++ {
		a.Fail("001", report.Issue{Key: fmt.Sprintf("k%d", i), Reason: "bad"})
	}
	a.Add("002", func(c *report.Counts) { c.Changed = 3 })
	issues, total := a.Issues("001")
	require.Len(t, issues, report.MaxIssues, "only the first issues are kept")
	require.EqualValues(t, report.MaxIssues+20, total, "the total is exact")
	require.Equal(t, "k0", issues[0].Key)
	require.EqualValues(t, report.MaxIssues+20, a.Counts("001").Failed)

	b := scan.NewTally()
	b.Fail("001", report.Issue{Key: "x", Reason: "bad"})
	b.Add("003", func(c *report.Counts) { c.Scanned = 5 })
	b.Merge(a)
	_, total = b.Issues("001")
	require.EqualValues(t, report.MaxIssues+21, total)
	issues, _ = b.Issues("001")
	require.Len(t, issues, report.MaxIssues)
	require.Equal(t, []string{"001", "002", "003"}, b.Labels())
	require.EqualValues(t, 3, b.Counts("002").Changed)
	sum := b.Sum()
	require.EqualValues(t, report.MaxIssues+21, sum.Failed)
	require.EqualValues(t, 5, sum.Scanned)
}

// TestWindow: a read-only pass with chunks in flight hands every key, has
// chunks overlapping (so Redis is not idle while one is worked on), counts
// each chunk once, and on a stop or a failed chunk returns only after every
// chunk in flight has ended. A checkpointed pass ignores Window.
func TestWindow(t *testing.T) {
	c := servertest.Redis(t).Client(t)
	ctx := context.Background()
	want := fill(t, c, "tenant:", 12_000)

	var now, most atomic.Int64
	overlap := func(step scan.Step) scan.Step {
		return func(ctx context.Context, keys []string, tl *scan.Tally) error {
			n := now.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			defer now.Add(-1)
			return step(ctx, keys, tl)
		}
	}
	rec := newRecorder()
	rec.delay = 5 * time.Millisecond
	ex := &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Window: 3}
	res, err := ex.Pass(ctx, overlap(rec.step))
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.Equal(t, sorted(want), rec.keys())
	require.EqualValues(t, 3, most.Load(), "three chunks in flight")
	require.Equal(t, res.Nodes[0].Scanned, res.Tally.Counts("m").Scanned, "every chunk committed once")

	// Stop: chunks already started end and count; no new chunk starts.
	rec = newRecorder()
	rec.delay = 5 * time.Millisecond
	var started atomic.Int64
	ex.Stop = func() error {
		if started.Add(1) > 4 {
			return errors.New("stop")
		}
		return nil
	}
	now.Store(0)
	res, err = ex.Pass(ctx, overlap(rec.step))
	require.ErrorContains(t, err, "stop")
	require.Zero(t, now.Load(), "no step still running")
	require.Len(t, rec.chunks, 4)
	require.Equal(t, res.Nodes[0].Scanned, res.Tally.Counts("m").Scanned)

	// A failed chunk: the pass fails once the others in flight ended.
	rec = newRecorder()
	rec.delay = 5 * time.Millisecond
	rec.fail = func(n int) error {
		if n == 3 {
			return errors.New("chunk 3 failed")
		}
		return nil
	}
	ex.Stop = nil
	now.Store(0)
	_, err = ex.Pass(ctx, overlap(rec.step))
	require.ErrorContains(t, err, "chunk 3 failed")
	require.Zero(t, now.Load(), "no step still running")

	// With a Store: the checkpoint ends at cursor 0 with every chunk
	// counted once.
	most.Store(0)
	now.Store(0)
	rec = newRecorder()
	rec.delay = time.Millisecond
	store := &scan.Store{Client: c, LockKey: lockKey}
	ex = &scan.Executor{Client: c, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Window: 3,
		Store: store, Name: "apply", Fingerprint: "m", RunID: "r-w"}
	res, err = ex.Pass(ctx, overlap(rec.step))
	require.NoError(t, err)
	require.EqualValues(t, 3, most.Load())
	require.Equal(t, sorted(want), rec.keys())
	saved, err := store.Load(ctx, "apply")
	require.NoError(t, err)
	sn := saved.Nodes["standalone"]
	require.True(t, sn.Done)
	require.Equal(t, res.Nodes[0].Scanned, sn.Scanned)
	require.Equal(t, sn.Scanned, sn.Counts["m"].Scanned)
}
