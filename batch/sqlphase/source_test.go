package sqlphase

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/report"
)

// nopBatched is a BatchedStep for Load's validation tests; it is never run.
type nopBatched struct{}

func (nopBatched) Estimate(context.Context, Querier, int64) (report.Estimate, error) {
	return report.Estimate{Units: "rows", Method: "counted"}, nil
}

func (nopBatched) Batch(context.Context, pgx.Tx, string, int) (BatchResult, error) {
	return BatchResult{Done: true}, nil
}

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestLoadSplitsStepsAndDescribes(t *testing.T) {
	fsys := fstest.MapFS{
		"m/000001_init.up.sql":   file("-- 000001_init: creates t.\n-- Second line.\n\n-- not part of it\nCREATE TABLE t (id int);\n"),
		"m/000001_init.down.sql": file("DROP TABLE t;\n"),
		"m/000002_fill.up.sql": file("-- 000002_fill: fills t.\n" +
			"-- +outpost step add\nALTER TABLE t ADD COLUMN v int;\n" +
			"-- +outpost batched copy\nUPDATE t SET v = id;\n" +
			"-- +outpost step finish\nALTER TABLE t ALTER COLUMN v SET NOT NULL;\n"),
		"m/README.md": file("ignored"),
	}
	src, err := Load(fsys, "m", map[string]BatchedStep{"000002_fill/copy": nopBatched{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Migrations) != 2 || src.Latest() != 2 {
		t.Fatalf("migrations = %+v", src.Migrations)
	}
	m1, m2 := src.Migrations[0], src.Migrations[1]
	if m1.Key() != "000001_init" || m1.ID() != "sql/000001_init" || m1.Down == "" || m1.Stepped() {
		t.Errorf("m1 = %+v", m1)
	}
	if m1.Description != "creates t. Second line." {
		t.Errorf("m1 description = %q", m1.Description)
	}
	if len(m1.Steps) != 1 || m1.Steps[0].SQL != m1.Up {
		t.Errorf("m1 steps = %+v", m1.Steps)
	}
	if m2.Description != "fills t." || !m2.Stepped() || len(m2.Steps) != 3 {
		t.Fatalf("m2 = %+v", m2)
	}
	want := []struct {
		name    string
		batched bool
		has     string
	}{{"add", false, "ADD COLUMN v"}, {"copy", true, "UPDATE t"}, {"finish", false, "SET NOT NULL"}}
	for i, w := range want {
		s := m2.Steps[i]
		if s.Name != w.name || (s.Batched != nil) != w.batched || !strings.Contains(s.SQL, w.has) {
			t.Errorf("step %d = %+v, want %+v", i, s, w)
		}
	}
	// The header comment goes with the first step; no SQL leaks across.
	if !strings.Contains(m2.Steps[0].SQL, "fills t.") || strings.Contains(m2.Steps[0].SQL, "UPDATE") {
		t.Errorf("first step SQL = %q", m2.Steps[0].SQL)
	}
}

func TestLoadRefusesInvalidSets(t *testing.T) {
	cases := map[string]struct {
		fs      fstest.MapFS
		batched map[string]BatchedStep
		want    string
	}{
		"gap": {fs: fstest.MapFS{
			"000001_a.up.sql": file("SELECT 1;"), "000003_c.up.sql": file("SELECT 1;"),
		}, want: "found 3 where 2"},
		"bad name":     {fs: fstest.MapFS{"1-a.up.sql": file("SELECT 1;")}, want: "not named"},
		"no up file":   {fs: fstest.MapFS{"000001_a.down.sql": file("SELECT 1;")}, want: "no up file"},
		"two names":    {fs: fstest.MapFS{"000001_a.up.sql": file("SELECT 1;"), "000001_b.down.sql": file("")}, want: "two names"},
		"empty":        {fs: fstest.MapFS{"000001_a.up.sql": file("  \n")}, want: "empty"},
		"begin/commit": {fs: fstest.MapFS{"000001_a.up.sql": file("BEGIN;\nSELECT 1;\nCOMMIT;\n")}, want: "remove BEGIN/COMMIT"},
		"missing impl": {fs: fstest.MapFS{"000001_a.up.sql": file("-- +outpost batched x\nSELECT 1;\n")}, want: "no Go implementation"},
		"unused impl": {fs: fstest.MapFS{"000001_a.up.sql": file("SELECT 1;")},
			batched: map[string]BatchedStep{"000001_a/x": nopBatched{}}, want: "matches no"},
		"unknown marker": {fs: fstest.MapFS{"000001_a.up.sql": file("-- +outpost nontx x\nSELECT 1;\n")}, want: "unknown marker"},
		"duplicate step": {fs: fstest.MapFS{"000001_a.up.sql": file("-- +outpost step x\nSELECT 1;\n-- +outpost step x\nSELECT 2;\n")}, want: "used twice"},
		"empty step":     {fs: fstest.MapFS{"000001_a.up.sql": file("-- +outpost step x\n-- nothing\n-- +outpost step y\nSELECT 2;\n")}, want: "has no SQL"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(c.fs, ".", c.batched, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if report.CodeOf(err) != report.CodeDataRefused {
				t.Errorf("code = %s, want %s", report.CodeOf(err), report.CodeDataRefused)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	src, err := Load(fstest.MapFS{
		"000001_init.up.sql":                 file("SELECT 1;"),
		"000002_denormalize_attempts.up.sql": file("SELECT 1;"),
	}, ".", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]int{
		"sql/000002_denormalize_attempts": 2, "000002_denormalize_attempts": 2, "denormalize_attempts": 2,
		"2": 2, "000002": 2, "sql/2": 2, "sql/000001_init": 1,
	} {
		if v, ok := src.Lookup(target); !ok || v != want {
			t.Errorf("Lookup(%q) = %d, %v; want %d", target, v, ok, want)
		}
	}
	for _, target := range []string{"", "3", "0", "redis/001_hash_tags", "002_timestamps", "sql/000003_x"} {
		if v, ok := src.Lookup(target); ok {
			t.Errorf("Lookup(%q) = %d, want no match", target, v)
		}
	}
}
