package redismigrations

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/luascript"
	"github.com/outpost-migrate/outpost/batch/rediserr"
)

// Records against the server's limits (issue #22). One reply to a client
// may not exceed the normal clients' client-output-buffer-limit (the server
// closes the connection: every command in flight fails with EOF), one
// argument may not exceed proto-max-bulk-len (the server refuses the
// command and closes the connection too). A record whose HGETALL or whose
// RESTORE payload would cross either killed the whole chunk, retryably,
// naming whichever key came first, on every rerun; a record of 500k fields
// made the tool hold it whole, several times over (195 MB).
//
// So before a chunk's legacy records are read, HLEN counts their fields
// and, for the records of few fields, MEMORY USAGE their bytes, in one
// read-only script (recordSizes; the bytes cost about 1 µs of server time
// a key, 3.8% of the apply's, measured by BenchmarkProbeCost; MEMORY USAGE
// pipelined for every key, tried first, cost 2-3 µs, 11-17%).
// Records of more than bigFields fields or bigAt bytes are copied one by
// one, piece by piece (big.go); the others are read in groups of at most
// groupFields fields, each as before in one pipeline. A record read whole
// that turns out larger than bigAt bytes (it grew since it was sized, or
// its server could not say its bytes) is written piece by piece too. A pipeline whose connection the server closed (a reply over
// its output buffer) is redone record by record, piece by piece, which
// finds the one too big. A field name or value that cannot cross the
// limits at all is a per-key failure naming the key, the field, its size
// and the limit; the rest of the run goes on.
const (
	// bigRecordBytes is the size above which a record read whole is
	// written piece by piece (lower when the server's limits are lower).
	bigRecordBytes = 1 << 20
	// pieceBytes bounds the field names and values of one read and one
	// write of a record copied piece by piece (one value larger than this,
	// within the limits, goes alone).
	pieceBytes = 1 << 20
	// bigFields is the field count above which a record is copied piece
	// by piece; groupFields bounds the fields of the records read in one
	// pipeline.
	bigFields   = 2000
	groupFields = 20_000
	// defaultBulk is Redis's default proto-max-bulk-len, assumed when the
	// server does not say.
	defaultBulk = 512 << 20
)

// serverLimits are the limits of one server (the smallest over the masters
// of a cluster) that bound what one reply and one argument may carry.
type serverLimits struct {
	outBuf int64 // normal clients' client-output-buffer-limit: the smaller non-zero of hard and soft; 0: none
	bulk   int64 // proto-max-bulk-len
	// unknown says why the limits could not be read ("": they were);
	// Redis's defaults are assumed then.
	unknown string
}

// limitState is what a Set keeps about its server's limits.
type limitState struct {
	once   sync.Once
	limits serverLimits
	// closed are the values the server closed the connection on in this
	// run while its limits were unknown (closedOnValue), by key: no
	// listing of lengths can tell them, so the confirming pass and verify
	// name them from here while they keep their size (blocker).
	mu     sync.Mutex
	closed map[string]closedValue
}

// closedValue is a value the server would not send: its field, its size
// and why it cannot be copied.
type closedValue struct {
	field, why string
	n          int64
}

// maxClosed bounds limitState.closed.
const maxClosed = 10_000

// rememberClosed records that the server would not send field of k (n
// bytes).
func (s *Set) rememberClosed(k string, v closedValue) {
	s.big.mu.Lock()
	defer s.big.mu.Unlock()
	if s.big.closed == nil {
		s.big.closed = map[string]closedValue{}
	}
	if len(s.big.closed) < maxClosed {
		s.big.closed[k] = v
	}
}

// blocker is bigBlocker, first asking what this run found the server
// would not send of k, when that value still has the same size.
func (s *Set) blocker(ctx context.Context, k string, l serverLimits) (field, why string, err error) {
	s.big.mu.Lock()
	v, ok := s.big.closed[k]
	s.big.mu.Unlock()
	if ok {
		n, err := s.c.HStrLen(ctx, k, v.field).Result()
		if err != nil && !isKeyError(err) {
			return "", "", err
		}
		if err == nil && n == v.n {
			return v.field, v.why, nil
		}
	}
	return s.bigBlocker(ctx, k, l)
}

