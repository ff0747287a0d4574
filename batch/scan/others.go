package scan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Others watches, on every master, the keys under a prefix that clients
// other than this run write while a pass runs, so that a pass over a quiet
// keyspace needs no confirming pass and a busy one needs to look again only
// at what others changed.
//
// How, per master: a listener connection subscribes to
// __redis__:invalidate, and one writer connection turns on CLIENT TRACKING
// in broadcast mode for the prefix with REDIRECT to the listener and
// NOLOOP. The server then names every key under the prefix that any
// connection but the writer modifies, whoever it is and whatever command
// or script did it (expiry and eviction too), and the run sends every write
// of its own to those keys through the writer (Pipelined), so none of its
// own writes is named. It is exact in the direction that matters: a key
// another client modified is always named (a key is named even when it was
// written back unchanged), with one exception: when the writer modifies the
// same key in the same event-loop iteration after another client did, the
// server remembers only the last writer. The run writes a key at most once
// per pass after reading it (RESTORE, which fails on a key that exists, or
// a compare-and-set script), so such a key is one the run has just read and
// compared: what the other client wrote there is kept.
//
// Detection is unavailable, and Broken says why, when the server refuses
// CLIENT TRACKING or SUBSCRIBE (an ACL user without them), when a watched
// connection was lost or reconnected (events may be lost in between), when
// the keyspace was flushed, when a key's master is not a watched one (a
// topology change), or when more keys changed than the set holds. The
// caller then falls back to a full confirming pass.
type Others struct {
	prefix string
	client redis.UniversalClient
	max    int

	mu       sync.Mutex
	keys     map[string]struct{}
	total    int64
	broken   string
	watchers map[string]*watcher // by master address
	// scriptsNamed: the masters name keys the writer's scripts modify, so
	// own counts the invalidations the run's scripts are still due to
	// cause, by key (see ownscripts.go).
	scriptsNamed bool
	own          map[string]int
}

type watcher struct {
	addr          string
	listener      *redis.Client
	ps            *redis.PubSub
	listenerID    atomic.Int64
	listenerConns atomic.Int32
	writer        *redis.Client
	writerConns   atomic.Int32
	pongs         chan string
	changed       atomic.Int64
}

// DefaultOthersMax bounds the changed keys held in memory (names of about
// 60 bytes: ~10 MiB at most); past it the pass falls back.
const DefaultOthersMax = 100_000

// WatchOthers starts watching keys under prefix on every master of c. It
// returns an error only when ctx ends; a server that refuses gives an
// Others whose Broken says why (writes then go through c).
func WatchOthers(ctx context.Context, c redis.UniversalClient, prefix string, max int) (*Others, error) {
	if max <= 0 {
		max = DefaultOthersMax
	}
	o := &Others{prefix: prefix, client: c, max: max, keys: map[string]struct{}{}, watchers: map[string]*watcher{}, own: map[string]int{}}
	nodes, err := Nodes(ctx, c)
	if err != nil {
		o.broken = "cannot list the masters: " + err.Error()
		return o, ctx.Err()
	}
	for i, n := range nodes {
		w, err := o.watch(ctx, n.client)
		if w != nil {
			o.watchers[n.Addr] = w
		}
		var named bool
		if err == nil {
			named, err = o.probeScripts(ctx, w)
		}
		if err != nil {
			o.setBroken(fmt.Sprintf("cannot watch writes on %s: %v", n.Addr, err))
			break
		}
		if i > 0 && named != o.scriptsNamed {
			o.setBroken("the masters differ in how they track keys that scripts write")
			break
		}
		o.scriptsNamed = named
	}
	return o, ctx.Err()
}

