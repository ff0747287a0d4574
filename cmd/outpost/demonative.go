package main

import (
	"math/bits"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/alicebob/miniredis/v2"
)

// The commands the apply sends most (a read of every key and its TTL, an
// HLEN per key in the batch scripts, a RESTORE per copy, SCAN) cost
// miniredis far more than redis-server: each takes its lock twice (once to
// check AUTH), HGETALL sorts the fields and formats every reply element
// with fmt, HSET stamps the key's LRU time and version once per field, and
// a full SCAN formats and re-parses every key. In one process with the
// tool, one global lock, that made the demo's store the apply's
// bottleneck (OUTPOST_CPUPROFILE on a 10,000-tenant demo: 1.0 s of the
// store's CPU in a 1.1 s apply).
//
// demoKeyspace reads and writes miniredis's database 0 itself for those
// commands, under miniredis's lock, with miniredis's data structures: the
// maps of its RedisDB, reached through reflect because miniredis does not
// export them. Every other command, and these in any shape the front does
// not take (wrong arity, a subscribed RESP2 connection, another database),
// still goes to miniredis. The fields are checked by name and type at
// start; with a miniredis whose RedisDB differs the front sends everything
// to miniredis (the demo is then slower, not wrong), and
// TestDemoStoreNativeCommands fails so that the upgrade is noticed.
type demoKeyspace struct {
	dbs *map[int]*miniredis.RedisDB
	// Offsets of RedisDB's fields.
	keys, hashes, ttl, lru, version uintptr
	out                             []byte   // reply scratch (lock held)
	fields                          []string // HGETALL's scratch (lock held)
}

// demoDB is one RedisDB's maps, as miniredis keeps them.
type demoDB struct {
	keys    map[string]string // key -> type ("hash", "string", ...)
	hashes  map[string]map[string]string
	ttl     map[string]time.Duration // remaining TTL
	lru     map[string]time.Time
	version map[string]uint // WATCH versions
}

// newDemoKeyspace finds the fields; nil when miniredis's layout is not
// the one this file was written for.
func newDemoKeyspace(mr *miniredis.Miniredis) *demoKeyspace {
	mt := reflect.TypeOf(miniredis.Miniredis{})
	df, ok := mt.FieldByName("dbs")
	if !ok || df.Type != reflect.TypeOf(map[int]*miniredis.RedisDB{}) {
		return nil
	}
	rt := reflect.TypeOf(miniredis.RedisDB{})
	k := &demoKeyspace{}
	for _, f := range []struct {
		name string
		want reflect.Type
		off  *uintptr
	}{
		{"keys", reflect.TypeOf(map[string]string{}), &k.keys},
		{"hashKeys", nil, &k.hashes},
		{"ttl", reflect.TypeOf(map[string]time.Duration{}), &k.ttl},
		{"lru", reflect.TypeOf(map[string]time.Time{}), &k.lru},
		{"keyVersion", reflect.TypeOf(map[string]uint{}), &k.version},
	} {
		sf, ok := rt.FieldByName(f.name)
		if !ok {
			return nil
		}
		if f.want == nil {
			// map[string]hashKey, hashKey being map[string]string.
			if t := sf.Type; t.Kind() != reflect.Map || t.Key().Kind() != reflect.String ||
				!t.Elem().ConvertibleTo(reflect.TypeOf(map[string]string{})) || t.Elem().Kind() != reflect.Map {
				return nil
			}
		} else if sf.Type != f.want {
			return nil
		}
		*f.off = sf.Offset
	}
	mr.DB(0) // created now, so that db0 finds it
	k.dbs = (*map[int]*miniredis.RedisDB)(unsafe.Add(unsafe.Pointer(mr), df.Offset))
	return k
}

// presize makes database 0's key maps, while empty, ready for keys keys
// (lock held): the seed and the apply then add keys to them without the
// maps growing, rehashing every key as they go.
func (k *demoKeyspace) presize(keys int) {
	db := (*k.dbs)[0]
	if db == nil || keys <= 0 {
		return
	}
	// A demo of a million tenants grows its maps as it goes: what is
	// set aside up front stays under ~150 MiB.
	keys = min(keys, maxPresize)
	p := unsafe.Pointer(db)
	if m := (*map[string]string)(unsafe.Add(p, k.keys)); len(*m) == 0 {
		*m = make(map[string]string, keys)
	}
	if m := (*map[string]map[string]string)(unsafe.Add(p, k.hashes)); len(*m) == 0 {
		*m = make(map[string]map[string]string, keys)
	}
	if m := (*map[string]time.Time)(unsafe.Add(p, k.lru)); len(*m) == 0 {
		*m = make(map[string]time.Time, keys)
	}
	if m := (*map[string]uint)(unsafe.Add(p, k.version)); len(*m) == 0 {
		*m = make(map[string]uint, keys)
	}
}

