package clickhousemigrations

import "github.com/outpost-migrate/outpost/batch/clickhousephase"

// Expected is the schema of Outpost's ClickHouse log store at version v
// (0 to 3), table names without the deployment prefix, as ClickHouse's
// system tables print it. Written from the facts, not derived from the SQL
// files:
//
//   - 1: events (one row per event) and attempts (one row per delivery
//     attempt, carrying its event's fields), both ReplacingMergeTree,
//     partitioned by month of their time column, ordered by (time, id),
//     with bloom-filter skip indexes on the id columns and the topic, and
//     a set(100) index on attempts.status; manual and attempt_number have
//     defaults (false, 0). The version table golang-migrate keeps with
//     Outpost's x-migrations-table-engine=MergeTree.
//   - 2: events.destination_id and its index give way to
//     matched_destination_ids Array(String) DEFAULT [] with a bloom filter.
//   - 3: attempts gains destination_type String DEFAULT ” with a bloom
//     filter.
func Expected(v int) (*clickhousephase.Schema, bool) {
	if v < 0 || v > 3 {
		return nil, false
	}
	s := &clickhousephase.Schema{}
	if v == 0 {
		return s, true
	}
	events, attempts := events(v), attempts(v)
	s.Tables = []clickhousephase.Table{events, attempts, versionTable()}
	return s, true
}

type col = clickhousephase.Column

func bloom(name, column string) clickhousephase.Index {
	return clickhousephase.Index{Name: name, Type: "bloom_filter", Expr: column, Granularity: 1}
}

// eventColumns are the event's fields, the leading columns of both tables.
func eventColumns(withDestination bool) []col {
	cols := []col{{Name: "event_id", Type: "String"}, {Name: "tenant_id", Type: "String"}}
	if withDestination {
		cols = append(cols, col{Name: "destination_id", Type: "String"})
	}
	return append(cols,
		col{Name: "topic", Type: "String"},
		col{Name: "eligible_for_retry", Type: "Bool"},
		col{Name: "event_time", Type: "DateTime64(3)"},
		col{Name: "metadata", Type: "String"},
		col{Name: "data", Type: "String"})
}

func events(v int) clickhousephase.Table {
	t := clickhousephase.Table{
		Name: "events", Engine: "ReplacingMergeTree",
		SortingKey: "event_time, event_id", PartitionKey: "toYYYYMM(event_time)",
		Columns: eventColumns(v < 2),
		Indexes: []clickhousephase.Index{bloom("idx_tenant_id", "tenant_id"), bloom("idx_event_id", "event_id"), bloom("idx_topic", "topic")},
	}
	if v < 2 {
		t.Indexes = append(t.Indexes, bloom("idx_destination_id", "destination_id"))
	} else {
		t.Columns = append(t.Columns, col{Name: "matched_destination_ids", Type: "Array(String)", Default: "[]"})
		t.Indexes = append(t.Indexes, bloom("idx_matched_destination_ids", "matched_destination_ids"))
	}
	return t
}

func attempts(v int) clickhousephase.Table {
	t := clickhousephase.Table{
		Name: "attempts", Engine: "ReplacingMergeTree",
		SortingKey: "attempt_time, attempt_id", PartitionKey: "toYYYYMM(attempt_time)",
		Columns: append(eventColumns(true),
			col{Name: "attempt_id", Type: "String"},
			col{Name: "status", Type: "String"},
			col{Name: "attempt_time", Type: "DateTime64(3)"},
			col{Name: "code", Type: "String"},
			col{Name: "response_data", Type: "String"},
			col{Name: "manual", Type: "Bool", Default: "false"},
			col{Name: "attempt_number", Type: "UInt32", Default: "0"}),
		Indexes: []clickhousephase.Index{
			bloom("idx_tenant_id", "tenant_id"), bloom("idx_destination_id", "destination_id"),
			bloom("idx_event_id", "event_id"), bloom("idx_attempt_id", "attempt_id"), bloom("idx_topic", "topic"),
			{Name: "idx_status", Type: "set(100)", Expr: "status", Granularity: 1},
		},
	}
	if v >= 3 {
		t.Columns = append(t.Columns, col{Name: "destination_type", Type: "String", Default: "''"})
		t.Indexes = append(t.Indexes, bloom("idx_destination_type", "destination_type"))
	}
	return t
}

// versionTable is golang-migrate's migrations table as Outpost creates it.
func versionTable() clickhousephase.Table {
	return clickhousephase.Table{
		Name: clickhousephase.VersionTable, Engine: "MergeTree", SortingKey: "sequence",
		Columns: []col{{Name: "version", Type: "Int64"}, {Name: "dirty", Type: "UInt8"}, {Name: "sequence", Type: "UInt64"}},
	}
}
