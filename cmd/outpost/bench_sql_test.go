package main

// The SQL benchmark of issue #23: Outpost's own SQL files 000005-000010 run
// one by one in one psql session, each in its own transaction (as
// golang-migrate runs them) against this tool's `migrate apply --sql-only`, on copies of
// the same version-4 database, in one run:
//
//	go test ./cmd/outpost -run '^$' -bench BenchmarkSQLAgainstOutpost -benchtime 1x -timeout 60m
//
// OUTPOST_BENCH_SQL_DELIVERIES sets the sizes (comma-separated delivery
// counts; default "500000,1000000"; e.g. 20000 for a quick run). Each size
// is seeded once (migrations/seed: two deliveries per event, 1% orphans, in
// random physical order) into a template database; psql and the tool each
// get a fresh copy (CREATE DATABASE ... TEMPLATE), and the order of the two
// alternates between sizes. Both results are checked equal (row count and
// an order-independent hash of every attempts row) before the figures
// count.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/sqlmigrations"
)

func benchSQLSizes() []int {
	v := os.Getenv("OUTPOST_BENCH_SQL_DELIVERIES")
	if v == "" {
		v = "500000,1000000"
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// sqlRun is one side's figures: seconds per migration (keyed "000005"...),
// the total, and the longest time one transaction held its locks.
type sqlRun struct {
	per     map[string]time.Duration
	total   time.Duration
	longest time.Duration
	detail  string
	batches []time.Duration
}

func BenchmarkSQLAgainstOutpost(b *testing.B) {
	psql, err := servertest.FindBinary("psql")
	require.NoError(b, err)
	files := writeSQLFiles(b)
	for i := 0; i < b.N; i++ {
		for k, n := range benchSQLSizes() {
			pg := servertest.Postgres(b)
			st := seedTemplate(b, pg, n)
			runs := map[string]sqlRun{}
			sides := []string{"psql", "tool"}
			if k%2 == 1 {
				sides = []string{"tool", "psql"}
			}
			for _, side := range sides {
				url := copyDatabase(b, pg, side)
				if side == "psql" {
					runs[side] = runPsqlFiles(b, psql, files, url)
				} else {
					runs[side] = runToolSQL(b, url)
				}
				runs[side+"/hash"] = sqlRun{detail: attemptsHash(b, url)}
			}
			require.Equal(b, runs["psql/hash"].detail, runs["tool/hash"].detail, "the tool's attempts differ from Outpost's SQL")
			printSQLComparison(b, st, runs["psql"], runs["tool"], sides)
		}
	}
}

// writeSQLFiles copies the embedded up files 5-10 to a directory for psql.
func writeSQLFiles(b *testing.B) []string {
	dir := b.TempDir()
	names, err := fs.Glob(sqlmigrations.Files(), "*.up.sql")
	require.NoError(b, err)
	var out []string
	for _, name := range names {
		if v, _ := strconv.Atoi(name[:6]); v < 5 {
			continue
		}
		body, err := fs.ReadFile(sqlmigrations.Files(), name)
		require.NoError(b, err)
		path := filepath.Join(dir, name)
		require.NoError(b, os.WriteFile(path, body, 0o644))
		out = append(out, path)
	}
	sort.Strings(out)
	return out
}

// seedTemplate brings pg's database to version 4 with the tool, seeds n
// deliveries and analyzes it.
func seedTemplate(b *testing.B, pg *servertest.PGDatabase, n int) seed.PGStats {
	runMeasured(b, []string{"POSTGRES_URL=" + pg.URL}, "migrate", "apply", "--yes", "--sql-only", "--target", "4", "-o", "json")
	conn := pg.Connect(b)
	defer conn.Close(context.Background())
	start := time.Now()
	st, err := seed.WritePostgres(context.Background(), conn, seed.PGOptions{Version: 4, Events: n / 2, DeliveriesPerEvent: 2, OrphanRatio: 0.01, Seed: 1})
	require.NoError(b, err)
	_, err = conn.Exec(context.Background(), "VACUUM ANALYZE")
	require.NoError(b, err)
	reportLine(b, "seeded %d events, %d deliveries (%d orphans) in %.1fs", st.Events, st.Deliveries, st.Orphans, time.Since(start).Seconds())
	return st
}

// copyDatabase makes a copy of pg's database and returns its URL; it is
// dropped when the benchmark ends.
func copyDatabase(b *testing.B, pg *servertest.PGDatabase, suffix string) string {
	name := pg.Name + "_" + suffix
	admin, err := pgx.Connect(context.Background(), pg.AdminURL)
	require.NoError(b, err)
	defer admin.Close(context.Background())
	_, err = admin.Exec(context.Background(), fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pg.Name))
	require.NoError(b, err)
	b.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), pg.AdminURL); err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	return strings.Replace(pg.URL, "/"+pg.Name+"?", "/"+name+"?", 1)
}

