package main

import (
	"context"
	le "encoding/binary"
	"fmt"
	"hash/crc64"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
)

// The demo's in-process store is checked against a real redis-server:
// what the front runs itself (RESTORE, MULTI/EXEC, scripts, key tracking)
// must answer as Redis does, and a demo run must leave the same data.

func demoStoreClient(t *testing.T) (*redis.Client, *demoRedis) {
	t.Helper()
	d, err := startDemoRedis(0)
	require.NoError(t, err)
	t.Cleanup(d.close)
	c := redis.NewClient(&redis.Options{Addr: d.addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c, d
}

// hashPayload is what DUMP returns for a hash in RDB type 4 (what the
// migrations build), with its CRC.
func hashPayload(fields ...string) string {
	b := []byte{4, byte(len(fields) / 2)}
	for _, f := range fields {
		b = append(append(b, byte(len(f))), f...)
	}
	b = append(b, 9, 0)
	crc := ^crc64.Update(^uint64(0), crc64.MakeTable(0x95AC9329AC4BC9B5), b)
	return string(le.LittleEndian.AppendUint64(b, crc))
}

// reply is a command's result as compared across servers: the value, or
// an error's code (the first word; the rest of the text differs between
// Redis versions).
func reply(v any, err error) string {
	if err != nil {
		code, _, _ := strings.Cut(err.Error(), " ")
		return "error " + code
	}
	switch x := v.(type) {
	case map[any]any:
		keys := make([]string, 0, len(x))
		for k, e := range x {
			keys = append(keys, fmt.Sprint(k, "=", e))
		}
		sort.Strings(keys)
		return fmt.Sprint(keys)
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = reply(e, nil)
		}
		return "[" + strings.Join(out, " ") + "]"
	}
	return fmt.Sprintf("%T %v", v, v)
}

func TestDemoStoreAnswersLikeRedis(t *testing.T) {
	ctx := context.Background()
	mem, _ := demoStoreClient(t)
	real := servertest.Redis(t).Client(t)
	p := hashPayload("id", "t1", "bytes", "\x00\xff\r\n")
	later := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	past := strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10)
	steps := [][]any{
		{"RESTORE", "h", "0", p},
		{"RESTORE", "h", "0", p},
		{"HGETALL", "h"},
		{"RESTORE", "h", "0", hashPayload("id", "t2"), "REPLACE"},
		{"HGETALL", "h"},
		{"RESTORE", "hx", later, p, "ABSTTL"},
		{"EXISTS", "hx"},
		{"RESTORE", "gone", past, p, "ABSTTL"},
		{"EXISTS", "gone"},
		{"RESTORE", "bad", "0", p[:len(p)-1] + "x"},
		{"RESTORE", "neg", "-1", p},
		{"SET", "s", "v"},
		{"EVAL", "return redis.call('TYPE', KEYS[1]).ok", "1", "h"},
		{"EVAL", "return {redis.call('GET', KEYS[1]), redis.call('GET', 'nope'), 1.9, 'x', true}", "1", "s"},
		{"EVAL", "return redis.call('HGET', KEYS[1], 'id')", "1", "s"},
		{"EVAL", "local r = redis.pcall('HGET', KEYS[1], 'id'); return string.sub(r.err, 1, 9)", "1", "s"},
		{"EVAL", "local r = redis.pcall('RESTORE', KEYS[1], 0, ARGV[1]); if type(r) == 'table' and r.err then return string.sub(r.err, 1, 7) end return r", "1", "h", p},
		{"EVAL", "return redis.pcall('RESTORE', KEYS[1], 0, ARGV[1])", "1", "h2", p},
		{"HGETALL", "h2"},
		{"EVAL", "return {err = 'BUSYKEY mine'}", "0"},
		{"EVAL", "x = 1", "0"},
		{"EVALSHA", "0000000000000000000000000000000000000000", "0"},
		{"SCRIPT", "LOAD", "return #ARGV + tonumber(ARGV[1])"},
		{"EVALSHA", "fa2b9d4b1f8e58b4e2c7a6a3fa1b8a5b1ab1fa2b", "0"},
		{"EVAL", "return unpack(ARGV, 1, 2)", "0", "a", "b", "c"},
		{"EVAL", "return math.floor(tonumber(ARGV[1]) / 1000)", "0", "12345"},
	}
	for i, s := range steps {
		want := reply(real.Do(ctx, s...).Result())
		got := reply(mem.Do(ctx, s...).Result())
		require.Equal(t, want, got, "step %d %q", i, s[:2])
	}
	// A transaction: RESTORE, read, delete, as the migrations' probe does.
	for _, c := range []*redis.Client{real, mem} {
		var got *redis.MapStringStringCmd
		_, err := c.TxPipelined(ctx, func(tx redis.Pipeliner) error {
			tx.Do(ctx, "RESTORE", "probe", 60_000, p)
			got = tx.HGetAll(ctx, "probe")
			tx.Del(ctx, "probe")
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"id": "t1", "bytes": "\x00\xff\r\n"}, got.Val())
		require.Zero(t, c.Exists(ctx, "probe").Val())
	}
	// WATCH: a transaction is aborted when another client wrote a
	// watched key, and runs when none did.
	for _, c := range []*redis.Client{real, mem} {
		for _, touch := range []bool{true, false} {
			err := c.Watch(ctx, func(tx *redis.Tx) error {
				if touch {
					require.NoError(t, c.Set(ctx, "w", "other", 0).Err())
				}
				_, err := tx.TxPipelined(ctx, func(q redis.Pipeliner) error {
					q.Do(ctx, "RESTORE", "wt", 0, p, "REPLACE")
					return nil
				})
				return err
			}, "w")
			if touch {
				require.ErrorIs(t, err, redis.TxFailedErr, "in-process: %v", c == mem)
			} else {
				require.NoError(t, err)
			}
		}
	}
	// A script loaded once runs by its SHA on both.
	sha := mem.ScriptLoad(ctx, "return #ARGV + tonumber(ARGV[1])").Val()
	require.Equal(t, real.ScriptLoad(ctx, "return #ARGV + tonumber(ARGV[1])").Val(), sha)
	require.Equal(t, reply(real.EvalSha(ctx, sha, nil, 5, 6).Result()), reply(mem.EvalSha(ctx, sha, nil, 5, 6).Result()))
}

