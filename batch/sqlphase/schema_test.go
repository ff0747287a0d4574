package sqlphase

import (
	"reflect"
	"testing"

	"github.com/outpost-migrate/outpost/report"
)

func TestDiffListsEveryKindOfDifference(t *testing.T) {
	expected := &Schema{Tables: []Table{
		{Name: "events", PartitionKey: `RANGE ("time")`,
			Columns: []Column{
				{Name: "id", Type: "text", NotNull: true},
				{Name: "data", Type: "text", NotNull: true},
				{Name: "flag", Type: "boolean", NotNull: true, Default: "false"},
				{Name: "gen", Type: "text", Generated: "(id || 'x'::text)"},
			},
			Indexes:     []Index{{Name: "events_pkey", Def: "btree (id)", Unique: true, Primary: true}, {Name: "idx_a", Def: "btree (data)"}},
			Constraints: []Constraint{{Name: "events_pkey", Def: "PRIMARY KEY (id)"}},
		},
		{Name: "events_default", PartitionOf: "events", PartitionBound: "DEFAULT",
			Indexes: []Index{{Name: "events_default_data_idx", Def: "btree (data)", Parent: "idx_a"}}},
		{Name: "gone", Columns: []Column{{Name: "x", Type: "integer"}}},
	}}
	actual := &Schema{Tables: []Table{
		{Name: "events", PartitionKey: `RANGE (id)`,
			Columns: []Column{
				{Name: "id", Type: "text", NotNull: true},
				{Name: "data", Type: "jsonb", NotNull: false},
				{Name: "flag", Type: "boolean", NotNull: true, Default: "true"},
				{Name: "gen", Type: "text"},
				{Name: "extra", Type: "integer"},
			},
			Indexes:     []Index{{Name: "events_pkey", Def: "btree (id)", Unique: true, Primary: true}, {Name: "idx_b", Def: "btree (id)"}},
			Constraints: []Constraint{{Name: "events_pkey", Def: "PRIMARY KEY (id, data)"}, {Name: "c", Def: "CHECK (true)"}},
		},
		{Name: "events_default", PartitionOf: "events", PartitionBound: "DEFAULT",
			Indexes: []Index{{Name: "events_default_data_idx", Def: "btree (data DESC)", Parent: ""}}},
		// A range partition an operator added: accepted.
		{Name: "events_2025", PartitionOf: "events", PartitionBound: "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"},
		{Name: "stray"},
	}}
	got := Diff(expected, actual)
	want := []report.Issue{
		{Object: "table gone", Reason: "table missing", Expected: "table"},
		{Object: "table events", Field: "partition_key", Reason: "partitioning differs", Expected: `RANGE ("time")`, Actual: "RANGE (id)"},
		{Object: "column events.data", Field: "type", Reason: "type differs", Expected: "text", Actual: "jsonb"},
		{Object: "column events.data", Field: "not_null", Reason: "nullability differs", Expected: "NOT NULL", Actual: "NULL"},
		{Object: "column events.flag", Field: "default", Reason: "default differs", Expected: "false", Actual: "true"},
		{Object: "column events.gen", Field: "generated", Reason: "generated expression differs", Expected: "(id || 'x'::text)"},
		{Object: "column events.extra", Reason: "unexpected column", Actual: "integer NULL"},
		{Object: "index idx_a on events", Reason: "index missing", Expected: "btree (data)"},
		{Object: "index idx_b on events", Reason: "unexpected index", Actual: "btree (id)"},
		{Object: "constraint events_pkey on events", Field: "def", Reason: "constraint definition differs", Expected: "PRIMARY KEY (id)", Actual: "PRIMARY KEY (id, data)"},
		{Object: "constraint c on events", Reason: "unexpected constraint", Actual: "CHECK (true)"},
		{Object: "index events_default_data_idx on events_default", Field: "def", Reason: "index definition differs", Expected: "btree (data)", Actual: "btree (data DESC)"},
		{Object: "index events_default_data_idx on events_default", Field: "parent", Reason: "attached to a different parent index", Expected: "idx_a"},
		{Object: "table stray", Reason: "unexpected table", Actual: "table"},
	}
	// Order within the output is stable, but compare as sets of lines for
	// a readable failure.
	if !reflect.DeepEqual(asSet(got), asSet(want)) || len(got) != len(want) {
		t.Errorf("Diff:\n got %d: %+v\nwant %d: %+v", len(got), got, len(want), want)
	}
	if d := Diff(expected, expected); len(d) != 0 {
		t.Errorf("Diff of a schema with itself = %+v", d)
	}
}

func asSet(issues []report.Issue) map[report.Issue]bool {
	m := map[report.Issue]bool{}
	for _, i := range issues {
		m[i] = true
	}
	return m
}

// crc32IEEE is the CRC-32 of IEEE 802.3 bit by bit (reflected polynomial
// 0xEDB88320), written here so that the lock id is checked against an
// implementation that is not hash/crc32.
func crc32IEEE(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// golangMigrateLockID follows golang-migrate's GenerateAdvisoryLockId
// literally: additional names (schema, table) joined in front of the
// database name with NUL, crc32, times the salt modulo 2^32, printed in
// decimal and parsed back as the number pg_advisory_lock receives.
func golangMigrateLockID(database string, additional ...string) int64 {
	joined := database
	if len(additional) > 0 {
		joined = ""
		for _, a := range additional {
			joined += a + "\x00"
		}
		joined += database
	}
	return int64((uint64(crc32IEEE([]byte(joined))) * 1486364155) % (1 << 32))
}

func TestAdvisoryLockIDMatchesGolangMigrate(t *testing.T) {
	if got := crc32IEEE([]byte("123456789")); got != 0xCBF43926 {
		t.Fatalf("reference crc32 broken: %#x", got)
	}
	for _, c := range []struct{ schema, db string }{
		{"public", "outpost"}, {"public", "postgres"}, {"tenant_a", "log-store"}, {"", ""},
	} {
		want := golangMigrateLockID(c.db, c.schema, "schema_migrations")
		if got := AdvisoryLockID(c.schema, "schema_migrations", c.db); got != want {
			t.Errorf("AdvisoryLockID(%q, %q) = %d, want %d", c.schema, c.db, got, want)
		}
		if want < 0 || want >= 1<<32 {
			t.Errorf("lock id %d out of uint32 range", want)
		}
	}
}