// serverLimits reads the limits once per Set: CONFIG GET on every master.
func (s *Set) serverLimits(ctx context.Context) serverLimits {
	s.big.once.Do(func() { s.big.limits = readLimits(ctx, s.c) })
	return s.big.limits
}

func readLimits(ctx context.Context, c goredis.UniversalClient) serverLimits {
	var nodes []*goredis.Client
	var mu sync.Mutex
	switch v := c.(type) {
	case *goredis.Client:
		nodes = append(nodes, v)
	case *goredis.ClusterClient:
		_ = v.ForEachMaster(ctx, func(_ context.Context, n *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, n)
			return nil
		})
	}
	out := serverLimits{bulk: defaultBulk}
	for _, n := range nodes {
		ob, err := n.ConfigGet(ctx, "client-output-buffer-limit").Result()
		if err == nil {
			var bl map[string]string
			if bl, err = n.ConfigGet(ctx, "proto-max-bulk-len").Result(); err == nil {
				if v, perr := strconv.ParseInt(bl["proto-max-bulk-len"], 10, 64); perr == nil && v > 0 {
					out.bulk = min(out.bulk, v)
				}
			}
		}
		if err != nil {
			return serverLimits{bulk: defaultBulk, unknown: "CONFIG GET refused (" + err.Error() + ")"}
		}
		if v := normalOutBuf(ob["client-output-buffer-limit"]); v > 0 && (out.outBuf == 0 || v < out.outBuf) {
			out.outBuf = v
		}
	}
	return out
}

// normalOutBuf reads the normal class of a client-output-buffer-limit
// value ("normal 0 0 0 replica 268435456 67108864 60 pubsub ..."): the
// smaller non-zero of its hard and soft limits (a soft limit exceeded long
// enough closes the connection too), 0 for none.
func normalOutBuf(v string) int64 {
	f := strings.Fields(v)
	for i := 0; i+2 < len(f); i += 4 {
		if f[i] != "normal" {
			continue
		}
		var out int64
		for _, s := range f[i+1 : i+3] {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && (out == 0 || n < out) {
				out = n
			}
		}
		return out
	}
	return 0
}

// bound is the smaller of def and a quarter of each limit: what one read or
// write may carry with room to spare (replies are allocated in size
// classes, payloads carry length prefixes).
func (l serverLimits) bound(def int64) int64 {
	v := min(def, l.bulk/4)
	if l.outBuf > 0 {
		v = min(v, l.outBuf/4)
	}
	return max(v, 1)
}

func (l serverLimits) bigAt() int64   { return l.bound(bigRecordBytes) }
func (l serverLimits) pieceAt() int64 { return l.bound(pieceBytes) }

// tooBig says why a field name or value of n bytes cannot be copied ("":
// it can). A reply is held whole in the server's output buffer, allocated
// in size classes up to 25% apart: one of n bytes needs n + n/4 and some
// headroom under client-output-buffer-limit. A write carries it as one
// argument: at most proto-max-bulk-len.
func (l serverLimits) tooBig(n int64) string {
	if l.outBuf > 0 && n+n/4+64<<10 > l.outBuf {
		return fmt.Sprintf("%d bytes: over what the server sends one client at once (client-output-buffer-limit for normal clients: %d bytes), so it cannot be read; raise the limit (CONFIG SET client-output-buffer-limit \"normal 0 0 0\", and in redis.conf) and rerun apply; the record is not copied", n, l.outBuf)
	}
	if n > l.bulk {
		return fmt.Sprintf("%d bytes: over the largest argument the server accepts (proto-max-bulk-len: %d bytes), so it cannot be written; raise the limit (CONFIG SET proto-max-bulk-len %d, and in redis.conf) and rerun apply; the record is not copied", n, l.bulk, (n>>20+2)<<20)
	}
	return ""
}

