package main

// BenchmarkDemoApply prints the demo's apply rate on its in-process store
// and on a real redis-server side by side, the same binary and migration
// code on both, runs alternated so that machine load hits both alike:
//
//	go test ./cmd/outpost -run '^$' -bench DemoApply -benchtime 1x
//
// OUTPOST_BENCH_DEMO_TENANTS sets the demo's size (default 2000, the
// demo's own default: about 9,700 legacy keys); OUTPOST_BENCH_DEMO_RUNS
// how many runs of each (default 3; the median is reported, and each
// run's ratio: its in-process rate over the real Redis run right after it).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// demoApplyRate runs the demo and returns the keys its apply step scanned
// on the legacy keyspace (001's count) per second of that step.
func demoApplyRate(b *testing.B, tenants int, extra ...string) (keys int64, seconds float64) {
	cmd := exec.Command(binary(b), append([]string{"demo", "-o", "json", "--tenants", strconv.Itoa(tenants)}, extra...)...)
	cmd.Env = filterEnv(os.Environ(), "REDIS_HOST", "REDIS_PORT", "POSTGRES_URL", "GOMEMLIMIT", "GOGC")
	out, err := cmd.Output()
	require.NoError(b, err, "%s", out)
	var rep struct {
		Extra struct {
			Steps []struct {
				DurationMS int64 `json:"duration_ms"`
				Migrations []struct {
					ID     string `json:"id"`
					Counts *struct {
						Scanned int64 `json:"scanned"`
					} `json:"counts"`
				} `json:"migrations"`
			} `json:"steps"`
		} `json:"extra"`
	}
	require.NoError(b, json.Unmarshal([]byte(lastLine(string(out))), &rep))
	apply := rep.Extra.Steps[1]
	for _, m := range apply.Migrations {
		if m.ID == "redis/001_hash_tags" && m.Counts != nil {
			keys = m.Counts.Scanned
		}
	}
	require.Positive(b, keys)
	return keys, float64(apply.DurationMS) / 1000
}

func BenchmarkDemoApply(b *testing.B) {
	tenants := envInt("OUTPOST_BENCH_DEMO_TENANTS", 2000)
	runs := envInt("OUTPOST_BENCH_DEMO_RUNS", 3)
	var inproc, real, ratios []float64
	var keys int64
	for i := 0; i < runs; i++ {
		k, s := demoApplyRate(b, tenants)
		inproc = append(inproc, float64(k)/s)
		srv := servertest.Redis(b)
		k2, s2 := demoApplyRate(b, tenants, "--redis-host", srv.Host, "--redis-port", strconv.Itoa(srv.Port))
		require.Equal(b, k, k2, "the same keyspace on both stores")
		real = append(real, float64(k2)/s2)
		ratios = append(ratios, s2/s)
		keys = k
		fmt.Printf("run %d: in-process %.0f keys/s (%.2fs), real Redis %.0f keys/s (%.2fs), ratio %.2f\n", i+1, float64(k)/s, s, float64(k2)/s2, s2, s2/s)
	}
	in, re := median(inproc), median(real)
	fmt.Printf("demo apply, %d legacy keys, median of %d: in-process store %.0f keys/s | real redis-server %.0f keys/s | ratio %.2f (runs: min %.2f, median %.2f)\n",
		keys, runs, in, re, in/re, slices.Min(ratios), median(ratios))
	b.ReportMetric(in, "inprocess-keys/s")
	b.ReportMetric(re, "redis-keys/s")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