// TestDemoStoreTracksWritesLikeRedis: the apply's watch on other clients'
// writes (batch/scan.Others) works on the demo's store as on Redis: a key
// another client writes is named, the run's own writes are not, a flush
// ends the watch.
func TestDemoStoreTracksWritesLikeRedis(t *testing.T) {
	ctx := context.Background()
	mem, _ := demoStoreClient(t)
	for name, c := range map[string]*redis.Client{"redis": servertest.Redis(t).Client(t), "demo": mem} {
		o, err := scan.WatchOthers(ctx, c, "tenant:", 0)
		require.NoError(t, err, name)
		require.Empty(t, o.Broken(), name)
		o.Pipelined(ctx, []string{"tenant:own"}, func(p redis.Pipeliner, _ int) { p.HSet(ctx, "tenant:own", "f", "v") })
		require.NoError(t, c.HSet(ctx, "tenant:other", "f", "v").Err())
		require.NoError(t, c.Eval(ctx, "return redis.call('DEL', KEYS[1])", []string{"tenant:own"}).Err())
		require.NoError(t, c.HSet(ctx, "elsewhere", "f", "tenant:x").Err())
		// Reads that miniredis does not mark read-only name nothing: the
		// apply's size probe (MEMORY USAGE in a script) made the front
		// name every key it probed.
		require.NoError(t, c.Eval(ctx, "redis.pcall('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', '0') return 1", []string{"tenant:other"}).Err())
		c.Do(ctx, "MEMORY", "USAGE", "tenant:probed")
		c.Do(ctx, "OBJECT", "ENCODING", "tenant:probed")
		keys, err := o.Sync(ctx)
		require.NoError(t, err, name)
		require.Equal(t, []string{"tenant:other", "tenant:own"}, keys, name)
		require.NoError(t, c.FlushDB(ctx).Err())
		_, err = o.Sync(ctx)
		require.NoError(t, err, name)
		require.NotEmpty(t, o.Broken(), name)
		o.Close()
	}
}

// keyspace is every key of c outside the tool's own state, with its value
// and whether it has a TTL.
func keyspace(t *testing.T, c *redis.Client) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		if strings.Contains(k, "outpost:") {
			continue
		}
		typ := c.Type(ctx, k).Val()
		v := typ
		switch typ {
		case "hash":
			v = reply(c.HGetAll(ctx, k).Val(), nil)
		case "string":
			v = c.Get(ctx, k).Val()
		}
		out[k] = fmt.Sprintf("%s ttl=%v", v, c.PTTL(ctx, k).Val() > 0)
	}
	return out
}