// runPsqlFiles runs the files in one psql session, each in its own
// transaction (BEGIN; \i file; COMMIT), stopping at the first error, and
// times each one by the server's clock_timestamp() between them; the total
// is psql's wall time. One session, as golang-migrate keeps one connection:
// no process start or connection is counted per file.
func runPsqlFiles(b *testing.B, psql string, files []string, url string) sqlRun {
	var script strings.Builder
	script.WriteString("\\set ON_ERROR_STOP on\n\\pset format unaligned\n\\pset tuples_only on\n")
	mark := "SELECT 'T ' || extract(epoch FROM clock_timestamp());\n"
	script.WriteString(mark)
	for _, f := range files {
		fmt.Fprintf(&script, "BEGIN;\n\\i %s\nCOMMIT;\n%s", f, mark)
	}
	path := filepath.Join(b.TempDir(), "run.sql")
	require.NoError(b, os.WriteFile(path, []byte(script.String()), 0o644))
	start := time.Now()
	out, err := exec.Command(psql, "-X", "-q", "-f", path, url).CombinedOutput()
	require.NoError(b, err, "psql: %s", out)
	r := sqlRun{per: map[string]time.Duration{}, total: time.Since(start)}
	var marks []float64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "T "); ok {
			t, err := strconv.ParseFloat(v, 64)
			require.NoError(b, err)
			marks = append(marks, t)
		}
	}
	require.Len(b, marks, len(files)+1, "psql output: %s", out)
	for i, f := range files {
		d := time.Duration((marks[i+1] - marks[i]) * float64(time.Second))
		r.per[filepath.Base(f)[:6]] = d
		r.longest = max(r.longest, d)
	}
	return r
}

// runToolSQL runs `migrate apply --sql-only` and reads its report and its
// JSON progress events.
func runToolSQL(b *testing.B, url string) sqlRun {
	m := runMeasured(b, []string{"POSTGRES_URL=" + url}, "migrate", "apply", "--yes", "--sql-only", "-o", "json", "--log-format", "json")
	require.Equal(b, "applied", m.rep["outcome"])
	r := sqlRun{per: map[string]time.Duration{}, total: m.wall}
	for _, x := range m.rep["migrations"].([]any) {
		mig := x.(map[string]any)
		if ms, ok := mig["duration_ms"].(float64); ok {
			r.per[strings.TrimPrefix(mig["id"].(string), "sql/")[:6]] = time.Duration(ms) * time.Millisecond
		}
	}
	var batches int
	var rows float64
	// 000005's parts: started → first batch began (add_columns), → last
	// batch ended (backfill), → finished (finish).
	var started, first, last, finished time.Time
	for _, line := range strings.Split(m.stderr, "\n") {
		var e struct {
			TS        time.Time      `json:"ts"`
			Event     string         `json:"event"`
			Migration string         `json:"migration"`
			Fields    map[string]any `json:"fields"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || !strings.HasPrefix(e.Migration, "sql/000005") {
			continue
		}
		switch e.Event {
		case "migration_started":
			started = e.TS
		case "migration_finished":
			finished = e.TS
		case "batch_done":
			took := time.Duration(e.Fields["batch_ms"].(float64)) * time.Millisecond
			if batches == 0 {
				first = e.TS.Add(-took)
			}
			last = e.TS
			batches++
			rows += e.Fields["batch_rows"].(float64)
			r.longest = max(r.longest, took)
			r.batches = append(r.batches, took)
		}
	}
	sort.Slice(r.batches, func(i, j int) bool { return r.batches[i] < r.batches[j] })
	pct := func(p int) int64 { return r.batches[min(len(r.batches)*p/100, len(r.batches)-1)].Milliseconds() }
	require.NotEmpty(b, r.batches)
	r.detail = fmt.Sprintf("%d batches (ms: median %d, p95 %d, p99 %d), %.0f rows a batch on average; 000005 = add_columns %.2fs + backfill %.2fs + finish %.2fs",
		batches, pct(50), pct(95), pct(99), rows/float64(max(batches, 1)), first.Sub(started).Seconds(), last.Sub(first).Seconds(), finished.Sub(last).Seconds())
	return r
}

// attemptsHash is the row count and an order-independent hash of every
// attempts row as text (every column).
func attemptsHash(b *testing.B, url string) string {
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(b, err)
	defer conn.Close(context.Background())
	var n, sum int64
	require.NoError(b, conn.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(hashtextextended(a::text, 0) % 1000000007), 0) FROM attempts a`).Scan(&n, &sum))
	return fmt.Sprintf("%d rows, hash %d", n, sum)
}

func printSQLComparison(b *testing.B, st seed.PGStats, ps, tool sqlRun, order []string) {
	var keys []string
	for k := range ps.per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	reportLine(b, "%d deliveries (order: %s then %s)", st.Deliveries, order[0], order[1])
	reportLine(b, "  %-8s %10s %10s %7s", "file", "psql", "tool", "ratio")
	for _, k := range keys {
		reportLine(b, "  %-8s %9.2fs %9.2fs %6.2fx", k, ps.per[k].Seconds(), tool.per[k].Seconds(), ratio(tool.per[k], ps.per[k]))
	}
	reportLine(b, "  %-8s %9.2fs %9.2fs %6.2fx", "total", ps.total.Seconds(), tool.total.Seconds(), ratio(tool.total, ps.total))
	reportLine(b, "  longest transaction: psql %.2fs (000005 in one), tool's longest batch %d ms (%s)",
		ps.longest.Seconds(), tool.longest.Milliseconds(), tool.detail)
	b.ReportMetric(ratio(tool.total, ps.total), fmt.Sprintf("ratio-%d", st.Deliveries))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}
