package sqlmigrations

import (
	"fmt"

	"github.com/outpost-migrate/outpost/batch/sqlphase"
)

// Expected returns the schema Outpost's log store has at version (0: no
// migration, no tables), as PostgreSQL's catalog functions print it. It is
// written from the storage spec (docs: outpost-storage.md, "PostgreSQL: the
// log store schema, by version") as a list of changes to a model, not from
// the SQL files, so that comparing a migrated database with it checks the
// SQL files against an independent description.
//
// The names of indexes on partitions are the ones PostgreSQL chooses when
// an index is created on the partitioned parent: "<partition>_<columns>_idx",
// truncated to 63 bytes by taking characters off the longer of the two
// parts, and "<partition>_pkey" for the primary key. A rename of a table
// keeps every index and constraint name (hence deliveries_pkey on attempts
// from version 5 to 9).
func Expected(version int) (*sqlphase.Schema, bool) {
	if version < 0 || version > len(changes) {
		return nil, false
	}
	m := &model{}
	for _, change := range changes[:version] {
		change(m)
	}
	return m.schema(), true
}

// changes[i] turns the schema of version i into that of version i+1.
var changes = []func(*model){
	// 1 init
	func(m *model) {
		m.add(&table{
			name: "events", key: `RANGE ("time")`, partition: "events_default",
			cols: []sqlphase.Column{
				notNull("id", "text"),
				notNull("tenant_id", "text"),
				notNull("destination_id", "text"),
				notNull("time", timestamptz),
				notNull("topic", "text"),
				notNull("eligible_for_retry", "boolean"),
				notNull("data", "jsonb"),
				notNull("metadata", "jsonb"),
				{Name: "time_id", Type: "text", Generated: epochID(`"time"`, "id")},
			},
			pkey: pkey{"events_pkey", "events_default_pkey", `"time", id`},
			indexes: []index{
				{"events_tenant_id_time_id_idx", "events_default_tenant_id_time_id_idx", "btree (tenant_id, time_id DESC)"},
				{"events_tenant_id_destination_id_idx", "events_default_tenant_id_destination_id_idx", "btree (tenant_id, destination_id)"},
			},
		})
		m.add(&table{
			name: "deliveries", key: `RANGE ("time")`, partition: "deliveries_default",
			cols: []sqlphase.Column{
				notNull("id", "text"),
				notNull("event_id", "text"),
				notNull("destination_id", "text"),
				notNull("status", "text"),
				notNull("time", timestamptz),
			},
			pkey: pkey{"deliveries_pkey", "deliveries_default_pkey", `"time", id`},
			indexes: []index{
				{"deliveries_event_id_idx", "deliveries_default_event_id_idx", "btree (event_id)"},
				{"deliveries_event_id_status_idx", "deliveries_default_event_id_status_idx", "btree (event_id, status)"},
			},
		})
	},
	// 2 delivery_response
	func(m *model) {
		d := m.get("deliveries")
		d.addCols(nullable("code", "text"), nullable("response_data", "jsonb"))
	},
	// 3 event_delivery_index
	func(m *model) {
		m.add(&table{
			name: "event_delivery_index", key: "RANGE (delivery_time)", partition: "event_delivery_index_default",
			cols: []sqlphase.Column{
				notNull("event_id", "text"),
				notNull("delivery_id", "text"),
				notNull("tenant_id", "text"),
				notNull("destination_id", "text"),
				notNull("event_time", timestamptz),
				notNull("delivery_time", timestamptz),
				notNull("topic", "text"),
				notNull("status", "text"),
				{Name: "time_event_id", Type: "text", Generated: epochID("event_time", "event_id")},
				{Name: "time_delivery_id", Type: "text", Generated: epochID("delivery_time", "delivery_id")},
			},
			pkey: pkey{"event_delivery_index_pkey", "event_delivery_index_default_pkey", "delivery_time, event_id, delivery_id"},
			indexes: []index{{
				"idx_event_delivery_index_main",
				// 28 + 30 characters + "_idx": the column part is cut to fit 63.
				"event_delivery_index_default_tenant_id_destination_id_topic_idx",
				"btree (tenant_id, destination_id, topic, status, event_time DESC, delivery_time DESC, time_event_id, time_delivery_id)",
			}},
		})
	},
	// 4 delivery_manual_attempt
	func(m *model) {
		for _, name := range []string{"deliveries", "event_delivery_index"} {
			m.get(name).addCols(
				sqlphase.Column{Name: "manual", Type: "boolean", NotNull: true, Default: "false"},
				sqlphase.Column{Name: "attempt", Type: "integer", NotNull: true, Default: "0"},
			)
		}
	},
	// 5 denormalize_attempts
	func(m *model) {
		d := m.get("deliveries")
		d.addCols(
			notNull("tenant_id", "text"),
			notNull("topic", "text"),
			notNull("event_time", timestamptz),
			notNull("eligible_for_retry", "boolean"),
			notNull("event_data", "jsonb"),
			notNull("event_metadata", "jsonb"),
		)
		d.name, d.partition = "attempts", "attempts_default" // pkey names stay
		d.col("attempt").Name = "attempt_number"
		d.indexes = nil
		d.addIndexes(
			index{"idx_attempts_tenant_time", "attempts_default_tenant_id_time_id_idx", `btree (tenant_id, "time" DESC, id DESC)`},
			index{"idx_attempts_tenant_dest_time", "attempts_default_tenant_id_destination_id_time_id_idx", `btree (tenant_id, destination_id, "time" DESC, id DESC)`},
			index{"idx_attempts_tenant_status_time", "attempts_default_tenant_id_status_time_id_idx", `btree (tenant_id, status, "time" DESC, id DESC)`},
			index{"idx_attempts_tenant_topic_time", "attempts_default_tenant_id_topic_time_id_idx", `btree (tenant_id, topic, "time" DESC, id DESC)`},
			index{"idx_attempts_event_time", "attempts_default_event_id_time_id_idx", `btree (event_id, "time" DESC, id DESC)`},
			index{"idx_attempts_id", "attempts_default_id_idx", "btree (id)"},
		)
		m.drop("event_delivery_index")
		e := m.get("events")
		e.dropCol("time_id")
		e.indexes = nil
		e.addIndexes(
			index{"idx_events_tenant_time", "events_default_tenant_id_time_id_idx", `btree (tenant_id, "time" DESC, id DESC)`},
			index{"idx_events_tenant_topic_time", "events_default_tenant_id_topic_time_id_idx", `btree (tenant_id, topic, "time" DESC, id DESC)`},
			index{"idx_events_id", "events_default_id_idx", "btree (id)"},
		)
	},
	// 6 data_jsonb_to_text
	func(m *model) {
		m.get("events").col("data").Type = "text"
		m.get("attempts").col("event_data").Type = "text"
	},
	// 7 matched_destination_ids
	func(m *model) {
		e := m.get("events")
		e.addCols(sqlphase.Column{Name: "matched_destination_ids", Type: "text[]", NotNull: true, Default: "'{}'::text[]"})
		e.addIndexes(index{"events_matched_destination_ids_idx", "events_default_matched_destination_ids_idx", "gin (matched_destination_ids)"})
		e.dropCol("destination_id")
	},
	// 8 attempt_destination_type
	func(m *model) {
		a := m.get("attempts")
		a.addCols(sqlphase.Column{Name: "destination_type", Type: "text", NotNull: true, Default: "''::text"})
		a.addIndexes(index{"idx_attempts_tenant_desttype_time", "attempts_default_tenant_id_destination_type_time_id_idx", `btree (tenant_id, destination_type, "time" DESC, id DESC)`})
	},
	// 9 response_data_jsonb_to_text
	func(m *model) {
		m.get("attempts").col("response_data").Type = "text"
	},
	// 10 rename_attempts_pkey
	func(m *model) {
		m.get("attempts").pkey = pkey{"attempts_pkey", "attempts_default_pkey", `"time", id`}
	},
}

