package main

// The performance benchmark of issue #9. Run it with
//
//	go test ./cmd/outpost -run '^$' -bench . -benchtime 1x -timeout 60m
//
// It starts its own redis-server (standalone and a 3-master cluster) and
// PostgreSQL, seeds them with migrations/seed, runs the real binary as a
// subprocess and prints wall time, keys per second and the binary's peak
// resident memory (its VmHWM, see samplePeak). Sizes are chosen with
// OUTPOST_BENCH_TENANTS (comma-separated tenant counts; each tenant has
// about 3 destinations, so 100000 tenants is about 480k legacy keys);
// default "100000,210000" (480k and 1M legacy keys). OUTPOST_BENCH_DELIVERIES sets the backfill size
// (default 1000000). OUTPOST_BENCH_UPSTREAM names a binary of Outpost itself
// (built from hookdeck/outpost) whose own Redis migrator is then run on the
// first size's data in the same run, for the ratio.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

func benchTenants() []int {
	v := os.Getenv("OUTPOST_BENCH_TENANTS")
	if v == "" {
		v = "100000,210000"
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// measured is one run of the binary.
type measured struct {
	wall   time.Duration
	maxRSS int64 // KiB
	rep    map[string]any
	stderr string
}

func runMeasured(b *testing.B, envs []string, args ...string) measured {
	b.Helper()
	cmd := exec.Command(binary(b), args...)
	cmd.Env = append(envs, "PATH="+os.Getenv("PATH"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	var stdout strings.Builder
	cmd.Stdout = &stdout
	start := time.Now()
	require.NoError(b, cmd.Start())
	peak := samplePeak(cmd.Process.Pid)
	err := cmd.Wait()
	wall := time.Since(start)
	out := stdout.String()
	require.NoError(b, err, "stderr: %s\nstdout: %s", stderr.String(), out)
	var rep map[string]any
	require.NoError(b, json.Unmarshal([]byte(lastLine(out)), &rep))
	return measured{wall: wall, maxRSS: peak(), rep: rep, stderr: stderr.String()}
}

func seedRedis(b *testing.B, c goredis.UniversalClient, tenants int) seed.Stats {
	b.Helper()
	opts := seed.DefaultOptions()
	opts.Tenants = tenants
	opts.DestinationsPerTenant = 3
	opts.UnrelatedKeys = 1000
	st, err := seed.Write(context.Background(), c, opts)
	require.NoError(b, err)
	return st
}

// legacyKeys is what apply migrates: the v0 tenant keys (not the unrelated
// ones).
func legacyKeys(st seed.Stats) int { return st.Keys - st.Unrelated }

func reportLine(b *testing.B, format string, args ...any) {
	b.Helper()
	msg := fmt.Sprintf(format, args...)
	b.Log(msg)
	fmt.Fprintln(os.Stderr, "BENCH "+msg)
}

// BenchmarkRedisApplyStandalone: the full Redis apply (001-003 from v0) at
// each size, each on a fresh server, followed on the same server by a
// no-op apply and redis-benchmark's HSET ceiling (`redis-benchmark -t hset
// -P 100 -n 1000000 -q`), so that the ratio holds on a noisy machine; then
// the naive one-key-at-a-time method on the first server. With
// OUTPOST_BENCH_FULL=1 also the same keyspace without checkpoints and the
// floor (each key read once and written once).
func BenchmarkRedisApplyStandalone(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var firstRate float64
		first := false
		for _, tenants := range benchTenants() {
			srv := servertest.Redis(b)
			c := srv.Client(b)
			st := seedRedis(b, c, tenants)
			envs := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + itoa(srv.Port)}
			cpu := startRedisCPU(b, c)
			m := runMeasured(b, envs, "migrate", "apply", "--yes", "--redis-only", "-o", "json")
			redisCPU, top, cmds := cpu.stop(b)
			require.Equal(b, "applied", m.rep["outcome"])
			keys := legacyKeys(st)
			rate := float64(keys) / m.wall.Seconds()
			noop := runMeasured(b, envs, "migrate", "apply", "--yes", "--redis-only", "-o", "json")
			require.Equal(b, "up_to_date", noop.rep["outcome"])
			ceiling := redisBenchmarkHSET(b, srv.Port)
			reportLine(b, "standalone apply: %d tenants, %d legacy keys: %.2fs, %.0f keys/s = %.3f of the same run's redis-benchmark HSET -P 100 ceiling (%.0f ops/s); peak RSS %.1f MiB; Redis CPU %.2fs (%.0f%% of the wall, %.2f µs per legacy key, %.2f µs per command over %d commands): %s; no-op apply %.2fs, peak RSS %.1f MiB; writes by others: %s",
				tenants, keys, m.wall.Seconds(), rate, rate/ceiling, ceiling, float64(m.maxRSS)/1024, redisCPU, 100*redisCPU/m.wall.Seconds(),
				1e6*redisCPU/float64(keys), 1e6*redisCPU/float64(cmds), cmds, top, noop.wall.Seconds(), float64(noop.maxRSS)/1024, othersOf(m.rep))
			if !first {
				first, firstRate = true, rate
				b.ReportMetric(rate, "keys/s")
				b.ReportMetric(float64(m.maxRSS)/1024, "peak-MiB")
				if os.Getenv("OUTPOST_BENCH_FULL") == "1" {
					benchExtras(b, c, envs, tenants, m)
				}
			}
		}
		// The naive method, on a server of its own with a smaller keyspace
		// (so that it finishes), bounded to 20 s.
		c := servertest.Redis(b).Client(b)
		seedRedis(b, c, 20000)
		n, d := naiveApply(b, c, 20*time.Second)
		naiveRate := float64(n) / d.Seconds()
		reportLine(b, "naive one-key-at-a-time: %d keys in %.1fs = %.0f keys/s; outpost migrate is %.1fx faster", n, d.Seconds(), naiveRate, firstRate/naiveRate)
		upstreamApply(b, firstRate)
	}
}

// upstreamApply runs Outpost's own migrator (`outpost migrate apply --yes
// --redis-only`, built from hookdeck/outpost; its path in
// OUTPOST_BENCH_UPSTREAM) on a fresh server seeded with the first size's
// data, in the same run, and prints the ratio. Without the variable it
// says that it was not run.
func upstreamApply(b *testing.B, ourRate float64) {
	bin := os.Getenv("OUTPOST_BENCH_UPSTREAM")
	if bin == "" {
		reportLine(b, "Outpost's own migrator: not run (set OUTPOST_BENCH_UPSTREAM to its binary)")
		return
	}
	srv := servertest.Redis(b)
	st := seedRedis(b, srv.Client(b), benchTenants()[0])
	cmd := exec.Command(bin, "migrate", "apply", "--yes", "--redis-only")
	// Outpost's configuration needs a log store, a message queue and an
	// encryption secret even for --redis-only: the queue is never dialled,
	// the database only for its SQL migrator's version table.
	pg := servertest.Postgres(b)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_HOST=127.0.0.1", "REDIS_PORT=" + itoa(srv.Port), "REDIS_DATABASE=0",
		"POSTGRES_URL=" + pg.URL, "RABBITMQ_SERVER_URL=amqp://guest:guest@127.0.0.1:1/", "AES_ENCRYPTION_SECRET=bench"}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	require.NoError(b, cmd.Start())
	peak := samplePeak(cmd.Process.Pid)
	err := cmd.Wait()
	wall := time.Since(start)
	require.NoError(b, err, "Outpost's migrator: %s", lastLine(out.String()))
	maxRSS := peak()
	rate := float64(legacyKeys(st)) / wall.Seconds()
	reportLine(b, "Outpost's own migrator (same data, same run): %d legacy keys in %.2fs = %.0f keys/s, peak RSS %.1f MiB; outpost migrate is %.1fx faster",
		legacyKeys(st), wall.Seconds(), rate, float64(maxRSS)/1024, ourRate/rate)
}

// othersOf is the report's watch of writes by others, in short.
func othersOf(rep map[string]any) string {
	ms, _ := rep["migrations"].([]any)
	if len(ms) == 0 {
		return "none"
	}
	o, _ := ms[0].(map[string]any)["others"].(map[string]any)
	return fmt.Sprintf("detection %v %v, %v keys changed, %v catch-up rounds, confirming pass %v", o["detection"], o["reason"], o["keys_changed"], o["rounds"], o["confirming_pass"])
}

// benchExtras: the same keyspace without checkpoints, and the floor.
func benchExtras(b *testing.B, c *goredis.Client, envs []string, tenants int, m measured) {
	require.NoError(b, c.FlushAll(context.Background()).Err())
	seedRedis(b, c, tenants)
	nc := runMeasured(b, envs, "migrate", "apply", "--yes", "--redis-only", "-o", "json", "--no-checkpoints")
	reportLine(b, "standalone apply without checkpoints: %.2fs; checkpointing costs %+.1f%%",
		nc.wall.Seconds(), 100*(m.wall.Seconds()-nc.wall.Seconds())/nc.wall.Seconds())
	// The floor of any exact method on this server: each legacy key read
	// once and written once, nothing checked.
	require.NoError(b, c.FlushAll(context.Background()).Err())
	seedRedis(b, c, tenants)
	fl, flCPU := floorCopy(b, c)
	reportLine(b, "floor: each legacy key read once and written once (SCAN, HGETALL+PTTL, HSET+PEXPIRE to a new name; pipelined, 4 workers; no classification, no checks): %.2fs, Redis CPU %.2fs; outpost migrate takes %.1fx that",
		fl.Seconds(), flCPU, m.wall.Seconds()/fl.Seconds())
}

// BenchmarkRedisApplyCluster: the same apply on a 3-master cluster.
func BenchmarkRedisApplyCluster(b *testing.B) {
	for i := 0; i < b.N; i++ {
		tenants := benchTenants()[0]
		cl := servertest.RedisCluster(b)
		c := cl.Client(b)
		st := seedRedis(b, c, tenants)
		envs := []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + itoa(cl.Ports[0]), "REDIS_CLUSTER_ENABLED=true"}
		m := runMeasured(b, envs, "migrate", "apply", "--yes", "--redis-only", "-o", "json")
		require.Equal(b, "applied", m.rep["outcome"])
		keys := legacyKeys(st)
		reportLine(b, "cluster apply: %d tenants, %d legacy keys: %.2fs, %.0f keys/s, peak RSS %.1f MiB; writes by others: %s",
			tenants, keys, m.wall.Seconds(), float64(keys)/m.wall.Seconds(), float64(m.maxRSS)/1024, othersOf(m.rep))
		b.ReportMetric(float64(keys)/m.wall.Seconds(), "keys/s")
	}
}