// sizesScript returns, per key of KEYS, its field count (HLEN) and, when
// that is at most ARGV[1] and ARGV[2] is "1", the bytes it takes (MEMORY
// USAGE with SAMPLES 0: every field counted, exact for a listpack, in O(1);
// for a hash table one allocation size per field, so at most bigFields of
// them); 0 for a key gone or not a hash (its read reports that), and bytes
// 0 when not asked. Read-only.
var sizesScript = goredis.NewScript("local keys = KEYS\n" + sizesBody)

// sizesCrossSlotScript is sizesScript for the keys of one master of a
// cluster, of many slots: named in ARGV from 3 on, KEYS[1] (the first of
// them) routing the call; the flag (Redis 7.0 on) lets it read keys of the
// other slots of that node.
var sizesCrossSlotScript = goredis.NewScript("#!lua flags=no-writes,allow-cross-slot-keys\n" +
	"local keys = {}\nfor i = 3, #ARGV do keys[#keys + 1] = ARGV[i] end\n" + sizesBody)

const sizesBody = `
local cap = tonumber(ARGV[1])
local bytes = ARGV[2] == '1'
local out = {}
for i, k in ipairs(keys) do
  local n = redis.pcall('HLEN', k)
  if type(n) ~= 'number' then n = 0 end
  local b = 0
  if bytes and n > 0 and n <= cap then
    b = redis.pcall('MEMORY', 'USAGE', k, 'SAMPLES', '0')
    if type(b) ~= 'number' then b = 0 end
  end
  out[2 * i - 1] = n
  out[2 * i] = b
end
return out
`

// probeBytes says whether the size probe asks the bytes of the records of
// few fields (sizesScript): a record of a few huge values is then found
// before it is read whole. A variable only for the side-by-side
// measurement of its cost (TestProbeCost).
var probeBytes = true

// recSize is what the size probe says of one record: its field count and,
// where asked (a standalone server, at most bigFields fields), the bytes
// it takes in the server's memory (an upper bound of its data); 0: not
// known.
type recSize struct{ fields, bytes int64 }

// recordSizes probes every key (sizesScript): on a standalone server in
// one script, which costs the server about half of a pipelined HLEN per
// key (no command to parse, no reply to write per key); on a cluster in
// one script per master (sizesCrossSlotScript). Where the server will not
// run it (a cluster before Redis 7.0, a slot that moved), with HLEN in one
// pipeline and no bytes: a record of a few huge values is then found when
// read (its connection closed by the server, or its size once read).
func (s *Set) recordSizes(ctx context.Context, keys []string) ([]recSize, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	flag := "0"
	if probeBytes {
		flag = "1"
	}
	switch c := s.c.(type) {
	case *goredis.Client:
		res, err := luascript.Run(ctx, s.c, sizesScript, keys, bigFields, flag).Int64Slice()
		if out, ok := sizesOf(res, err, len(keys)); ok {
			return out, nil
		}
		if err != nil && !isServerReply(err) {
			return nil, pipeErr(err, "HLEN of", keys, 0)
		}
		// A server that will not run it: the pipeline below.
	case *goredis.ClusterClient:
		out, ok, err := s.clusterSizes(ctx, c, keys, flag)
		if err != nil || ok {
			return out, err
		}
	}
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HLen(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]recSize, len(keys))
	for i := range keys {
		n, err := cmds[i].Result()
		switch {
		case err == nil:
			out[i].fields = n
		case isKeyError(err):
		default:
			return nil, pipeErr(err, "HLEN", keys, i)
		}
	}
	return out, nil
}

// sizesOf reads a sizes script's reply for n keys; ok false when it is
// not one.
func sizesOf(res []int64, err error, n int) ([]recSize, bool) {
	if err != nil || len(res) != 2*n {
		return nil, false
	}
	out := make([]recSize, n)
	for i := range out {
		out[i] = recSize{fields: res[2*i], bytes: res[2*i+1]}
	}
	return out, true
}

