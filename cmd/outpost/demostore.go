package main

import (
	le "encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// The demo's in-process Redis is miniredis, which the migrations reach over
// TCP like any server. What made the demo's apply slow on it, as
// OUTPOST_CPUPROFILE showed (a 2,000-tenant demo, 9,600 legacy keys), and
// what this file and demofront.go do about it:
//
//   - miniredis keeps the keyspace in this process's heap, so the 40 MiB
//     soft memory limit (main.go) made the garbage collector run
//     continuously: 60-70% of the CPU went to GC. With the store in the
//     process the limit is lifted (unless GOMEMLIMIT is set).
//   - 37% of the CPU went to EVALSHA, for which miniredis builds a new Lua
//     interpreter, libraries included, per call: the copy ran its Lua
//     fallback for every key, because miniredis ran a RESTORE inside
//     MULTI at once instead of queueing it (the migrations' RESTORE probe
//     then failed). The front runs MULTI/EXEC, WATCH and RESTORE of a hash
//     as Redis does (RDB type 4, version and CRC-64 checked), so the fenced
//     copy takes the path it takes on Redis (RESTOREs in a transaction
//     that watches the lock), and scripts in one long-lived interpreter
//     (demolua.go).
//   - miniredis has no CLIENT TRACKING: the apply could not watch other
//     clients' writes and ended with a full confirming pass (every key
//     read again), which a real Redis spares it. The front tracks keys as
//     Redis does in BCAST mode (demotrack.go).
//   - 13% went to write(2): miniredis writes every reply on its own and
//     hands every request from a reader goroutine to a dispatcher. The
//     front reads a pipeline and writes its replies in one go, in one
//     goroutine per connection, as Redis does.
//   - miniredis answers SCAN with every key at once (one chunk: no
//     checkpoints or progress between chunks); the front pages it.
//   - With those fixed, the store still cost as much CPU as the tool
//     (10,000 tenants: 1.0 s of the store's CPU in a 1.1 s apply):
//     miniredis's HSET stamps the key once per field, HGETALL formats every
//     element with fmt, every command takes the lock twice. The front
//     answers the apply's reads and RESTORE's write from miniredis's own
//     maps (demonative.go), checks a payload's CRC eight bytes a step
//     without copying it, and sizes the maps for the demo's keyspace.
//   - Then the runtime's scheduler trace (go tool trace -pprof=sched)
//     showed the front's goroutines waiting 0.8 s in a 1 s apply to be
//     handed miniredis's lock, taken once per command by eight
//     connections: it ran in starvation mode, one goroutine switch per
//     unlock. The front reads what a client has sent before running it
//     and answers a run of reads under one hold of the lock, as Redis's
//     event loop serves one client's pipeline at a time.
//
// The migration code is the same either way; only the server differs.

// demoRedis is the in-process store: miniredis's commands behind the front.
type demoRedis struct {
	mr    *miniredis.Miniredis
	front *demoFront
}

// startDemoRedis starts the in-process store, made ready for about keys
// keys (0 when not known).
func startDemoRedis(keys int) (*demoRedis, error) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// The keyspace is long-lived heap, marked by every collection:
		// collecting less often saves CPU, up to a point. At 400 the heap
		// kept growing into fresh pages, and their page faults cost more
		// than the marking saved (the apply's CPU, 2,000 and 10,000
		// tenants, GOGC 100/200/400 alternated: 200 the least, 400 a
		// third more).
		debug.SetGCPercent(200)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, err
	}
	f, err := startDemoFront(mr)
	if err != nil {
		mr.Close()
		return nil, err
	}
	if f.ks != nil {
		mr.Lock()
		f.ks.presize(keys)
		mr.Unlock()
	}
	return &demoRedis{mr: mr, front: f}, nil
}

func (d *demoRedis) host() string { return d.front.addr().IP.String() }
func (d *demoRedis) port() string { return strconv.Itoa(d.front.addr().Port) }
func (d *demoRedis) addr() string { return d.front.addr().String() }

func (d *demoRedis) close() {
	d.front.close()
	d.mr.Close()
}

var (
	errPayload      = errors.New("DUMP payload version or checksum are wrong")
	errPayloadShape = errors.New("Bad data format")
)

// crcJones is CRC-64 with the Jones polynomial as Redis computes it over a
// DUMP payload (initial value 0, no final XOR), eight bytes per step: the
// payload is checked on every RESTORE, on the string it came in, without
// a copy.
var crcJones = func() *[8]crc64.Table {
	var t [8]crc64.Table
	t[0] = *crc64.MakeTable(0x95AC9329AC4BC9B5)
	for i := range 256 {
		for k := 1; k < 8; k++ {
			c := t[k-1][i]
			t[k][i] = t[0][byte(c)] ^ c>>8
		}
	}
	return &t
}()

func crcRedis(s string) uint64 {
	t, crc := crcJones, uint64(0)
	for ; len(s) >= 8; s = s[8:] {
		crc ^= le.LittleEndian.Uint64([]byte(s[:8]))
		crc = t[7][byte(crc)] ^ t[6][byte(crc>>8)] ^ t[5][byte(crc>>16)] ^ t[4][byte(crc>>24)] ^
			t[3][byte(crc>>32)] ^ t[2][byte(crc>>40)] ^ t[1][byte(crc>>48)] ^ t[0][crc>>56]
	}
	for i := 0; i < len(s); i++ {
		crc = t[0][byte(crc)^s[i]] ^ crc>>8
	}
	return crc
}