// BenchmarkBackfill: migration 5 on a log of OUTPOST_BENCH_DELIVERIES
// deliveries at version 4; reports the rate and the longest batch (the
// longest any batch holds its row locks).
func BenchmarkBackfill(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("OUTPOST_BENCH_DELIVERIES")); err == nil && v > 0 {
		total = v
	}
	for i := 0; i < b.N; i++ {
		pg := servertest.Postgres(b)
		envs := []string{"POSTGRES_URL=" + pg.URL}
		runMeasured(b, envs, "migrate", "apply", "--yes", "--sql-only", "--target", "4", "-o", "json")
		conn := pg.Connect(b)
		st, err := seed.WritePostgres(context.Background(), conn, seed.PGOptions{Version: 4, Events: total / 2, DeliveriesPerEvent: 2, OrphanRatio: 0.01, Seed: 1})
		require.NoError(b, err)
		_, err = conn.Exec(context.Background(), "ANALYZE")
		require.NoError(b, err)
		m := runMeasured(b, envs, "migrate", "apply", "--yes", "--sql-only", "-o", "json", "--log-format", "json")
		require.Equal(b, "applied", m.rep["outcome"])
		longest := longestBatch(m.stderr)
		reportLine(b, "backfill (migration 5 and 6-10): %d deliveries: %.2fs, %.0f rows/s, longest batch %s, peak RSS %.1f MiB",
			st.Deliveries, m.wall.Seconds(), float64(st.Deliveries)/m.wall.Seconds(), longest, float64(m.maxRSS)/1024)
		b.ReportMetric(float64(longest.Milliseconds()), "longest-batch-ms")
	}
}