const timestamptz = "timestamp with time zone"

func notNull(name, typ string) sqlphase.Column {
	return sqlphase.Column{Name: name, Type: typ, NotNull: true}
}

func nullable(name, typ string) sqlphase.Column { return sqlphase.Column{Name: name, Type: typ} }

// epochID is the generated "10-digit zero-padded UTC epoch seconds of t,
// '_', id" expression, as pg_get_expr prints it.
func epochID(t, id string) string {
	return fmt.Sprintf(`((lpad(((EXTRACT(epoch FROM (%s AT TIME ZONE 'UTC'::text)))::bigint)::text, 10, '0'::text) || '_'::text) || %s)`, t, id)
}

// model is the log store: range-partitioned tables, each with one DEFAULT
// partition that has the parent's columns and a copy of each of its indexes.
type model struct{ tables []*table }

type table struct {
	name, key, partition string
	cols                 []sqlphase.Column
	pkey                 pkey
	indexes              []index
}

type pkey struct{ name, partitionName, columns string }

type index struct{ name, partitionName, def string }

func (m *model) add(t *table) { m.tables = append(m.tables, t) }

func (m *model) get(name string) *table {
	for _, t := range m.tables {
		if t.name == name {
			return t
		}
	}
	panic("expected schema: no table " + name)
}

