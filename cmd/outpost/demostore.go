package main

import (
	le "encoding/binary"
	"errors"
	"hash/crc64"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// The demo's in-process Redis is miniredis, which the migrations reach over
// TCP like any server. Two things made the demo's apply slow (under 1,000
// keys/s, measured with OUTPOST_CPUPROFILE):
//
//   - miniredis keeps the keyspace in this process's heap, so the 40 MiB
//     soft memory limit (main.go) made the garbage collector run
//     continuously: 60-70% of the CPU went to GC. With the store in the
//     process the limit is lifted (unless GOMEMLIMIT is set).
//   - miniredis stores a RESTORE payload as a plain string, so the copy's
//     probe (redismigrations.restoreWorks) found RESTORE unusable and every
//     key was copied by a Lua script, for which miniredis builds a new Lua
//     interpreter per call. The store below reads RESTORE of a hash as
//     Redis does (RDB type 4 with version and CRC-64 checked), so the
//     migrations take the same path as on a real Redis.
//
// The migration code is the same either way; only the server differs.

// demoRedis is the in-process store: miniredis's commands, RESTORE of
// hashes, and connections served by demoListener.
type demoRedis struct {
	mr *miniredis.Miniredis
	l  *demoListener
}

// startDemoRedis starts the in-process store.
func startDemoRedis() (*demoRedis, error) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// The keyspace is long-lived heap: collecting less often costs
		// memory the demo can spare and saves a fifth of its CPU.
		debug.SetGCPercent(400)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, err
	}
	r := &demoRestore{db: mr.DB(0)}
	mr.Server().SetPreHook(r.hook)
	l, err := listenDemo(mr)
	if err != nil {
		mr.Close()
		return nil, err
	}
	return &demoRedis{mr: mr, l: l}, nil
}

func (d *demoRedis) host() string { return d.l.addr().IP.String() }
func (d *demoRedis) port() string { return strconv.Itoa(d.l.addr().Port) }
func (d *demoRedis) addr() string { return d.l.addr().String() }

func (d *demoRedis) close() {
	d.l.close()
	d.mr.Close()
}

// demoRestore handles RESTORE on database 0 (the demo's).
type demoRestore struct {
	// mu makes the check for an existing key and the write one step
	// among RESTOREs, which is all the demo writes to twins with.
	mu sync.Mutex
	db *miniredis.RedisDB
}

func (r *demoRestore) hook(c *server.Peer, cmd string, args ...string) bool {
	if cmd != "RESTORE" || len(args) < 3 {
		return false
	}
	key, payload := args[0], args[2]
	ttl, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil || ttl < 0 {
		c.WriteError("ERR Invalid TTL value, must be >= 0")
		return true
	}
	replace, absTTL := false, false
	for _, o := range args[3:] {
		switch strings.ToUpper(o) {
		case "REPLACE":
			replace = true
		case "ABSTTL":
			absTTL = true
		}
	}
	fields, err := decodeHashPayload(payload)
	if err != nil {
		c.WriteError("ERR " + err.Error())
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db.Exists(key) {
		if !replace {
			c.WriteError("BUSYKEY Target key name already exists.")
			return true
		}
		r.db.Del(key)
	}
	r.db.HSet(key, fields...)
	if ttl > 0 {
		d := time.Duration(ttl) * time.Millisecond
		if absTTL {
			d = time.Until(time.UnixMilli(ttl))
		}
		r.db.SetTTL(key, d)
	}
	c.WriteOK()
	return true
}

var (
	crcJones        = crc64.MakeTable(0x95AC9329AC4BC9B5)
	errPayload      = errors.New("DUMP payload version or checksum are wrong")
	errPayloadShape = errors.New("Bad data format")
)

// decodeHashPayload reads what DUMP returns for a hash (RDB type 4): the
// fields and values as HSET takes them.
func decodeHashPayload(p string) ([]string, error) {
	b := []byte(p)
	if len(b) < 11 {
		return nil, errPayload
	}
	body, footer := b[:len(b)-8], b[len(b)-8:]
	if ^crc64.Update(^uint64(0), crcJones, body) != le.LittleEndian.Uint64(footer) {
		return nil, errPayload
	}
	body = body[:len(body)-2] // the RDB version
	if body[0] != 4 {
		return nil, errPayloadShape
	}
	rest := body[1:]
	n, rest, ok := rdbLen(rest)
	if !ok || n == 0 {
		return nil, errPayloadShape
	}
	out := make([]string, 0, 2*n)
	for i := uint64(0); i < 2*n; i++ {
		var l uint64
		if l, rest, ok = rdbLen(rest); !ok || uint64(len(rest)) < l {
			return nil, errPayloadShape
		}
		out = append(out, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, errPayloadShape
	}
	return out, nil
}

// rdbLen reads an RDB length (6, 14, 32 or 64 bits); encoded strings
// (integers, LZF) are not lengths and are refused.
func rdbLen(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0] & 0x3F), b[1:], true
	case 1:
		if len(b) < 2 {
			return 0, nil, false
		}
		return uint64(b[0]&0x3F)<<8 | uint64(b[1]), b[2:], true
	case 2:
		switch {
		case b[0] == 0x80 && len(b) >= 5:
			return uint64(le.BigEndian.Uint32(b[1:5])), b[5:], true
		case b[0] == 0x81 && len(b) >= 9:
			return le.BigEndian.Uint64(b[1:9]), b[9:], true
		}
	}
	return 0, nil, false
}
