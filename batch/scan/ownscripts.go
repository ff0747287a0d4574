package scan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
)

// The run's own writes made by scripts. NOLOOP hides from the listener the
// keys the writer connection modifies, but Redis 7.0 (and others) in
// broadcast mode attribute a key a script modifies to the server's script
// client, not to the connection that called the script: every key the
// run's scripts write would come back as written by another client, and
// the catch-up would read the whole keyspace again (it did: 96k of 96k
// twins named on a quiet keyspace). Whether a server does that is probed
// once per master when the watch starts (probeScripts).
//
// Where it does, the run counts the invalidations its own script writes are
// due to cause: ExpectScript before the scripts are sent (one per key),
// SettleScript after their replies (a script that wrote nothing causes
// none). The listener spends those before it names a key. It stays exact
// in the direction that matters:
//   - another client's write before the run's: its invalidation spends the
//     run's, and the run's own then names the key;
//   - the run's script wrote nothing (the twin existed, a compare-and-set
//     failed) but the key's count was already spent: another client wrote
//     it, and SettleScript names it;
//   - one exception: another client's write of the same key in the same
//     event-loop iteration right after the run's script is coalesced by
//     the server into one invalidation, which the run's count spends. The
//     callers that act on a key not being named cover it otherwise: the
//     catch-up re-copies a twin only while it holds the digest of what the
//     run wrote (redismigrations' written), so such a write is kept and
//     reported, never overwritten. What remains is a hash-tagged record
//     the run wrote (a twin it created, or a record 002/003 edited in
//     place) that another client wrote in that same iteration: it keeps
//     that client's write as it is, and 002/003 do not look at it again.

// probeScriptSrc creates and deletes a fresh key in one script: nothing is
// ever visible to other clients, and an invalidation is due only if the
// server attributes script writes to its script client.
var probeScriptSrc = redis.NewScript(`
if redis.call('SET', KEYS[1], '1', 'NX') then redis.call('DEL', KEYS[1]) end
return 1
`)

// probeScripts tells whether w's server names keys the writer's scripts
// modify despite NOLOOP.
func (o *Others) probeScripts(ctx context.Context, w *watcher) (bool, error) {
	key, err := o.probeKey(ctx, w)
	if err != nil {
		return false, err
	}
	if err := luascript.Run(ctx, w.writer, probeScriptSrc, []string{key}).Err(); err != nil {
		return false, fmt.Errorf("probe how scripts are tracked: %w", err)
	}
	if err := o.barrier(ctx, w); err != nil {
		return false, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, named := o.keys[key]
	if named {
		delete(o.keys, key)
		o.total--
		w.changed.Add(-1)
	}
	return named, nil
}

// probeKey is a fresh key under the prefix that w's master serves.
func (o *Others) probeKey(ctx context.Context, w *watcher) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	base := o.prefix + "outpost-migrate:tracking-probe:" + hex.EncodeToString(b[:])
	cc, ok := o.client.(*redis.ClusterClient)
	if !ok {
		return base, nil
	}
	for i := 0; i < 1<<16; i++ {
		key := fmt.Sprintf("%s{%d}", base, i)
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return "", err
		}
		if m.Options().Addr == w.addr {
			return key, nil
		}
	}
	return "", fmt.Errorf("no slot of %s found for the probe", w.addr)
}

// ExpectScript is called before the run sends scripts that may write keys
// (one script per key).
func (o *Others) ExpectScript(keys []string) {
	if o == nil || !o.scriptsNamed {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		o.own[k]++
	}
}

// SettleScript is called with each script's outcome once its reply came:
// wrote[i] is whether the script for keys[i] modified it.
func (o *Others) SettleScript(ctx context.Context, keys []string, wrote []bool) {
	if o == nil || !o.scriptsNamed {
		return
	}
	var spent []string
	o.mu.Lock()
	for i, k := range keys {
		if wrote[i] {
			continue
		}
		switch n := o.own[k]; {
		case n > 1:
			o.own[k] = n - 1
		case n == 1:
			delete(o.own, k)
		default:
			// The count was spent, yet this script wrote nothing: the
			// invalidation that spent it was another client's.
			spent = append(spent, k)
		}
	}
	o.mu.Unlock()
	for _, k := range spent {
		o.named(o.watcherOf(ctx, k), k)
	}
}

// spendOwn spends one of the run's own invalidations for key; false when
// none is due. Called with o.mu held.
func (o *Others) spendOwn(key string) bool {
	n := o.own[key]
	switch {
	case n > 1:
		o.own[key] = n - 1
	case n == 1:
		delete(o.own, key)
	default:
		return false
	}
	return true
}

// watcherOf is the watcher of key's master, nil when there is none.
func (o *Others) watcherOf(ctx context.Context, key string) *watcher {
	w := o.writerFor(ctx, key)
	for _, x := range o.watchers {
		if x.writer == w {
			return x
		}
	}
	return nil
}

// Writer is the watched connection that writes key's master, nil when
// writes go through the run's client (the watch is broken, or key's master
// is not watched). A transaction on it (WATCH, MULTI, EXEC) is the run's
// own to the watch, as its pipelines are.
func (o *Others) Writer(ctx context.Context, key string) *redis.Client {
	if o == nil || o.Broken() != "" {
		return nil
	}
	return o.writerFor(ctx, key)
}