func (m *model) drop(name string) {
	for i, t := range m.tables {
		if t.name == name {
			m.tables = append(m.tables[:i], m.tables[i+1:]...)
			return
		}
	}
	panic("expected schema: no table " + name)
}

func (t *table) addCols(cols ...sqlphase.Column) { t.cols = append(t.cols, cols...) }

func (t *table) addIndexes(ix ...index) { t.indexes = append(t.indexes, ix...) }

func (t *table) col(name string) *sqlphase.Column {
	for i := range t.cols {
		if t.cols[i].Name == name {
			return &t.cols[i]
		}
	}
	panic("expected schema: no column " + t.name + "." + name)
}

func (t *table) dropCol(name string) {
	for i := range t.cols {
		if t.cols[i].Name == name {
			t.cols = append(t.cols[:i], t.cols[i+1:]...)
			return
		}
	}
	panic("expected schema: no column " + t.name + "." + name)
}

// schema materializes the model: each parent and its default partition.
func (m *model) schema() *sqlphase.Schema {
	s := &sqlphase.Schema{}
	for _, t := range m.tables {
		parent := sqlphase.Table{
			Name: t.name, PartitionKey: t.key,
			Columns:     append([]sqlphase.Column(nil), t.cols...),
			Indexes:     []sqlphase.Index{{Name: t.pkey.name, Def: "btree (" + t.pkey.columns + ")", Unique: true, Primary: true}},
			Constraints: []sqlphase.Constraint{{Name: t.pkey.name, Def: "PRIMARY KEY (" + t.pkey.columns + ")"}},
		}
		part := sqlphase.Table{
			Name: t.partition, PartitionOf: t.name, PartitionBound: "DEFAULT",
			Columns: append([]sqlphase.Column(nil), t.cols...),
			Indexes: []sqlphase.Index{{Name: t.pkey.partitionName, Def: "btree (" + t.pkey.columns + ")",
				Unique: true, Primary: true, Parent: t.pkey.name}},
			Constraints: []sqlphase.Constraint{{Name: t.pkey.partitionName, Def: "PRIMARY KEY (" + t.pkey.columns + ")"}},
		}
		for _, ix := range t.indexes {
			parent.Indexes = append(parent.Indexes, sqlphase.Index{Name: ix.name, Def: ix.def})
			part.Indexes = append(part.Indexes, sqlphase.Index{Name: ix.partitionName, Def: ix.def, Parent: ix.name})
		}
		s.Tables = append(s.Tables, parent, part)
	}
	return s
}