// clusterSizes runs sizesCrossSlotScript once per master over its keys.
// ok is false (and err nil) when a master will not run it as such: the
// caller falls back to HLEN.
func (s *Set) clusterSizes(ctx context.Context, cc *goredis.ClusterClient, keys []string, flag string) (out []recSize, ok bool, err error) {
	if s.noCrossSlot.Load() {
		return nil, false, nil
	}
	byAddr := map[string][]int{}
	for i, k := range keys {
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			return nil, false, nil
		}
		byAddr[m.Options().Addr] = append(byAddr[m.Options().Addr], i)
	}
	out = make([]recSize, len(keys))
	for _, idx := range byAddr {
		names := pick(keys, idx)
		args := make([]any, 0, 2+len(names))
		args = append(args, bigFields, flag)
		for _, k := range names {
			args = append(args, k)
		}
		res, err := luascript.Run(ctx, cc, sizesCrossSlotScript, names[:1], args...).Int64Slice()
		got, ok := sizesOf(res, err, len(names))
		if !ok {
			if err != nil && !isServerReply(err) {
				return nil, false, pipeErr(err, "HLEN of", names, 0)
			}
			if err != nil && (strings.Contains(err.Error(), "compiling") || strings.Contains(err.Error(), "flag")) {
				s.noCrossSlot.Store(true)
			}
			return nil, false, nil
		}
		for j, i := range idx {
			out[i] = got[j]
		}
	}
	return out, true, nil
}

// groupBytes bounds the bytes (as the probe knows them) of the records
// read in one pipeline, below a quarter of the server's limits.
const groupBytes = 16 << 20

// splitBySize sorts keys by their sizes into groups of at most groupFields
// fields and groupAt bytes, read whole, and the big ones (over bigFields
// fields, or over bigAt bytes), which go one by one, piece by piece. It
// works on indexes into sizes.
func splitBySize(sizes []recSize, l serverLimits) (groups [][]int, big []int) {
	var group []int
	var fields, bytes int64
	for i, sz := range sizes {
		if sz.fields > bigFields || sz.bytes > l.bigAt() {
			big = append(big, i)
			continue
		}
		if len(group) > 0 && (fields+sz.fields > groupFields || bytes+sz.bytes > l.bound(groupBytes)) {
			groups, group, fields, bytes = append(groups, group), nil, 0, 0
		}
		group, fields, bytes = append(group, i), fields+sz.fields, bytes+sz.bytes
	}
	if len(group) > 0 {
		groups = append(groups, group)
	}
	return groups, big
}

// splitKeys is splitBySize over keys, by name.
func (s *Set) splitKeys(ctx context.Context, keys []string) (groups [][]string, big []string, err error) {
	sizes, err := s.recordSizes(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	gi, bi := splitBySize(sizes, s.serverLimits(ctx))
	for _, g := range gi {
		groups = append(groups, pick(keys, g))
	}
	return groups, pick(keys, bi), nil
}

// pick is keys at the indexes idx.
func pick(keys []string, idx []int) []string {
	if len(idx) == 0 {
		return nil
	}
	out := make([]string, len(idx))
	for j, i := range idx {
		out[j] = keys[i]
	}
	return out
}

// errConnLost marks a read pipeline whose connection failed: the server
// may have closed it over one reply too big for its output buffer.
var errConnLost = errors.New("the connection failed mid-pipeline")

// lostOverReply says whether err is a read pipeline's lost connection on a
// server that still answers: then one of its replies was likely over the
// output buffer limit, and its records are to be redone one by one.
func (s *Set) lostOverReply(ctx context.Context, err error) bool {
	return errors.Is(err, errConnLost) && ctx.Err() == nil && s.c.Ping(ctx).Err() == nil
}

// pipeErr words the failure of command i of a pipeline over keys. A reply
// of the server is about that key and names it; a connection that failed
// fails every command in flight alike, so no key is named (issue #22: a
// connection the server closed over one big record blamed another key).
func pipeErr(err error, doing string, keys []string, i int) error {
	if isServerReply(err) {
		return rediserr.Classify(err, doing+" "+keys[i])
	}
	return rediserr.Classify(err, fmt.Sprintf("%s %d keys in one pipeline (the connection failed: no one key of them is to blame)", doing, len(keys)))
}

// isServerReply says whether err is the server's reply to a command (as
// opposed to a connection or client failure).
func isServerReply(err error) bool {
	var re goredis.Error
	return errors.As(err, &re)
}