// TestDemoStoreSameResultAsRedis runs the demo on the in-process store and
// on a real redis-server: the same keys with the same values and TTLs,
// the same counts in every step, and no confirming pass on either (the
// watch on other clients works on both).
func TestDemoStoreSameResultAsRedis(t *testing.T) {
	mem, d := demoStoreClient(t)
	srv := servertest.Redis(t)
	stores := []struct {
		host, port string
		c          *redis.Client
	}{{srv.Host, itoa(srv.Port), srv.Client(t)}, {d.host(), d.port(), mem}}
	var spaces []map[string]string
	var counts []string
	for _, s := range stores {
		r := run(t, nil, "demo", "--tenants", "150", "--redis-host", s.host, "--redis-port", s.port)
		require.Equal(t, 0, r.code, r.stderr)
		require.NotContains(t, r.stderr, "confirming pass")
		steps := r.rep["extra"].(map[string]any)["steps"].([]any)
		var c []string
		for _, st := range steps {
			for _, m := range st.(map[string]any)["migrations"].([]any) {
				m := m.(map[string]any)
				c = append(c, fmt.Sprint(m["id"], m["state"], m["counts"]))
			}
		}
		counts = append(counts, strings.Join(c, "\n"))
		spaces = append(spaces, keyspace(t, s.c))
	}
	require.Equal(t, counts[0], counts[1])
	// The fenced copy took RESTORE in transactions, as on Redis, not a
	// script per key.
	require.Less(t, d.front.lua.runs, len(spaces[0])/4)
	require.Greater(t, len(spaces[0]), 500)
	require.Equal(t, spaces[0], spaces[1])
}

// TestDemoStoreNativeCommands: the commands the front answers from
// miniredis's maps itself (demonative.go) answer as a real redis-server
// does, over RESP2 and RESP3, found keys, missing keys and keys of another
// type alike; SCAN MATCH pages as Redis's glob matches. It also fails when
// the front could not reach miniredis's maps (a miniredis upgrade), which
// would leave the demo correct but slow.
func TestDemoStoreNativeCommands(t *testing.T) {
	ctx := context.Background()
	_, d := demoStoreClient(t)
	require.NotNil(t, d.front.ks, "the front reads miniredis's maps")
	srv := servertest.Redis(t)
	later := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	setup := [][]any{
		{"HSET", "h", "a", "1", "b", "2", "c", ""}, // fields in miniredis's order
		{"SET", "s", "v"},
		{"RESTORE", "r", "0", hashPayload("id", "t1", "x", "\x00\r\n")},
		{"RESTORE", "rt", later, hashPayload("id", "t2"), "ABSTTL"},
		{"HSET", "tenant:1", "f", "v"}, {"HSET", "tenant:2:destination:d", "f", "v"},
		{"SET", "", "empty name"}, {"SET", "tenant:[x]", "v"}, {"SET", "tenant:*", "v"}, {"SET", "tenant:ab", "v"},
	}
	steps := [][]any{
		{"HGETALL", "h"}, {"HGETALL", "r"}, {"HGETALL", "nope"}, {"HGETALL", "s"},
		{"HLEN", "h"}, {"HLEN", "nope"}, {"HLEN", "s"},
		{"HMGET", "h", "a", "zz", "c"}, {"HMGET", "nope", "a"}, {"HMGET", "s", "a"},
		{"PEXPIRETIME", "h"}, {"PEXPIRETIME", "nope"}, {"PEXPIRETIME", "s"},
		{"EXISTS", "h", "nope", "s", "h"},
		{"EVAL", "return redis.call('PEXPIRETIME', KEYS[1]) > 0", "1", "rt"},
		{"EVAL", "return {redis.call('HLEN', KEYS[1]), redis.pcall('HLEN', KEYS[2]).err ~= nil, redis.call('EXISTS', KEYS[1], KEYS[3])}", "3", "h", "s", "nope"},
		{"EVAL", "return redis.call('HGETALL', KEYS[1])", "1", "r"},
		{"HGETALL"}, {"HLEN", "h", "x"}, {"EXISTS"}, {"HMGET", "h"},
	}
	patterns := []string{"*", "tenant:*", "tenant:?", "tenant:[12]*", "tenant:[^1]*", "tenant:[a-b]?", "tenant:\\*", "tenant:\\[x]", "*:destination:*", "tenant:[x", "nothing*", "h"}
	for _, proto := range []int{2, 3} {
		mem := redis.NewClient(&redis.Options{Addr: d.addr(), Protocol: proto})
		real := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port)), Protocol: proto})
		for _, c := range []*redis.Client{mem, real} {
			require.NoError(t, c.FlushDB(ctx).Err())
			for _, s := range setup {
				require.NoError(t, c.Do(ctx, s...).Err(), "%v", s)
			}
		}
		for i, s := range steps {
			want := reply(real.Do(ctx, s...).Result())
			got := reply(mem.Do(ctx, s...).Result())
			require.Equal(t, want, got, "RESP%d step %d %q", proto, i, s)
		}
		// MEMORY USAGE of a hash, as the apply's size probe asks it:
		// Redis's count (listpack or dict, jemalloc's size classes), or a
		// little over it where Redis stores integers in fewer bytes.
		for _, k := range []string{"h", "r", "tenant:1", "big", "wide", "mid"} {
			var got, want []int64
			for i, c := range []*redis.Client{mem, real} {
				if k == "big" {
					require.NoError(t, c.HSet(ctx, k, "v", strings.Repeat("x", 100_000), "n", "12345").Err())
				}
				for f := 0; k == "wide" && f < 200; f++ {
					require.NoError(t, c.HSet(ctx, k, fmt.Sprint("field-", f), fmt.Sprint("value ", f)).Err())
				}
				if k == "mid" {
					require.NoError(t, c.HSet(ctx, k, "a", strings.Repeat("y", 100), "b", "z").Err())
				}
				direct, err := c.Do(ctx, "MEMORY", "USAGE", k, "SAMPLES", "0").Int64()
				require.NoError(t, err)
				scripted, err := c.Eval(ctx, "return redis.pcall('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', '0')", []string{k}).Int64()
				require.NoError(t, err)
				if i == 0 {
					got = []int64{direct, scripted}
				} else {
					want = []int64{direct, scripted}
				}
			}
			for i := range got {
				require.GreaterOrEqual(t, got[i], want[i], "MEMORY USAGE %s", k)
				require.LessOrEqual(t, got[i], want[i]+want[i]/8, "MEMORY USAGE %s", k)
			}
		}
		require.Equal(t, reply(real.Do(ctx, "MEMORY", "USAGE", "nope").Result()), reply(mem.Do(ctx, "MEMORY", "USAGE", "nope").Result()))
		for _, p := range patterns {
			want, err := real.Keys(ctx, p).Result()
			require.NoError(t, err)
			got := []string{}
			iter := mem.Scan(ctx, 0, p, 2).Iterator()
			for iter.Next(ctx) {
				got = append(got, iter.Val())
			}
			require.NoError(t, iter.Err())
			sort.Strings(want)
			sort.Strings(got)
			require.Equal(t, want, got, "SCAN MATCH %q", p)
		}
		_ = mem.Close()
		_ = real.Close()
	}
}