const maxPresize = 1 << 20

// db0 is database 0's maps (lock held). Looked up on every command:
// SWAPDB and FLUSHDB replace them.
func (k *demoKeyspace) db0() (demoDB, bool) {
	db := (*k.dbs)[0]
	if db == nil {
		return demoDB{}, false
	}
	p := unsafe.Pointer(db)
	return demoDB{
		keys:    *(*map[string]string)(unsafe.Add(p, k.keys)),
		hashes:  *(*map[string]map[string]string)(unsafe.Add(p, k.hashes)),
		ttl:     *(*map[string]time.Duration)(unsafe.Add(p, k.ttl)),
		lru:     *(*map[string]time.Time)(unsafe.Add(p, k.lru)),
		version: *(*map[string]uint)(unsafe.Add(p, k.version)),
	}, true
}

// nativeCmd are the commands demoKeyspace answers itself, and how many
// arguments (the name included) it takes them with: exactly, or at least
// when negative.
var nativeCmd = map[string]int{"HGETALL": 2, "HLEN": 2, "PEXPIRETIME": 2, "EXISTS": -2, "HMGET": -3}

// takes says whether the front answers args itself (name upper-cased).
func (k *demoKeyspace) takes(c *demoConn, name string, args []string) bool {
	if k == nil || c.subscribed {
		return false
	}
	if name == "MEMORY" {
		return isMemoryUsage(args)
	}
	n, ok := nativeCmd[name]
	return ok && (len(args) == n || (n < 0 && len(args) >= -n))
}

// isMemoryUsage: MEMORY USAGE key [SAMPLES n], as the apply's size probe
// sends it.
func isMemoryUsage(args []string) bool {
	if len(args) < 3 || !strings.EqualFold(args[1], "USAGE") {
		return false
	}
	if len(args) == 3 {
		return true
	}
	if len(args) != 5 || !strings.EqualFold(args[3], "SAMPLES") {
		return false
	}
	n, err := strconv.Atoi(args[4])
	return err == nil && n >= 0
}

const msgWrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"

// answer runs a command takes accepted (lock held) and returns its reply
// as miniredis would give it (valid until the next call); nil when
// database 0 does not exist yet.
func (k *demoKeyspace) answer(resp3 bool, name string, args []string) []byte {
	db, ok := k.db0()
	if !ok {
		return nil
	}
	b := k.out[:0]
	key := args[1]
	if name == "MEMORY" {
		key = args[2]
	}
	t, exists := db.keys[key]
	switch name {
	case "MEMORY":
		switch {
		case !exists:
			b = appendNull(b, resp3)
		case t != "hash":
			return nil // miniredis's
		default:
			b = appendHeader(b, ':', memoryUsage(key, db.hashes[key]))
		}
	case "HGETALL":
		switch {
		case !exists:
			b = appendMapLen(b, 0, resp3)
		case t != "hash":
			b = append(b, msgWrongType...)
		default:
			h := db.hashes[key]
			fields := k.fields[:0]
			for f := range h {
				fields = append(fields, f)
			}
			slices.Sort(fields) // miniredis's order
			b = appendMapLen(b, len(h), resp3)
			for _, f := range fields {
				b = appendBulk(appendBulk(b, f), h[f])
			}
			clear(fields)
			k.fields = fields
		}
	case "HMGET":
		if exists && t != "hash" {
			b = append(b, msgWrongType...)
			break
		}
		h := db.hashes[key]
		b = appendHeader(b, '*', len(args)-2)
		for _, f := range args[2:] {
			if v, ok := h[f]; ok {
				b = appendBulk(b, v)
			} else {
				b = appendNull(b, resp3)
			}
		}
	default:
		n, wrongType := db.intReply(name, args)
		if wrongType {
			b = append(b, msgWrongType...)
		} else {
			b = appendHeader(b, ':', n)
		}
	}
	k.out = b
	return b
}

// intReply answers HLEN, PEXPIRETIME and EXISTS as miniredis does (lock
// held): the integer, or wrongType.
func (db demoDB) intReply(name string, args []string) (n int, wrongType bool) {
	key := args[1]
	t, exists := db.keys[key]
	switch name {
	case "HLEN":
		if exists && t != "hash" {
			return 0, true
		}
		return len(db.hashes[key]), false
	case "PEXPIRETIME":
		ttl, has := db.ttl[key]
		switch {
		case !exists:
			return -2, false
		case !has:
			return -1, false
		}
		return int(time.Now().Add(ttl).UnixMilli()), false
	}
	// EXISTS, as miniredis's: each key found counts, and is used.
	now := time.Now().UTC()
	for _, a := range args[1:] {
		if _, ok := db.keys[a]; ok {
			db.lru[a] = now
			n++
		}
	}
	return n, false
}

