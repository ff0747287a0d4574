package clickhousephase

import (
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/outpost-migrate/outpost/report"
)

func TestLoadSplitsAndPrefixes(t *testing.T) {
	fsys := fstest.MapFS{
		"000001_init.up.sql":   {Data: []byte("-- Creates t.\n-- Two lines.\n\nCREATE TABLE {deployment_prefix}t (a String); -- trailing\n\n-- only a comment;\n")},
		"000001_init.down.sql": {Data: []byte("DROP TABLE {deployment_prefix}t;")},
		"000002_more.up.sql":   {Data: []byte("ALTER TABLE {deployment_prefix}t ADD COLUMN b String DEFAULT '';ALTER TABLE {deployment_prefix}t ADD INDEX i b TYPE bloom_filter GRANULARITY 1;")},
	}
	src, err := Load(fsys, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if src.Latest() != 2 || src.Migrations[0].Description != "Creates t. Two lines." || src.Migrations[1].ID() != "clickhouse/000002_more" {
		t.Fatalf("source: %+v", src.Migrations)
	}
	if got := src.Migrations[0].Statements("prod_"); !reflect.DeepEqual(got, []string{"-- Creates t.\n-- Two lines.\n\nCREATE TABLE prod_t (a String)"}) {
		t.Fatalf("statements of 1: %q", got)
	}
	want := []string{"ALTER TABLE t ADD COLUMN b String DEFAULT ''", "ALTER TABLE t ADD INDEX i b TYPE bloom_filter GRANULARITY 1"}
	if got := src.Migrations[1].Statements(""); !reflect.DeepEqual(got, want) {
		t.Fatalf("statements of 2: %q", got)
	}
	for target, v := range map[string]int{"clickhouse/000002_more": 2, "000001_init": 1, "more": 2, "2": 2, "000001": 1} {
		if got, ok := src.Lookup(target); !ok || got != v {
			t.Errorf("Lookup(%q) = %d %v, want %d", target, got, ok, v)
		}
	}
	for _, target := range []string{"3", "0", "sql/000001_init", "redis/001_hash_tags", ""} {
		if _, ok := src.Lookup(target); ok {
			t.Errorf("Lookup(%q) found a migration", target)
		}
	}
}

func TestLoadRefusesBadSets(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":         {"1_init.sql": {Data: []byte("SELECT 1")}},
		"gap":              {"000001_a.up.sql": {Data: []byte("SELECT 1")}, "000003_c.up.sql": {Data: []byte("SELECT 1")}},
		"empty":            {"000001_a.up.sql": {Data: []byte("-- nothing;\n")}},
		"two names":        {"000001_a.up.sql": {Data: []byte("SELECT 1")}, "000001_b.down.sql": {Data: []byte("SELECT 1")}},
		"quoted semicolon": {"000001_a.up.sql": {Data: []byte("ALTER TABLE t COMMENT COLUMN a 'x;y'")}},
	} {
		_, err := Load(fsys, ".", nil)
		if report.CodeOf(err) != report.CodeDataRefused {
			t.Errorf("%s: %v, want DATA_REFUSED", name, err)
		}
	}
}