// longestBatch is the longest gap between consecutive batch_done events
// (each batch is one transaction, so this bounds how long one holds locks).
func longestBatch(stderr string) time.Duration {
	var prev time.Time
	var longest time.Duration
	for _, line := range strings.Split(stderr, "\n") {
		var e struct {
			TS    time.Time `json:"time"`
			Event string    `json:"event"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Event != "batch_done" {
			continue
		}
		if !prev.IsZero() && e.TS.Sub(prev) > longest {
			longest = e.TS.Sub(prev)
		}
		prev = e.TS
	}
	return longest
}

// naiveApply is the one-key-at-a-time method: for every legacy key, read
// it, read its TTL, check the twin, write the converted twin, set its TTL:
// five round trips per key, no pipelining. It stops after budget.
func naiveApply(b *testing.B, c goredis.UniversalClient, budget time.Duration) (int, time.Duration) {
	ctx := context.Background()
	start := time.Now()
	n := 0
	var cursor uint64
	for time.Since(start) < budget {
		keys, next, err := c.Scan(ctx, cursor, "tenant:*", 1000).Result()
		require.NoError(b, err)
		for _, k := range keys {
			if !redismigrations.IsV0Candidate(k) {
				continue
			}
			fields, err := c.HGetAll(ctx, k).Result()
			require.NoError(b, err)
			ttl, err := c.PTTL(ctx, k).Result()
			require.NoError(b, err)
			key, err := redismigrations.ClassifyV0(k, fields)
			if err != nil {
				continue
			}
			twin := key.V1("")
			if c.Exists(ctx, twin).Val() == 1 {
				continue
			}
			for _, f := range redismigrations.TimestampFields {
				if v, ok := fields[f]; ok {
					if ms, _, err := redismigrations.ToUnixMilli(v); err == nil {
						fields[f] = ms
					}
				}
			}
			if e := key.Kind.Entity(); e != "" {
				fields["entity"] = e
			}
			require.NoError(b, c.HSet(ctx, twin, fields).Err())
			if ttl > 0 {
				require.NoError(b, c.PExpire(ctx, twin, ttl).Err())
			}
			n++
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	return n, time.Since(start)
}

var rpsRE = regexp.MustCompile(`([0-9.]+) requests per second`)

// redisBenchmarkHSET runs redis-benchmark's HSET with pipelines of 100.
func redisBenchmarkHSET(b *testing.B, port int) float64 {
	bin, err := servertest.FindBinary("redis-benchmark")
	require.NoError(b, err)
	out, err := exec.Command(bin, "-p", itoa(port), "-t", "hset", "-n", "1000000", "-P", "100", "-q").CombinedOutput()
	require.NoError(b, err, string(out))
	m := rpsRE.FindAllStringSubmatch(string(out), -1)
	require.NotEmpty(b, m, string(out))
	v, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	return v
}

// redisCPU measures what a Redis server spends between start and stop:
// CPU seconds (INFO cpu) and the commands that took most (INFO
// commandstats, reset at start).
type redisCPU struct {
	c     *goredis.Client
	start float64
}

func startRedisCPU(b *testing.B, c *goredis.Client) redisCPU {
	require.NoError(b, c.ConfigResetStat(context.Background()).Err())
	return redisCPU{c: c, start: serverCPU(b, c)}
}

func (r redisCPU) stop(b *testing.B) (float64, string, int64) {
	used := serverCPU(b, r.c) - r.start
	info, err := r.c.Info(context.Background(), "commandstats").Result()
	require.NoError(b, err)
	type stat struct {
		name  string
		calls int64
		usec  float64
	}
	var stats []stat
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "cmdstat_"), ":")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		var st stat
		st.name = name
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				st.calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				st.usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		stats = append(stats, st)
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].usec > stats[j].usec })
	var parts []string
	var calls int64
	for _, st := range stats {
		calls += st.calls
	}
	for _, st := range stats[:min(8, len(stats))] {
		parts = append(parts, fmt.Sprintf("%s %.2fs in %d calls (%.2f µs each)", st.name, st.usec/1e6, st.calls, st.usec/float64(max(st.calls, 1))))
	}
	return used, strings.Join(parts, ", "), calls
}

func serverCPU(b *testing.B, c *goredis.Client) float64 {
	info, err := c.Info(context.Background(), "cpu").Result()
	require.NoError(b, err)
	total := 0.0
	for _, l := range strings.Split(info, "\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), f); ok {
				x, err := strconv.ParseFloat(v, 64)
				require.NoError(b, err)
				total += x
			}
		}
	}
	return total
}

// floorCopy reads every legacy key once (HGETALL and PTTL) and writes it
// once under a new name (HSET and PEXPIRE), in pipelines of 500 keys run
// by 4 workers per SCAN chunk of 2000: what any method that copies each
// key must at least cost the server, without the classification, the
// create-unless-exists, 002/003 or the confirming pass. It returns the
// wall time and the server's CPU time.
func floorCopy(b *testing.B, c *goredis.Client) (time.Duration, float64) {
	ctx := context.Background()
	cpu0 := serverCPU(b, c)
	start := time.Now()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "tenant:*", 2000).Result()
		require.NoError(b, err)
		var wg sync.WaitGroup
		for part := 0; part < len(keys); part += 500 {
			batch := keys[part:min(part+500, len(keys))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				pipe := c.Pipeline()
				hs := make([]*goredis.MapStringStringCmd, len(batch))
				ts := make([]*goredis.DurationCmd, len(batch))
				for i, k := range batch {
					hs[i] = pipe.HGetAll(ctx, k)
					ts[i] = pipe.PTTL(ctx, k)
				}
				_, _ = pipe.Exec(ctx)
				pipe = c.Pipeline()
				for i, k := range batch {
					if len(hs[i].Val()) == 0 || strings.HasPrefix(k, "floor:") {
						continue
					}
					pipe.HSet(ctx, "floor:"+k, hs[i].Val())
					if d := ts[i].Val(); d > 0 {
						pipe.PExpire(ctx, "floor:"+k, d)
					}
				}
				_, err := pipe.Exec(ctx)
				require.NoError(b, err)
			}()
		}
		wg.Wait()
		if next == 0 {
			break
		}
		cursor = next
	}
	return time.Since(start), serverCPU(b, c) - cpu0
}