// intValue is intReply for a script's redis.call (lock held); ok is false
// for the commands it does not answer.
func (k *demoKeyspace) intValue(c *demoConn, name string, args []string) (n int, errMsg string, ok bool) {
	if name == "HGETALL" || name == "HMGET" || !k.takes(c, name, args) {
		return 0, "", false
	}
	db, ok := k.db0()
	if !ok {
		return 0, "", false
	}
	if name == "MEMORY" {
		if db.keys[args[2]] != "hash" {
			return 0, "", false // null, or miniredis's
		}
		return memoryUsage(args[2], db.hashes[args[2]]), "", true
	}
	n, wrongType := db.intReply(name, args)
	if wrongType {
		return 0, msgWrongType[1 : len(msgWrongType)-2], true
	}
	return n, "", true
}

// createHash makes key, which does not exist, a hash of fields (pairs),
// as miniredis's HSET would (lock held); false when database 0 does not
// exist yet.
func (k *demoKeyspace) createHash(key string, fields []string) bool {
	db, ok := k.db0()
	if !ok {
		return false
	}
	h := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		h[fields[i]] = fields[i+1]
	}
	db.keys[key] = "hash"
	db.hashes[key] = h
	db.lru[key] = time.Now().UTC()
	db.version[key]++
	return true
}

// exists is whether key exists in database 0 (lock held).
func (k *demoKeyspace) exists(key string) bool {
	db, ok := k.db0()
	if !ok {
		return false
	}
	_, ok = db.keys[key]
	return ok
}

// matching is database 0's keys that match the glob pattern ("" for all),
// sorted as miniredis sorts them (lock held).
func (k *demoKeyspace) matching(pattern string) []string {
	db, ok := k.db0()
	if !ok {
		return nil
	}
	out := make([]string, 0, len(db.keys))
	for key := range db.keys {
		// "*" takes every key, even "" (which globMatch does not match),
		// as on Redis.
		if pattern == "" || pattern == "*" || globMatch(pattern, key) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

func appendHeader(b []byte, kind byte, n int) []byte {
	b = append(b, kind)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

func appendBulk(b []byte, s string) []byte {
	b = appendHeader(b, '$', len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendNull(b []byte, resp3 bool) []byte {
	if resp3 {
		return append(b, "_\r\n"...)
	}
	return append(b, "$-1\r\n"...)
}

func appendMapLen(b []byte, n int, resp3 bool) []byte {
	if resp3 {
		return appendHeader(b, '%', n)
	}
	return appendHeader(b, '*', 2*n)
}

// memoryUsage is MEMORY USAGE of a hash as Redis 7 counts it (object.c,
// every field sampled): the key's string and dict entry, then a listpack
// (up to 512 fields of at most 64 bytes: Redis's defaults) or a dict of
// strings, each allocation rounded up to jemalloc's size class. Listpack
// entries are counted as strings; Redis stores the integer-looking ones
// in fewer bytes, so the count can be a little over Redis's, never under
// (the apply takes it as an upper bound of a record's size).
func memoryUsage(key string, h map[string]string) int {
	n := mallocSize(sdsAlloc(len(key))) + 24
	listpack := len(h) <= 512
	for f, v := range h {
		if len(f) > 64 || len(v) > 64 {
			listpack = false
			break
		}
	}
	if listpack {
		lp := 7 // header and end
		for f, v := range h {
			lp += lpEntry(len(f)) + lpEntry(len(v))
		}
		return n + 16 + mallocSize(lp)
	}
	slots := 4
	for slots < len(h) {
		slots <<= 1
	}
	n += 16 + 56 + 8*slots // the object, the dict, its table
	for f, v := range h {
		n += mallocSize(sdsAlloc(len(f))) + mallocSize(sdsAlloc(len(v))) + 24
	}
	return n
}

// sdsAlloc is the bytes Redis allocates for a string of n bytes: its
// header (by length), the bytes, a NUL.
func sdsAlloc(n int) int {
	switch {
	case n < 1<<5:
		return 1 + n + 1
	case n < 1<<8:
		return 3 + n + 1
	case n < 1<<16:
		return 5 + n + 1
	}
	return 9 + n + 1
}

// lpEntry is the bytes of a string of n bytes in a listpack: its
// encoding, the bytes, its back length.
func lpEntry(n int) int {
	e := 1 + n
	switch {
	case n >= 4096:
		e = 5 + n
	case n >= 64:
		e = 2 + n
	}
	switch {
	case e < 128:
		return e + 1
	case e < 16384:
		return e + 2
	}
	return e + 3
}

// mallocSize is jemalloc's size class for n bytes: 8, multiples of 16 up
// to 128, then four classes per power of two.
func mallocSize(n int) int {
	switch {
	case n <= 8:
		return 8
	case n <= 128:
		return (n + 15) &^ 15
	}
	step := 1 << (bits.Len(uint(n-1)) - 3)
	return (n + step - 1) &^ (step - 1)
}
