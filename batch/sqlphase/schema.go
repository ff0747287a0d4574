package sqlphase

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/outpost-migrate/outpost/report"
)

// Schema is the shape of the tables of one PostgreSQL schema (namespace), in
// the normalized text PostgreSQL's own catalog functions print: types from
// format_type, defaults and generated expressions from pg_get_expr, index
// definitions from pg_get_indexdef (from "USING" on), constraints from
// pg_get_constraintdef, partition keys from pg_get_partkeydef and bounds
// from pg_get_expr(relpartbound). Column order is not part of it (every
// reader names its columns).
type Schema struct {
	Tables []Table `json:"tables"`
}

// Table is a regular table, a partitioned parent or a partition.
type Table struct {
	Name string `json:"name"`
	// PartitionKey is set on a partitioned parent: `RANGE ("time")`.
	PartitionKey string `json:"partition_key,omitempty"`
	// PartitionOf and PartitionBound are set on a partition: its parent and
	// "DEFAULT" or "FOR VALUES ...".
	PartitionOf    string       `json:"partition_of,omitempty"`
	PartitionBound string       `json:"partition_bound,omitempty"`
	Columns        []Column     `json:"columns"`
	Indexes        []Index      `json:"indexes,omitempty"`
	Constraints    []Constraint `json:"constraints,omitempty"`
}

// Column is one column.
type Column struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	NotNull bool   `json:"not_null"`
	// Default is the default expression; empty for none.
	Default string `json:"default,omitempty"`
	// Generated is the expression of a GENERATED ALWAYS AS (...) STORED
	// column; empty for an ordinary column.
	Generated string `json:"generated,omitempty"`
}

