package main

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/alicebob/miniredis/v2/server"
)

// demoTracking is CLIENT ID, CLIENT TRACKING (BCAST mode, with REDIRECT,
// PREFIX and NOLOOP) and CLIENT TRACKINGINFO, which miniredis lacks: the
// apply watches other clients' writes with them (batch/scan/others.go) and,
// when the server refuses them, ends with a full confirming pass that a
// real Redis spares it.
//
// After every command that may write, each tracking connection's redirect
// target gets the command's arguments that start with one of its prefixes,
// unless the command came from that tracking connection itself (NOLOOP).
// Naming every such argument errs on the side Redis's contract allows (a
// key may be named without having changed), never the other (a key written
// by another client is always named); FLUSHDB and FLUSHALL send the
// message without keys, as Redis does, which ends the watch.
type demoTracking struct {
	srv  *server.Server
	on   atomic.Int32 // tracking connections
	mu   sync.Mutex
	ids  map[int64]*demoConn
	subs map[*demoConn]*trackSub
}

type trackSub struct {
	redirect int64
	prefixes []string
	noloop   bool
}

func newDemoTracking(srv *server.Server) *demoTracking {
	return &demoTracking{srv: srv, ids: map[int64]*demoConn{}, subs: map[*demoConn]*trackSub{}}
}

func (t *demoTracking) add(c *demoConn) {
	t.mu.Lock()
	t.ids[c.id] = c
	t.mu.Unlock()
}

func (t *demoTracking) remove(c *demoConn) {
	t.mu.Lock()
	delete(t.ids, c.id)
	if t.subs[c] != nil {
		delete(t.subs, c)
		t.on.Add(-1)
	}
	t.mu.Unlock()
}

// client handles CLIENT ID, TRACKING and TRACKINGINFO; false for the other
// subcommands (miniredis's).
func (t *demoTracking) client(c *demoConn, args []string) bool {
	if len(args) < 2 {
		return false
	}
	switch strings.ToUpper(args[1]) {
	case "ID":
		c.peer.WriteInt(int(c.id))
	case "TRACKING":
		if err := t.tracking(c, args[2:]); err != "" {
			c.peer.WriteError(err)
		} else {
			c.peer.WriteOK()
		}
	case "TRACKINGINFO":
		t.info(c)
	default:
		return false
	}
	return true
}

// tracking is CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST]
// [NOLOOP]; the error text, "" when done.
func (t *demoTracking) tracking(c *demoConn, args []string) string {
	if len(args) == 0 {
		return "ERR wrong number of arguments for 'client|tracking' command"
	}
	s := &trackSub{redirect: -1}
	bcast := false
	for i := 1; i < len(args); i++ {
		switch o := strings.ToUpper(args[i]); {
		case o == "BCAST":
			bcast = true
		case o == "NOLOOP":
			s.noloop = true
		case (o == "REDIRECT" || o == "PREFIX") && i+1 < len(args):
			i++
			if o == "PREFIX" {
				s.prefixes = append(s.prefixes, args[i])
				continue
			}
			id, err := strconv.ParseInt(args[i], 10, 64)
			if err != nil {
				return "ERR value is not an integer or out of range"
			}
			s.redirect = id
		default:
			return "ERR the demo's in-process store takes CLIENT TRACKING with REDIRECT, BCAST, PREFIX and NOLOOP only"
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch strings.ToUpper(args[0]) {
	case "OFF":
		if t.subs[c] != nil {
			delete(t.subs, c)
			t.on.Add(-1)
		}
		return ""
	case "ON":
	default:
		return "ERR syntax error"
	}
	if !bcast || s.redirect < 0 {
		return "ERR the demo's in-process store tracks keys in BCAST mode with REDIRECT only"
	}
	if t.ids[s.redirect] == nil {
		return "ERR The client ID you want redirect to does not exist"
	}
	if len(s.prefixes) == 0 {
		s.prefixes = []string{""}
	}
	if t.subs[c] == nil {
		t.on.Add(1)
	}
	t.subs[c] = s
	return ""
}

// info is CLIENT TRACKINGINFO: flags, redirect, prefixes.
func (t *demoTracking) info(c *demoConn) {
	t.mu.Lock()
	s := t.subs[c]
	flags, redirect, prefixes := []string{"off"}, -1, []string{}
	if s != nil {
		flags, redirect, prefixes = []string{"on", "bcast"}, int(s.redirect), s.prefixes
		if s.noloop {
			flags = append(flags, "noloop")
		}
		if t.ids[s.redirect] == nil {
			flags = append(flags, "broken_redirect")
		}
	}
	t.mu.Unlock()
	c.peer.Block(func(w *server.Writer) {
		w.WriteMapLen(3)
		w.WriteBulk("flags")
		w.WriteSetLen(len(flags))
		for _, f := range flags {
			w.WriteBulk(f)
		}
		w.WriteBulk("redirect")
		w.WriteInt(redirect)
		w.WriteBulk("prefixes")
		w.WriteLen(len(prefixes))
		for _, p := range prefixes {
			w.WriteBulk(p)
		}
	})
}

// oneKey are write commands whose only key is their first argument.
var oneKey = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`SET SETEX PSETEX SETNX APPEND INCR INCRBY INCRBYFLOAT DECR DECRBY GETSET GETDEL
		GETEX SETRANGE SETBIT BITFIELD HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT HEXPIRE HPEXPIRE HEXPIREAT
		HPEXPIREAT HPERSIST HSETEX HGETDEL HGETEX EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST LPUSH RPUSH LPUSHX
		RPUSHX LPOP RPOP LSET LREM LTRIM LINSERT SADD SREM SPOP ZADD ZREM ZINCRBY ZPOPMIN ZPOPMAX ZREMRANGEBYSCORE
		ZREMRANGEBYRANK ZREMRANGEBYLEX XADD XDEL XTRIM PFADD GEOADD RESTORE`) {
		oneKey[n] = true
	}
}

