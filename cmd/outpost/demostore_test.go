package main

import (
	"context"
	le "encoding/binary"
	"fmt"
	"hash/crc64"
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
	d, err := startDemoRedis()
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
	// The fenced copy's script ran in Go: its text is the migrations'.
	require.Greater(t, d.front.lua.native, 100, "restoreScriptText is no longer the migrations' restoreScript: update it from migrations/redismigrations/scripts.go")
	require.Greater(t, len(spaces[0]), 500)
	require.Equal(t, spaces[0], spaces[1])
}

// TestDemoStoreNativeScriptAnswersLikeRedis: the migrations' RESTORE
// script, which the demo's store runs in Go, answers as Redis running its
// text does, case by case.
func TestDemoStoreNativeScriptAnswersLikeRedis(t *testing.T) {
	ctx := context.Background()
	mem, d := demoStoreClient(t)
	real := servertest.Redis(t).Client(t)
	p := hashPayload("id", "t1")
	now := time.Now().UnixMilli()
	ms := func(d time.Duration) string { return strconv.FormatInt(now+d.Milliseconds(), 10) }
	cases := [][]any{
		{2, "twin", "lock", "0", "v1", "0", "0", p},                // created
		{2, "twin", "lock", "0", "v1", "0", "0", p},                // exists
		{2, "twin2", "lock", "0", "other", "0", "0", p},            // the lock holds another value
		{2, "twin2", "lock", ms(-time.Second), "v1", "0", "0", p},  // past the deadline
		{2, "twin2", "lock", ms(time.Minute), "v1", "0", "0", p},   // before it
		{2, "twin3", "hlock", "0", "v1", "0", "0", p},              // the lock is not a string
		{2, "twin3", "nolock", "0", "v1", "0", "0", p},             // no lock
		{1, "twin4", "0", "", "0", "0", p},                         // no lock to check
		{1, "twin5", "0", "", ms(time.Hour), "1", p},               // ABSTTL
		{1, "twin6", "0", "", ms(-time.Hour), "1", p},              // ABSTTL past
		{1, "twin7", "0", "", "0", "0", p[:len(p)-1] + "x"},        // bad checksum
		{1, "twin8", "0", "", "0", "0", hashPayload()[:3] + p[3:]}, // bad data
		{1, "twin9", "0", "", "0"},                                 // another shape
	}
	for _, c := range []*redis.Client{real, mem} {
		require.NoError(t, c.Set(ctx, "lock", "v1", 0).Err())
		require.NoError(t, c.HSet(ctx, "hlock", "f", "v1").Err())
	}
	sha := real.ScriptLoad(ctx, restoreScriptText).Val()
	require.Equal(t, sha, mem.ScriptLoad(ctx, restoreScriptText).Val())
	for i, cs := range cases {
		args := append([]any{"EVALSHA", sha}, cs...)
		want := reply(real.Do(ctx, args...).Result())
		got := reply(mem.Do(ctx, args...).Result())
		require.Equal(t, want, got, "case %d", i)
	}
	require.Equal(t, keyspace(t, real), keyspace(t, mem))
	require.Greater(t, d.front.lua.native, 0, "the script ran in Go")
}
