package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// demoFront serves the in-process store's connections and hands each
// command to miniredis, except those whose miniredis version took the
// migrations off the path they take on a real Redis or made them slow:
// RESTORE of a hash, MULTI/EXEC around it, scripts, and key tracking
// (see demostore.go). Commands the front runs itself run under miniredis's
// lock, and the miniredis commands they are made of are dispatched as a
// script's nested calls are (the lock is already held), so each is atomic
// as on Redis.
type demoFront struct {
	mr  *miniredis.Miniredis
	srv *server.Server
	l   net.Listener
	// nested is the connection state miniredis gives a script's nested
	// calls: a command dispatched with it runs without taking the lock
	// (its caller holds it). Captured once at start (captureNested).
	nested any
	// np is the peer the front's own nested calls reply to (lock held).
	np      *server.Peer
	npBuf   *bytes.Buffer
	npR     *bufio.Reader
	lua     *demoLua
	ks      *demoKeyspace // nil: every data command goes to miniredis
	track   *demoTracking
	watches demoWatches
	// SCAN's iterations in progress, by id (lock held).
	scans    map[uint64]*scanIteration
	lastScan uint64

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*demoConn]struct{}
	nextID atomic.Int64
}

// demoConn is one client connection.
type demoConn struct {
	id   int64
	nc   net.Conn
	peer *server.Peer
	bw   *bufio.Writer // peer's buffer
	// db is the SELECTed database. The front's own commands work on
	// database 0 (the demo's); a connection elsewhere gets miniredis's
	// commands only.
	db int
	// A MULTI in progress: the queued commands, and whether one was
	// refused (EXEC then aborts, as on Redis).
	multi, dirty bool
	queue        [][]string
	// subscribed: miniredis keeps a subscriber until it unsubscribes (its
	// own server also ends it on disconnect, which the front does with
	// UNSUBSCRIBE).
	subscribed bool
	// WATCH: the keys, and whether one may have been written since.
	watched      []string
	watchTouched atomic.Bool
}

func startDemoFront(mr *miniredis.Miniredis) (*demoFront, error) {
	f := &demoFront{mr: mr, srv: mr.Server(), conns: map[*demoConn]struct{}{}, scans: map[uint64]*scanIteration{}}
	var err error
	if f.nested, err = captureNested(f.srv); err != nil {
		return nil, err
	}
	f.npBuf = &bytes.Buffer{}
	f.np = server.NewPeer(bufio.NewWriter(f.npBuf))
	f.np.Ctx = f.nested
	f.npR = bufio.NewReader(f.npBuf)
	if f.lua, err = newDemoLua(f); err != nil {
		return nil, err
	}
	f.track = newDemoTracking(f.srv)
	f.ks = newDemoKeyspace(mr)
	if f.l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// captureNested has miniredis run a script whose one call is a command
// registered here that keeps the connection state it is called with.
func captureNested(srv *server.Server) (any, error) {
	const name = "OUTPOST-DEMO-NESTED-CONTEXT"
	var got any
	var done atomic.Bool
	err := srv.Register(name, func(c *server.Peer, _ string, _ []string) {
		if done.Swap(true) {
			c.WriteError("ERR unknown command '" + name + "'")
			return
		}
		got = c.Ctx
		c.WriteOK()
	})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	srv.Dispatch(server.NewPeer(w), []string{"EVAL", "return redis.call('" + name + "')", "0"})
	_ = w.Flush()
	if got == nil {
		return nil, fmt.Errorf("demo store: no script context (%q)", strings.TrimSpace(out.String()))
	}
	return got, nil
}

func (f *demoFront) addr() *net.TCPAddr { return f.l.Addr().(*net.TCPAddr) }

func (f *demoFront) close() {
	_ = f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.nc.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *demoFront) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.l.Accept()
		if err != nil {
			return
		}
		bw := bufio.NewWriterSize(nc, 64<<10)
		c := &demoConn{id: f.nextID.Add(1), nc: nc, bw: bw, peer: server.NewPeer(bw)}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.track.add(c)
		f.wg.Add(1)
		go f.serve(c)
	}
}

// serve reads and runs c's commands in one goroutine, and writes the
// replies when no more of the client's pipeline is waiting to be read: one
// write per pipeline, as a Redis server does.
func (f *demoFront) serve(c *demoConn) {
	defer f.wg.Done()
	defer func() {
		f.track.remove(c)
		f.watches.unwatch(c)
		_ = c.nc.Close()
		if c.subscribed {
			f.srv.Dispatch(c.peer, []string{"UNSUBSCRIBE"})
			f.srv.Dispatch(c.peer, []string{"PUNSUBSCRIBE"})
		}
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var scratch []byte
	var batch [][]string
	for {
		// What the client has sent so far (its pipeline), read before any
		// of it runs, so that a run of reads takes miniredis's lock once.
		batch = batch[:0]
		var err error
		for len(batch) < maxBatch {
			var args []string
			if args, err = readCommand(r, &scratch); err != nil {
				break
			}
			if len(args) > 0 {
				batch = append(batch, args)
			}
			if r.Buffered() == 0 {
				break
			}
		}
		f.run(c, batch)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.peer.Closed() {
				c.peer.WriteError("ERR Protocol error: " + err.Error())
			}
			c.peer.Flush()
			return
		}
		if r.Buffered() == 0 || c.peer.Closed() {
			c.peer.Flush()
		}
		if c.peer.Closed() {
			return
		}
	}
}