// TestGlobMatchLikeRedis: Redis's own stringmatchlen cases (its
// util.c tests) and the corners of classes and escapes.
func TestGlobMatchLikeRedis(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*", "", false}, {"*", "abc", true}, {"a*c", "abc", true}, {"a*c", "abd", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"[abc]", "b", true}, {"[^abc]", "b", false},
		{"[a-c]x", "bx", true}, {"[c-a]x", "bx", true}, {"[a-c]x", "dx", false}, {"\\*", "*", true},
		{"\\*", "a", false}, {"[\\]]", "]", true}, {"[x", "x", true}, {"[x", "y", false}, {"a\\", "a\\", true},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 60), false}, {"", "", true}, {"", "a", false},
		{"a**", "a", true}, {"?*", "", false},
	} {
		require.Equal(t, c.want, globMatch(c.p, c.s), "%q ~ %q", c.p, c.s)
	}
}

// TestCRCRedisIsRedisCRC: the front's eight-bytes-a-step CRC is the
// CRC-64 Redis puts in a DUMP payload (crc64 with the Jones polynomial,
// initial 0, no final XOR), for every length around the step.
func TestCRCRedisIsRedisCRC(t *testing.T) {
	jones := crc64.MakeTable(0x95AC9329AC4BC9B5)
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(i*7 + i>>3)
	}
	for n := 0; n <= len(b); n++ {
		require.Equal(t, ^crc64.Update(^uint64(0), jones, b[:n]), crcRedis(string(b[:n])), "length %d", n)
	}
	// Redis's own test vector (crc64.c): "123456789".
	require.Equal(t, uint64(0xe9c6d914c4b8d9ca), crcRedis("123456789"))
}
