// Package probe tells whether a TCP port speaks Redis or PostgreSQL, so
// that a store setting pointing at the other kind of server is a
// configuration error (78, "this is not Redis") found in about a second,
// instead of an EOF taken for an outage (69) or a connect timeout (issue
// #22). Each probe runs only after a connection failed or hung, so a
// healthy server never sees it.
package probe

import (
	"context"
	"net"
	"time"
)

// wait bounds the probe's connect and its one read.
const wait = time.Second

// sslRequest is the first message a PostgreSQL client may send: a server
// answers it at once with one byte, 'S' or 'N'.
var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// IsPostgreSQL sends PostgreSQL's SSLRequest: 'S' or 'N' back is
// PostgreSQL. (Redis would wait for a line end: it answers nothing.)
func IsPostgreSQL(ctx context.Context, addr string) bool {
	b := exchange(ctx, addr, sslRequest)
	return len(b) == 1 && (b[0] == 'S' || b[0] == 'N')
}

// IsRedis sends an inline PING: a RESP reply ("+PONG", or "-NOAUTH" and
// the like) is Redis. (PostgreSQL reads "PING" as an impossible packet
// length and hangs up.)
func IsRedis(ctx context.Context, addr string) bool {
	b := exchange(ctx, addr, []byte("PING\r\n"))
	return len(b) > 2 && (b[0] == '+' || b[0] == '-') && b[len(b)-2] == '\r' && b[len(b)-1] == '\n'
}

// exchange writes msg to addr and returns what came back within wait.
func exchange(ctx context.Context, addr string, msg []byte) []byte {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := conn.Write(msg); err != nil {
		return nil
	}
	buf := make([]byte, 256)
	n, _ := conn.Read(buf)
	return buf[:n]
}