// maxBatch bounds the commands of a pipeline read before they run.
const maxBatch = 1024

// run runs c's commands in order, as Redis runs a client's pipeline: each
// run of commands demoKeyspace answers under one hold of miniredis's lock
// (no other client's command in between, as in Redis's event loop, and
// one lock handoff instead of one per command), the others one by one;
// none after one that closed the connection (QUIT).
func (f *demoFront) run(c *demoConn, batch [][]string) {
	for i := 0; i < len(batch) && !c.peer.Closed(); {
		if n := f.answerRun(c, batch[i:]); n > 0 {
			i += n
			continue
		}
		f.command(c, batch[i])
		i++
	}
}

// answerRun answers the commands at the start of batch that demoKeyspace
// takes, for c outside a transaction on database 0, under one hold of the
// lock: how many it answered.
func (f *demoFront) answerRun(c *demoConn, batch [][]string) int {
	takes := func(args []string) bool {
		return c.db == 0 && !c.multi && f.ks.takes(c, upperName(args[0]), args)
	}
	if !takes(batch[0]) {
		return 0
	}
	f.mr.Lock()
	defer f.mr.Unlock()
	n := 0
	for ; n < len(batch) && takes(batch[n]); n++ {
		b := f.ks.answer(c.peer.Resp3, upperName(batch[n][0]), batch[n])
		if b == nil {
			break
		}
		c.writeRaw(b)
	}
	return n
}

// commandNames are the names of the commands the apply sends, by the
// lower-case spelling clients send: upperName finds them without
// allocating.
var commandNames = map[string]string{}

func init() {
	for _, n := range strings.Fields("HGETALL HMGET HLEN PEXPIRETIME EXISTS RESTORE SCAN EVALSHA EVALSHA_RO EVAL MULTI EXEC WATCH UNWATCH GET SET DEL HSET PING INFO DBSIZE TYPE CLIENT") {
		commandNames[strings.ToLower(n)] = n
		commandNames[n] = n
	}
}

// upperName is a command's name in upper case.
func upperName(s string) string {
	if n, ok := commandNames[s]; ok {
		return n
	}
	return strings.ToUpper(s)
}

var errRESP = errors.New("expected an array of bulk strings")

// readCommand reads one request: an array of bulk strings (what clients
// send; inline commands are not taken). The arguments share one string
// (one allocation a command); scratch is reused between calls.
func readCommand(r *bufio.Reader, scratch *[]byte) ([]string, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[0] != '*' {
		return nil, errRESP
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n > 1<<20 {
		return nil, errRESP
	}
	ends := make([]int, max(n, 0))
	buf := (*scratch)[:0]
	for i := range ends {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if len(line) < 2 || line[0] != '$' {
			return nil, errRESP
		}
		l, err := strconv.Atoi(string(line[1:]))
		if err != nil || l < 0 || l > 512<<20 {
			return nil, errRESP
		}
		at := len(buf)
		buf = slices.Grow(buf, l+2)[:at+l+2]
		if _, err := io.ReadFull(r, buf[at:]); err != nil {
			return nil, err
		}
		if buf[at+l] != '\r' || buf[at+l+1] != '\n' {
			return nil, errRESP
		}
		buf = buf[:at+l]
		ends[i] = len(buf)
	}
	all := string(buf)
	if cap(buf) <= 1<<20 {
		*scratch = buf // a big command's buffer is not kept
	}
	args := make([]string, len(ends))
	from := 0
	for i, e := range ends {
		args[i] = all[from:e]
		from = e
	}
	return args, nil
}

func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errRESP
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errRESP
	}
	return line[:len(line)-2], nil
}

// own are the commands the front runs itself, under miniredis's lock.
var own = map[string]bool{"SCAN": true, "RESTORE": true, "EVAL": true, "EVALSHA": true, "EVAL_RO": true, "EVALSHA_RO": true, "SCRIPT": true}