// watch opens the listener and the writer of one master.
func (o *Others) watch(ctx context.Context, m *redis.Client) (*watcher, error) {
	w := &watcher{addr: m.Options().Addr, pongs: make(chan string, 4)}
	lopt := *m.Options()
	lopt.Protocol, lopt.PoolSize, lopt.PipelinePoolSize, lopt.MinIdleConns, lopt.MaxIdleConns = 2, 1, -1, 0, 1
	lopt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		w.listenerConns.Add(1)
		id, err := cn.ClientID(ctx).Result()
		w.listenerID.Store(id)
		return err
	}
	w.listener = redis.NewClient(&lopt)
	w.ps = w.listener.Subscribe(ctx, "__redis__:invalidate")
	if _, err := w.ps.Receive(ctx); err != nil {
		w.close()
		return nil, err
	}
	go o.listen(w)
	wopt := *m.Options()
	wopt.Protocol, wopt.PoolSize, wopt.PipelinePoolSize, wopt.MinIdleConns, wopt.MaxIdleConns = 2, 1, -1, 0, 1
	wopt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if w.writerConns.Add(1) > 1 {
			// A reconnect (a restart, a failover, a network error): changes
			// in between were not watched. The connection is still good for
			// writes; the pass falls back to the confirming pass.
			o.setBroken(fmt.Sprintf("the writer connection to %s was reopened", w.addr))
			return nil
		}
		return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", w.listenerID.Load(), "BCAST", "PREFIX", o.prefix, "NOLOOP").Err()
	}
	w.writer = redis.NewClient(&wopt)
	if err := w.writer.Ping(ctx).Err(); err != nil {
		return w, err
	}
	return w, nil
}

// listen collects the keys named by the server until the listener closes.
func (o *Others) listen(w *watcher) {
	for {
		msg, err := w.ps.Receive(context.Background())
		if err != nil {
			if !strings.Contains(err.Error(), "closed") {
				// A lost connection (events in between are lost) or a
				// flush (the message has no key list).
				o.setBroken(fmt.Sprintf("the watch on %s stopped: %v", w.addr, err))
			}
			return
		}
		switch m := msg.(type) {
		case *redis.Message:
			o.mu.Lock()
			for _, k := range m.PayloadSlice {
				if !o.spendOwn(k) {
					o.nameLocked(w, k)
				}
			}
			o.mu.Unlock()
		case *redis.Pong:
			select {
			case w.pongs <- m.Payload:
			default:
			}
		}
	}
}

// named records that another client changed key on w's master (w may be
// nil).
func (o *Others) named(w *watcher, key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nameLocked(w, key)
}

func (o *Others) nameLocked(w *watcher, key string) {
	o.total++
	if w != nil {
		w.changed.Add(1)
	}
	if o.broken != "" {
		return
	}
	o.keys[key] = struct{}{}
	if len(o.keys) > o.max {
		o.broken = fmt.Sprintf("other clients changed more than %d keys", o.max)
		o.keys = map[string]struct{}{}
	}
}

func (o *Others) setBroken(why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.broken == "" {
		o.broken = why
		o.keys = map[string]struct{}{}
	}
}