// Index is one index on a table.
type Index struct {
	Name string `json:"name"`
	// Def is pg_get_indexdef from the access method on:
	// `btree (tenant_id, "time" DESC, id DESC)`.
	Def     string `json:"def"`
	Unique  bool   `json:"unique,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	// Parent is the partitioned index this partition's index is attached
	// to; empty on a parent or a plain table.
	Parent string `json:"parent,omitempty"`
}

// Constraint is a primary key, unique, check, foreign key or exclusion
// constraint (NOT NULL is a column property here).
type Constraint struct {
	Name string `json:"name"`
	// Def is pg_get_constraintdef: `PRIMARY KEY ("time", id)`.
	Def string `json:"def"`
}

// Table returns the named table, or nil.
func (s *Schema) Table(name string) *Table {
	for i := range s.Tables {
		if s.Tables[i].Name == name {
			return &s.Tables[i]
		}
	}
	return nil
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// Bookkeeping tables that are not part of the migrated schema.
const (
	versionTable    = "schema_migrations"
	checkpointTable = "outpost_migrate_checkpoint"
)

// Inspect reads the live schema of q's current schema (the first existing
// schema on the search_path), leaving out schema_migrations and this tool's
// checkpoint table.
func Inspect(ctx context.Context, q Querier) (*Schema, error) {
	s := &Schema{}
	var order []uint32
	var t Table
	var oid uint32
	err := eachRow(ctx, q, "tables", `
		SELECT c.oid, c.relname,
		       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '' END,
		       COALESCE(p.relname, ''),
		       COALESCE(pg_get_expr(c.relpartbound, c.oid), '')
		FROM pg_class c
		LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
		LEFT JOIN pg_class p ON p.oid = i.inhparent
		WHERE c.relnamespace = current_schema()::regnamespace
		  AND c.relkind IN ('r', 'p')
		  AND c.relname NOT IN ($1, $2)
		ORDER BY c.relname`, []any{versionTable, checkpointTable},
		[]any{&oid, &t.Name, &t.PartitionKey, &t.PartitionOf, &t.PartitionBound}, func() {
			s.Tables = append(s.Tables, t)
			order = append(order, oid)
		})
	if err != nil || len(order) == 0 {
		return s, err
	}
	byOID := make(map[uint32]*Table, len(order))
	for i, oid := range order {
		byOID[oid] = &s.Tables[i]
	}
	for _, read := range []func(context.Context, Querier, []uint32, map[uint32]*Table) error{readColumns, readIndexes, readConstraints} {
		if err := read(ctx, q, order, byOID); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// eachRow runs a catalog query and calls fn after scanning each row into
// dest.
func eachRow(ctx context.Context, q Querier, what, sql string, args, dest []any, fn func()) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	_, err = pgx.ForEachRow(rows, dest, func() error { fn(); return nil })
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

func readColumns(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table) error {
	var oid uint32
	var c Column
	var generated bool
	var expr string
	return eachRow(ctx, q, "columns", `
		SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       a.attgenerated = 's', COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute a
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attrelid, a.attnum`, []any{oids},
		[]any{&oid, &c.Name, &c.Type, &c.NotNull, &generated, &expr}, func() {
			col := c
			if generated {
				col.Generated = expr
			} else {
				col.Default = expr
			}
			byOID[oid].Columns = append(byOID[oid].Columns, col)
		})
}

func readIndexes(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table) error {
	var oid uint32
	var ix Index
	var def string
	return eachRow(ctx, q, "indexes", `
		SELECT x.indrelid, ic.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary,
		       COALESCE(pi.relname, '')
		FROM pg_index x
		JOIN pg_class ic ON ic.oid = x.indexrelid
		LEFT JOIN pg_inherits ih ON ih.inhrelid = x.indexrelid
		LEFT JOIN pg_class pi ON pi.oid = ih.inhparent
		WHERE x.indrelid = ANY($1)
		ORDER BY ic.relname`, []any{oids},
		[]any{&oid, &ix.Name, &def, &ix.Unique, &ix.Primary, &ix.Parent}, func() {
			ix.Def = indexDefTail(def)
			byOID[oid].Indexes = append(byOID[oid].Indexes, ix)
		})
}

// readConstraints leaves contype 'n' (NOT NULL constraints, PostgreSQL 18)
// out: column nullability already says it.
func readConstraints(ctx context.Context, q Querier, oids []uint32, byOID map[uint32]*Table) error {
	var oid uint32
	var c Constraint
	return eachRow(ctx, q, "constraints", `
		SELECT conrelid, conname, pg_get_constraintdef(oid)
		FROM pg_constraint
		WHERE conrelid = ANY($1) AND contype IN ('p', 'u', 'c', 'f', 'x')
		ORDER BY conname`, []any{oids},
		[]any{&oid, &c.Name, &c.Def}, func() {
			byOID[oid].Constraints = append(byOID[oid].Constraints, c)
		})
}

// indexDefTail keeps pg_get_indexdef's text from the access method on, so
// that the index name, the schema and ON ONLY (printed for partitioned
// parents) do not enter the comparison; they are compared separately.
func indexDefTail(def string) string {
	if i := strings.Index(def, " USING "); i >= 0 {
		return def[i+len(" USING "):]
	}
	return def
}

// Diff lists every difference between an expected and a live schema, in a
// stable order: missing and unexpected tables, then per table its kind,
// partitioning, columns (type, nullability, default, generated expression),
// indexes (definition, uniqueness, primary, attachment) and constraints.
//
// Partitions of an expected partitioned table that the expected schema does
// not list (range partitions an operator added for retention) are accepted:
// their columns are the parent's and their indexes follow the parent's.
func Diff(expected, actual *Schema) []report.Issue {
	var out []report.Issue
	add := func(object, field, reason, exp, act string) {
		out = append(out, report.Issue{Object: object, Field: field, Reason: reason, Expected: exp, Actual: act})
	}
	for _, et := range expected.Tables {
		at := actual.Table(et.Name)
		if at == nil {
			add("table "+et.Name, "", "table missing", tableKind(&et), "")
			continue
		}
		diffTable(&et, at, add)
	}
	for _, at := range actual.Tables {
		if expected.Table(at.Name) != nil {
			continue
		}
		if at.PartitionOf != "" {
			if p := expected.Table(at.PartitionOf); p != nil && p.PartitionKey != "" && at.PartitionBound != "DEFAULT" {
				continue
			}
		}
		add("table "+at.Name, "", "unexpected table", "", tableKind(&at))
	}
	return out
}

func tableKind(t *Table) string {
	switch {
	case t.PartitionOf != "":
		return "partition of " + t.PartitionOf + " " + t.PartitionBound
	case t.PartitionKey != "":
		return "partitioned table, PARTITION BY " + t.PartitionKey
	default:
		return "table"
	}
}

func diffTable(et, at *Table, add func(object, field, reason, exp, act string)) {
	obj := "table " + et.Name
	if et.PartitionKey != at.PartitionKey {
		add(obj, "partition_key", "partitioning differs", et.PartitionKey, at.PartitionKey)
	}
	if et.PartitionOf != at.PartitionOf {
		add(obj, "partition_of", "partition parent differs", et.PartitionOf, at.PartitionOf)
	}
	if et.PartitionBound != at.PartitionBound {
		add(obj, "partition_bound", "partition bound differs", et.PartitionBound, at.PartitionBound)
	}
	diffColumns(et, at, add)
	diffIndexes(et, at, add)
	diffConstraints(et, at, add)
}

func diffColumns(et, at *Table, add func(object, field, reason, exp, act string)) {
	for _, ec := range et.Columns {
		ac := at.Column(ec.Name)
		cobj := "column " + et.Name + "." + ec.Name
		if ac == nil {
			add(cobj, "", "column missing", columnText(ec), "")
			continue
		}
		if ec.Type != ac.Type {
			add(cobj, "type", "type differs", ec.Type, ac.Type)
		}
		if ec.NotNull != ac.NotNull {
			add(cobj, "not_null", "nullability differs", nullText(ec.NotNull), nullText(ac.NotNull))
		}
		if ec.Default != ac.Default {
			add(cobj, "default", "default differs", ec.Default, ac.Default)
		}
		if ec.Generated != ac.Generated {
			add(cobj, "generated", "generated expression differs", ec.Generated, ac.Generated)
		}
	}
	for _, ac := range at.Columns {
		if et.Column(ac.Name) == nil {
			add("column "+et.Name+"."+ac.Name, "", "unexpected column", "", columnText(ac))
		}
	}
}

func diffIndexes(et, at *Table, add func(object, field, reason, exp, act string)) {
	eIdx, aIdx := byName(et.Indexes, func(ix Index) string { return ix.Name }), byName(at.Indexes, func(ix Index) string { return ix.Name })
	for _, name := range sortedKeys(eIdx) {
		ei := eIdx[name]
		iobj := "index " + name + " on " + et.Name
		ai, ok := aIdx[name]
		if !ok {
			add(iobj, "", "index missing", indexText(ei), "")
			continue
		}
		if ei.Def != ai.Def {
			add(iobj, "def", "index definition differs", ei.Def, ai.Def)
		}
		if ei.Unique != ai.Unique {
			add(iobj, "unique", "uniqueness differs", fmt.Sprint(ei.Unique), fmt.Sprint(ai.Unique))
		}
		if ei.Primary != ai.Primary {
			add(iobj, "primary", "primary-key flag differs", fmt.Sprint(ei.Primary), fmt.Sprint(ai.Primary))
		}
		if ei.Parent != ai.Parent {
			add(iobj, "parent", "attached to a different parent index", ei.Parent, ai.Parent)
		}
	}
	for _, name := range sortedKeys(aIdx) {
		if _, ok := eIdx[name]; !ok {
			add("index "+name+" on "+et.Name, "", "unexpected index", "", indexText(aIdx[name]))
		}
	}
}

func diffConstraints(et, at *Table, add func(object, field, reason, exp, act string)) {
	eCon, aCon := byName(et.Constraints, func(c Constraint) string { return c.Name }), byName(at.Constraints, func(c Constraint) string { return c.Name })
	for _, name := range sortedKeys(eCon) {
		kobj := "constraint " + name + " on " + et.Name
		ac, ok := aCon[name]
		if !ok {
			add(kobj, "", "constraint missing", eCon[name].Def, "")
			continue
		}
		if eCon[name].Def != ac.Def {
			add(kobj, "def", "constraint definition differs", eCon[name].Def, ac.Def)
		}
	}
	for _, name := range sortedKeys(aCon) {
		if _, ok := eCon[name]; !ok {
			add("constraint "+name+" on "+et.Name, "", "unexpected constraint", "", aCon[name].Def)
		}
	}
}

func byName[V any](list []V, name func(V) string) map[string]V {
	m := make(map[string]V, len(list))
	for _, v := range list {
		m[name(v)] = v
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func nullText(notNull bool) string {
	if notNull {
		return "NOT NULL"
	}
	return "NULL"
}

func columnText(c Column) string {
	s := c.Type + " " + nullText(c.NotNull)
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	if c.Generated != "" {
		s += " GENERATED ALWAYS AS (" + c.Generated + ") STORED"
	}
	return s
}

func indexText(ix Index) string {
	s := ix.Def
	if ix.Primary {
		s = "PRIMARY KEY " + s
	} else if ix.Unique {
		s = "UNIQUE " + s
	}
	if ix.Parent != "" {
		s += " (partition of " + ix.Parent + ")"
	}
	return s
}
