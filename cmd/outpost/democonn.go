package main

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/alicebob/miniredis/v2"
)

// miniredis writes each reply with its own write(2) and reads requests
// through a 4 KiB buffer: with the migrations' pipelines of hundreds of
// commands, a third of the demo's CPU went to system calls (profiled with
// OUTPOST_CPUPROFILE). demoListener serves the demo's connections itself:
// requests are read 64 KiB at a time and the replies of a pipeline leave
// together, as a Redis server's do.

// demoListener accepts connections for mr's command handlers.
type demoListener struct {
	l  net.Listener
	mr *miniredis.Miniredis
}

func listenDemo(mr *miniredis.Miniredis) (*demoListener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &demoListener{l: l, mr: mr}
	go d.serve()
	return d, nil
}

func (d *demoListener) addr() *net.TCPAddr { return d.l.Addr().(*net.TCPAddr) }

func (d *demoListener) close() { _ = d.l.Close() }

func (d *demoListener) serve() {
	for {
		c, err := d.l.Accept()
		if err != nil {
			return
		}
		d.mr.Server().ServeConn(newBatchedConn(c))
	}
}

// batchedConn holds back a reply while more of the client's pipeline has
// arrived and not yet been read by the server: the reply of the last
// command read goes out with every reply queued before it, in one write.
// A client sends its whole pipeline before it reads (go-redis does), so a
// reply is held only while a command that will flush it is on its way.
type batchedConn struct {
	net.Conn
	mu      sync.Mutex
	in      []byte // received, not yet read by the server
	buf     []byte
	queued  []byte
	pending atomic.Int64
}

func newBatchedConn(c net.Conn) *batchedConn {
	return &batchedConn{Conn: c, buf: make([]byte, 64<<10)}
}

func (b *batchedConn) Read(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.in) == 0 {
		b.mu.Unlock()
		n, err := b.Conn.Read(b.buf)
		if n == 0 {
			return 0, err
		}
		b.mu.Lock()
		b.in = b.buf[:n]
		b.pending.Store(int64(n))
	}
	n := copy(p, b.in)
	b.in = b.in[n:]
	b.pending.Add(-int64(n))
	b.mu.Unlock()
	return n, nil
}

func (b *batchedConn) Write(p []byte) (int, error) {
	b.queued = append(b.queued, p...)
	if b.pending.Load() > 0 {
		return len(p), nil
	}
	_, err := b.Conn.Write(b.queued)
	b.queued = b.queued[:0]
	return len(p), err
}