// decodeHashPayload reads what DUMP returns for a hash (RDB type 4): the
// fields and values as HSET takes them, as parts of p (not copies).
func decodeHashPayload(p string) ([]string, error) {
	if len(p) < 11 {
		return nil, errPayload
	}
	body, footer := p[:len(p)-8], p[len(p)-8:]
	if crcRedis(body) != le.LittleEndian.Uint64([]byte(footer)) {
		return nil, errPayload
	}
	body = body[:len(body)-2] // the RDB version
	if body[0] != 4 {
		return nil, errPayloadShape
	}
	rest := body[1:]
	n, rest, ok := rdbLen(rest)
	if !ok || n == 0 || n > uint64(len(rest)) {
		return nil, errPayloadShape
	}
	out := make([]string, 0, 2*n)
	for i := uint64(0); i < 2*n; i++ {
		var l uint64
		if l, rest, ok = rdbLen(rest); !ok || uint64(len(rest)) < l {
			return nil, errPayloadShape
		}
		out = append(out, rest[:l])
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, errPayloadShape
	}
	return out, nil
}

// rdbLen reads an RDB length (6, 14, 32 or 64 bits); encoded strings
// (integers, LZF) are not lengths and are refused.
func rdbLen(b string) (uint64, string, bool) {
	if len(b) == 0 {
		return 0, "", false
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0] & 0x3F), b[1:], true
	case 1:
		if len(b) < 2 {
			return 0, "", false
		}
		return uint64(b[0]&0x3F)<<8 | uint64(b[1]), b[2:], true
	case 2:
		switch {
		case b[0] == 0x80 && len(b) >= 5:
			return uint64(le.BigEndian.Uint32([]byte(b[1:5]))), b[5:], true
		case b[0] == 0x81 && len(b) >= 9:
			return le.BigEndian.Uint64([]byte(b[1:9])), b[9:], true
		}
	}
	return 0, "", false
}

// restore is RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s]
// [FREQ f] of a hash, made of miniredis's own commands under its lock (one
// atomic step, as on Redis): the key is created unless it exists (BUSYKEY)
// or REPLACE is given, with the TTL in the same step; an ABSTTL time
// already past creates nothing, as on Redis.
func (f *demoFront) restore(c *demoConn, p *server.Peer, args []string) {
	if len(args) < 4 {
		p.WriteError("ERR wrong number of arguments for 'restore' command")
		return
	}
	key, payload := args[1], args[3]
	replace, absTTL := false, false
	for i := 4; i < len(args); i++ {
		switch strings.ToUpper(args[i]) {
		case "REPLACE":
			replace = true
		case "ABSTTL":
			absTTL = true
		case "IDLETIME", "FREQ":
			i++
		default:
			p.WriteError("ERR syntax error")
			return
		}
	}
	ttl, err := strconv.ParseInt(args[2], 10, 64)
	if err != nil || ttl < 0 {
		p.WriteError("ERR Invalid TTL value, must be >= 0")
		return
	}
	fields, err := decodeHashPayload(payload)
	if err != nil {
		p.WriteError("ERR " + err.Error())
		return
	}
	if err := f.restoreHash(c, key, fields, ttl, absTTL, replace); err != nil {
		p.WriteError(err.Error())
		return
	}
	p.WriteOK()
}

func (f *demoFront) restoreHash(c *demoConn, key string, fields []string, ttl int64, absTTL, replace bool) error {
	exists, err := f.keyExists(c, key)
	if err != nil {
		return err
	}
	if exists && !replace {
		return errors.New("BUSYKEY Target key name already exists.")
	}
	if absTTL && ttl > 0 {
		now, err := f.nowMS(c)
		if err != nil {
			return err
		}
		if ttl <= now {
			ttl = -1 // expired already: nothing is created
		}
	}
	if exists {
		if _, err := f.call(c, "DEL", key); err != nil {
			return err
		}
	}
	if ttl < 0 {
		return nil
	}
	if err := f.hset(c, key, fields); err != nil {
		return err
	}
	if ttl > 0 {
		cmd := "PEXPIRE"
		if absTTL {
			cmd = "PEXPIREAT"
		}
		if _, err := f.call(c, cmd, key, strconv.FormatInt(ttl, 10)); err != nil {
			return err
		}
	}
	return nil
}

// keyExists is EXISTS key as a nested call (lock held).
func (f *demoFront) keyExists(c *demoConn, key string) (bool, error) {
	if f.ks != nil {
		return f.ks.exists(key), nil
	}
	n, err := f.call(c, "EXISTS", key)
	return n != 0, err
}

// hset creates key, which does not exist, as a hash of fields (lock
// held): watchers and trackers of key are told as for HSET.
func (f *demoFront) hset(c *demoConn, key string, fields []string) error {
	if f.ks != nil {
		named := []string{"HSET", key}
		f.watches.writing(f, "HSET", named)
		if f.ks.createHash(key, fields) {
			f.track.wrote(c, "HSET", named)
			return nil
		}
	}
	_, err := f.call(c, append([]string{"HSET", key}, fields...)...)
	return err
}

// nowMS is the store's clock (TIME) in Unix ms.
func (f *demoFront) nowMS(c *demoConn) (int64, error) {
	r, err := f.call(c, "TIME")
	if err != nil {
		return 0, err
	}
	t, ok := r.([]any)
	if !ok || len(t) != 2 {
		return 0, fmt.Errorf("ERR TIME replied %v", r)
	}
	s, _ := t[0].(string)
	us, _ := t[1].(string)
	sec, err1 := strconv.ParseInt(s, 10, 64)
	micro, err2 := strconv.ParseInt(us, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("ERR TIME replied %v", r)
	}
	return sec*1000 + micro/1000, nil
}