// notWrites are commands that write no key but that miniredis does not
// mark read-only: they must not make the front name their arguments as
// changed keys (MEMORY USAGE in the apply's size probe did, so the apply
// saw every key it probed as written by another client).
var notWrites = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`AUTH CLIENT CLUSTER COMMAND DISCARD ECHO EVAL EVALSHA EXEC HELLO INFO
		MEMORY MULTI OBJECT PING PSUBSCRIBE PUBLISH PUBSUB PUNSUBSCRIBE QUIT SCRIPT SELECT SUBSCRIBE TIME
		UNSUBSCRIBE UNWATCH WAIT WATCH XINFO`) {
		notWrites[n] = true
	}
}

// mayWrite says whether command name may write a key: not when miniredis
// marks it read-only or it is one of notWrites.
func mayWrite(srv *server.Server, name string) bool {
	return !notWrites[name] && !srv.IsReadOnlyCommand(name)
}

// keyArgs are the arguments of a write command that may be keys it
// changed: the first for the commands known to write one key, the keys of
// MSET, every argument for the others (naming too many is allowed).
func keyArgs(name string, args []string) []string {
	switch {
	case len(args) < 2:
		return nil
	case oneKey[name]:
		return args[1:2]
	case name == "MSET" || name == "MSETNX":
		var out []string
		for i := 1; i < len(args); i += 2 {
			out = append(out, args[i])
		}
		return out
	}
	return args[1:]
}

// wrote reports what command name with args, run for c, may have changed.
func (t *demoTracking) wrote(c *demoConn, name string, args []string) {
	if t.on.Load() == 0 || !mayWrite(t.srv, name) {
		return
	}
	flush := name == "FLUSHDB" || name == "FLUSHALL" || name == "SWAPDB"
	t.mu.Lock()
	defer t.mu.Unlock()
	for w, s := range t.subs {
		if s.noloop && w == c {
			continue
		}
		target := t.ids[s.redirect]
		if target == nil {
			continue
		}
		var keys []string
		for _, a := range keyArgs(name, args) {
			for _, p := range s.prefixes {
				if strings.HasPrefix(a, p) {
					keys = append(keys, a)
					break
				}
			}
		}
		if len(keys) == 0 && !flush {
			continue
		}
		target.peer.Block(func(w *server.Writer) {
			w.WritePushLen(3)
			w.WriteBulk("message")
			w.WriteBulk("__redis__:invalidate")
			if flush {
				w.WriteNull()
			} else {
				w.WriteLen(len(keys))
				for _, k := range keys {
					w.WriteBulk(k)
				}
			}
			w.Flush()
		})
	}
}