// Broken says why detection is unavailable, "" while it works.
func (o *Others) Broken() string {
	if o == nil {
		return "not watched"
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.broken
}

// Total is how many key changes by others the server reported.
func (o *Others) Total() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// Sync waits until every change others made before it was called has been
// received, then returns the keys changed since the last Sync, sorted.
// The barrier: a PING on each listener connection is answered after every
// invalidation the server queued to it before, on the same connection.
func (o *Others) Sync(ctx context.Context) ([]string, error) {
	// A master that joined since the watch began (a resharding) is not
	// watched: writes there were not seen.
	nodes, err := Nodes(ctx, o.client)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if o.watchers[n.Addr] == nil {
			o.setBroken(fmt.Sprintf("the master %s joined during the pass and was not watched", n.Addr))
		}
	}
	for _, w := range o.watchers {
		if o.Broken() != "" {
			break
		}
		if err := o.syncOne(ctx, w); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			o.setBroken(fmt.Sprintf("the watch on %s stopped: %v", w.addr, err))
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.broken != "" {
		return nil, nil
	}
	out := make([]string, 0, len(o.keys))
	for k := range o.keys {
		out = append(out, k)
	}
	o.keys = map[string]struct{}{}
	// Every script the run sent has replied and every invalidation due
	// before the barrier has come: a count left is one the server did not
	// send (it coalesced two of the run's own writes) and must not spend a
	// later write of another client.
	clear(o.own)
	sort.Strings(out)
	return out, nil
}

func (o *Others) syncOne(ctx context.Context, w *watcher) error {
	if err := o.barrier(ctx, w); err != nil {
		return err
	}
	return o.checkTracking(ctx, w)
}

// barrier returns once every invalidation the server queued to w's
// listener before it was called has been received: a PING on the listener
// connection is answered after them.
func (o *Others) barrier(ctx context.Context, w *watcher) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := "outpost-migrate-sync-" + hex.EncodeToString(b[:])
	if err := w.ps.Ping(ctx, token); err != nil {
		return err
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case p := <-w.pongs:
			if p == token {
				return nil
			}
		case <-timeout.C:
			return fmt.Errorf("no answer to the barrier within 30s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkTracking confirms that the writer is still the one connection that
// was set up and still tracks into the listener it was set up with.
func (o *Others) checkTracking(ctx context.Context, w *watcher) error {
	if n := w.writerConns.Load(); n != 1 {
		return fmt.Errorf("the writer connection was opened %d times", n)
	}
	if n := w.listenerConns.Load(); n != 1 {
		return fmt.Errorf("the listener connection was opened %d times", n)
	}
	info, err := w.writer.Do(ctx, "CLIENT", "TRACKINGINFO").Result()
	if err != nil {
		return err
	}
	s := fmt.Sprint(info)
	if !strings.Contains(s, "bcast") || strings.Contains(s, "broken_redirect") || !strings.Contains(s, "noloop") {
		return fmt.Errorf("tracking is no longer on: %s", s)
	}
	return nil
}

// Pipelined runs, for every master, one pipeline holding what add puts in
// it for the keys (by index) on that master, through the watched writer, so
// that the run's own writes are never reported as others'. Callers check
// each command's result. Without a working watch it uses the run's client.
func (o *Others) Pipelined(ctx context.Context, keys []string, add func(pipe redis.Pipeliner, i int)) {
	if o.Broken() != "" {
		pipe := o.client.Pipeline()
		for i := range keys {
			add(pipe, i)
		}
		_, _ = pipe.Exec(ctx)
		return
	}
	groups := map[*redis.Client][]int{}
	var fallback []int
	for i, k := range keys {
		w := o.writerFor(ctx, k)
		if w == nil {
			fallback = append(fallback, i)
			continue
		}
		groups[w] = append(groups[w], i)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	run := func(c redis.Cmdable, idx []int) {
		defer wg.Done()
		pipe := c.Pipeline()
		for _, i := range idx {
			add(pipe, i)
		}
		cmds, _ := pipe.Exec(ctx)
		if c == redis.Cmdable(o.client) || len(cmds) != len(idx) {
			return
		}
		// A slot that moved since the writer was chosen: the writer's
		// connection does not follow MOVED, the run's client does. The
		// watch no longer covers every write.
		for j, cmd := range cmds {
			if err := cmd.Err(); err != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
				mu.Lock()
				fallback = append(fallback, idx[j])
				mu.Unlock()
			}
		}
	}
	for c, idx := range groups {
		wg.Add(1)
		go run(c, idx)
	}
	wg.Wait()
	if len(fallback) > 0 {
		if len(groups) > 0 {
			o.setBroken("a slot moved during the pass (MOVED)")
		}
		wg.Add(1)
		run(o.client, fallback)
	}
}

// writerFor is the watched writer of key's master; nil (and the watch
// broken) when that master is not watched.
func (o *Others) writerFor(ctx context.Context, key string) *redis.Client {
	cc, ok := o.client.(*redis.ClusterClient)
	if !ok {
		for _, w := range o.watchers {
			return w.writer
		}
		return nil
	}
	m, err := cc.MasterForKey(ctx, key)
	if err == nil {
		if w := o.watchers[m.Options().Addr]; w != nil {
			return w.writer
		}
	}
	o.setBroken(fmt.Sprintf("the master of %s is not watched (the cluster changed)", key))
	return nil
}

// PerMaster is how many key changes by others each master reported.
func (o *Others) PerMaster() map[string]int64 {
	out := map[string]int64{}
	for a, w := range o.watchers {
		out[a] = w.changed.Load()
	}
	return out
}

// Close ends the watch.
func (o *Others) Close() {
	if o == nil {
		return
	}
	for _, w := range o.watchers {
		w.close()
	}
}

func (w *watcher) close() {
	if w.writer != nil {
		_ = w.writer.Close()
	}
	if w.ps != nil {
		_ = w.ps.Close()
	}
	_ = w.listener.Close()
}

// Client returns the connection to this master (for read-only commands:
// it does not follow MOVED).
func (n Node) Client() *redis.Client { return n.client }