// command runs one command of c.
func (f *demoFront) command(c *demoConn, args []string) {
	name := upperName(args[0])
	if name == "CLIENT" && f.track.client(c, args) {
		return
	}
	if name == "SUBSCRIBE" || name == "PSUBSCRIBE" {
		c.subscribed = true
	}
	if name == "SELECT" && len(args) == 2 {
		if n, err := strconv.Atoi(args[1]); err == nil && n >= 0 && !c.multi {
			c.db = n
		}
	}
	if c.db != 0 {
		f.watches.writing(f, name, args)
		f.srv.Dispatch(c.peer, args)
		f.track.wrote(c, name, args)
		return
	}
	if c.multi {
		f.queue(c, name, args)
		return
	}
	switch {
	case name == "MULTI":
		c.multi, c.dirty, c.queue = true, false, nil
		c.peer.WriteOK()
	case name == "EXEC" || name == "DISCARD":
		c.peer.WriteError("ERR " + name + " without MULTI")
	case name == "WATCH" || name == "UNWATCH":
		if name == "WATCH" && len(args) < 2 {
			c.peer.WriteError("ERR wrong number of arguments for 'watch' command")
			return
		}
		if name == "WATCH" {
			f.watches.watch(c, args[1:])
		} else {
			f.watches.unwatch(c)
		}
		c.peer.WriteOK()
	case own[name]:
		f.mr.Lock()
		f.execLocked(c, c.peer, name, args, false)
		f.mr.Unlock()
	default:
		f.watches.writing(f, name, args)
		f.srv.Dispatch(c.peer, args)
		f.track.wrote(c, name, args)
	}
}

// queue handles a command of c inside MULTI: queued, or EXEC, DISCARD.
func (f *demoFront) queue(c *demoConn, name string, args []string) {
	switch name {
	case "EXEC":
		f.exec(c)
	case "DISCARD":
		c.multi, c.dirty, c.queue = false, false, nil
		f.watches.unwatch(c)
		c.peer.WriteOK()
	case "MULTI":
		c.peer.WriteError("ERR MULTI calls can not be nested")
	case "WATCH":
		c.peer.WriteError("ERR WATCH inside MULTI is not allowed")
	case "SELECT", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE":
		c.dirty = true
		c.peer.WriteError("ERR the demo's in-process store does not take " + name + " inside MULTI")
	default:
		if !own[name] && !f.srv.IsRegisteredCommand(name) {
			c.dirty = true
			c.peer.WriteError(fmt.Sprintf("ERR unknown command '%s'", args[0]))
			return
		}
		c.queue = append(c.queue, args)
		c.writeRaw(queuedReply)
	}
}

var queuedReply = []byte("+QUEUED\r\n")

// exec runs c's queued commands under one hold of the lock, as Redis runs
// a transaction: no other client's command in between.
func (f *demoFront) exec(c *demoConn) {
	q, dirty := c.queue, c.dirty
	c.multi, c.dirty, c.queue = false, false, nil
	if dirty {
		f.watches.unwatch(c)
		c.peer.WriteError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	p := server.NewPeer(w)
	p.Ctx, p.Resp3 = f.nested, c.peer.Resp3
	f.mr.Lock()
	if c.watchTouched.Load() {
		// A watched key may have been written: the transaction is
		// aborted, as Redis does (a null reply).
		f.mr.Unlock()
		f.watches.unwatch(c)
		c.peer.WriteNull()
		return
	}
	f.watches.unwatch(c)
	for _, args := range q {
		f.execLocked(c, p, upperName(args[0]), args, false)
	}
	f.mr.Unlock()
	_ = w.Flush()
	c.peer.Block(func(w *server.Writer) {
		w.WriteLen(len(q))
		w.WriteRaw(buf.String())
	})
}

// execLocked runs one command with miniredis's lock held, replying to p:
// the front's own commands, else miniredis's (p must then carry the
// nested context). fromScript refuses what a script may not call.
func (f *demoFront) execLocked(c *demoConn, p *server.Peer, name string, args []string, fromScript bool) {
	switch name {
	case "SCAN":
		f.scan(p, args)
	case "RESTORE":
		f.restore(c, p, args)
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT":
		if fromScript {
			p.WriteError("ERR This Redis command is not allowed from script")
			return
		}
		if name == "SCRIPT" {
			f.lua.script(p, args)
			return
		}
		f.lua.eval(c, p, name, args)
	case "SELECT", "MULTI", "EXEC", "DISCARD", "WATCH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "CLIENT":
		p.WriteError("ERR This Redis command is not allowed from script")
	default:
		if f.ks.takes(c, name, args) {
			if b := f.ks.answer(p.Resp3, name, args); b != nil {
				p.Block(func(w *server.Writer) { w.WriteRaw(string(b)) })
				return
			}
		}
		f.watches.writing(f, name, args)
		f.srv.Dispatch(p, args)
		f.track.wrote(c, name, args)
	}
}

// writeRaw writes a reply, already in RESP, to c's buffer, in the order of
// its other replies (the peer's lock).
func (c *demoConn) writeRaw(b []byte) {
	c.peer.Block(func(*server.Writer) { _, _ = c.bw.Write(b) })
}

// call runs one command as a nested call (lock held) on behalf of c and
// returns the reply as server.ParseReply reads it; an error reply is the
// error.
func (f *demoFront) call(c *demoConn, args ...string) (any, error) {
	f.execLocked(c, f.np, strings.ToUpper(args[0]), args, true)
	f.np.Flush()
	return server.ParseReply(f.npR)
}

// callMiniredis runs miniredis's own version of a command as a nested call
// (lock held).
func (f *demoFront) callMiniredis(args ...string) (any, error) {
	f.srv.Dispatch(f.np, args)
	f.np.Flush()
	return server.ParseReply(f.npR)
}
