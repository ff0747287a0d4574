package main

import (
	"sync"
	"sync/atomic"
)

// demoWatches is WATCH: a transaction of a connection that watched a key
// is aborted (EXEC replies null) when any client may have written the key
// since. A write marks the watchers of every argument keyArgs names before
// it runs, so that an EXEC, which checks under miniredis's lock, sees every
// write that ran before it; naming too many only aborts a transaction that
// the client retries, as on Redis when a watched key is touched.
type demoWatches struct {
	n  atomic.Int32 // watched keys, all connections
	mu sync.Mutex
	by map[string]map[*demoConn]struct{}
}

func (w *demoWatches) watch(c *demoConn, keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.by == nil {
		w.by = map[string]map[*demoConn]struct{}{}
	}
	for _, k := range keys {
		if w.by[k] == nil {
			w.by[k] = map[*demoConn]struct{}{}
		}
		if _, ok := w.by[k][c]; !ok {
			w.by[k][c] = struct{}{}
			c.watched = append(c.watched, k)
			w.n.Add(1)
		}
	}
}

// unwatch ends c's watches (EXEC, DISCARD, UNWATCH, disconnect).
func (w *demoWatches) unwatch(c *demoConn) {
	if len(c.watched) == 0 {
		c.watchTouched.Store(false)
		return
	}
	w.mu.Lock()
	for _, k := range c.watched {
		delete(w.by[k], c)
		if len(w.by[k]) == 0 {
			delete(w.by, k)
		}
		w.n.Add(-1)
	}
	w.mu.Unlock()
	c.watched = nil
	c.watchTouched.Store(false)
}

// writing marks the watchers of what command name with args may write.
func (w *demoWatches) writing(f *demoFront, name string, args []string) {
	if w.n.Load() == 0 || !mayWrite(f.srv, name) {
		return
	}
	all := name == "FLUSHDB" || name == "FLUSHALL" || name == "SWAPDB"
	w.mu.Lock()
	defer w.mu.Unlock()
	if all {
		for _, cs := range w.by {
			for c := range cs {
				c.watchTouched.Store(true)
			}
		}
		return
	}
	for _, k := range keyArgs(name, args) {
		for c := range w.by[k] {
			c.watchTouched.Store(true)
		}
	}
}
