package clickhousephase

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/report"
)

// Schema is what verify compares: the tables the migrations create.
type Schema struct {
	Tables []Table
}

// Table is one table as ClickHouse's system tables describe it. Name is
// without the deployment prefix.
type Table struct {
	Name string
	// Engine is system.tables.engine ("ReplacingMergeTree"); empty: not
	// compared.
	Engine string
	// SortingKey and PartitionKey are system.tables' expressions as the
	// server normalizes them ("event_time, event_id", "toYYYYMM(event_time)").
	SortingKey   string
	PartitionKey string
	// Columns in table order.
	Columns []Column
	// Indexes are the data-skipping indexes, in any order.
	Indexes []Index
}

// Column is a column of system.columns.
type Column struct {
	Name string
	Type string
	// Default is the DEFAULT expression as the server prints it ("false",
	// "[]", "''"), empty when there is none.
	Default string
}

// Index is a row of system.data_skipping_indices.
type Index struct {
	Name string
	// Type is type_full: "bloom_filter", "set(100)".
	Type        string
	Expr        string
	Granularity uint64
}

// Inspect reads the tables of want (with prefix) from database.
func Inspect(ctx context.Context, conn driver.Conn, database, prefix string, want *Schema) (*Schema, error) {
	live := &Schema{}
	for _, wt := range want.Tables {
		name := prefix + wt.Name
		var t Table
		rows, err := conn.Query(ctx, `SELECT engine, sorting_key, partition_key FROM system.tables WHERE database = ? AND name = ?`, database, name)
		if err != nil {
			return nil, fmt.Errorf("read system.tables: %w", err)
		}
		found := false
		for rows.Next() {
			found = true
			if err := rows.Scan(&t.Engine, &t.SortingKey, &t.PartitionKey); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read system.tables: %w", err)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read system.tables: %w", err)
		}
		if !found {
			continue
		}
		t.Name = wt.Name
		if t.Columns, err = inspectColumns(ctx, conn, database, name); err != nil {
			return nil, err
		}
		if t.Indexes, err = inspectIndexes(ctx, conn, database, name); err != nil {
			return nil, err
		}
		live.Tables = append(live.Tables, t)
	}
	return live, nil
}

func inspectColumns(ctx context.Context, conn driver.Conn, database, table string) ([]Column, error) {
	return collect(ctx, conn, "system.columns of "+table, func(rows driver.Rows, c *Column) error {
		return rows.Scan(&c.Name, &c.Type, &c.Default)
	}, `SELECT name, type, default_expression FROM system.columns WHERE database = ? AND table = ? ORDER BY position`, database, table)
}

func inspectIndexes(ctx context.Context, conn driver.Conn, database, table string) ([]Index, error) {
	return collect(ctx, conn, "system.data_skipping_indices of "+table, func(rows driver.Rows, i *Index) error {
		return rows.Scan(&i.Name, &i.Type, &i.Expr, &i.Granularity)
	}, `SELECT name, type_full, expr, granularity FROM system.data_skipping_indices WHERE database = ? AND table = ? ORDER BY name`, database, table)
}

// collect runs query and scans every row with scan; what names what is read
// in errors.
func collect[T any](ctx context.Context, conn driver.Conn, what string, scan func(driver.Rows, *T) error, query string, args ...any) ([]T, error) {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var x T
		if err := scan(rows, &x); err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// byName indexes xs by name.
func byName[T any](xs []T, name func(T) string) map[string]T {
	out := make(map[string]T, len(xs))
	for _, x := range xs {
		out[name(x)] = x
	}
	return out
}

// Diff lists every difference of live from want, object by object: a
// missing table; a table's engine, sorting key or partition key; a missing,
// extra or retyped column, a changed default, the column order; a missing,
// extra or changed skip index. prefix names the tables as they live.
func Diff(want, live *Schema, prefix string) []report.Issue {
	var issues []report.Issue
	liveBy := byName(live.Tables, func(t Table) string { return t.Name })
	for _, wt := range want.Tables {
		obj := "table " + prefix + wt.Name
		lt, ok := liveBy[wt.Name]
		if !ok {
			issues = append(issues, report.Issue{Object: obj, Reason: "table is missing"})
			continue
		}
		add := func(field, expected, actual string) {
			issues = append(issues, report.Issue{Object: obj, Field: field, Reason: field + " differs", Expected: expected, Actual: actual})
		}
		if wt.Engine != "" && wt.Engine != lt.Engine {
			add("engine", wt.Engine, lt.Engine)
		}
		if wt.SortingKey != lt.SortingKey {
			add("order by", wt.SortingKey, lt.SortingKey)
		}
		if wt.PartitionKey != lt.PartitionKey {
			add("partition by", wt.PartitionKey, lt.PartitionKey)
		}
		issues = append(issues, diffColumns(obj, wt.Columns, lt.Columns)...)
		issues = append(issues, diffIndexes(obj, wt.Indexes, lt.Indexes)...)
	}
	return issues
}

func diffColumns(obj string, want, live []Column) []report.Issue {
	var issues []report.Issue
	liveBy := byName(live, func(c Column) string { return c.Name })
	wantBy := map[string]bool{}
	var common []string
	for _, w := range want {
		wantBy[w.Name] = true
		l, ok := liveBy[w.Name]
		if !ok {
			issues = append(issues, report.Issue{Object: obj, Field: "column " + w.Name, Reason: "column is missing", Expected: w.Type})
			continue
		}
		common = append(common, w.Name)
		if l.Type != w.Type {
			issues = append(issues, report.Issue{Object: obj, Field: "column " + w.Name, Reason: "column type differs", Expected: w.Type, Actual: l.Type})
		}
		if l.Default != w.Default {
			issues = append(issues, report.Issue{Object: obj, Field: "column " + w.Name, Reason: "column default differs", Expected: w.Default, Actual: l.Default})
		}
	}
	var liveOrder []string
	for _, l := range live {
		if !wantBy[l.Name] {
			issues = append(issues, report.Issue{Object: obj, Field: "column " + l.Name, Reason: "unexpected column", Actual: l.Type})
			continue
		}
		liveOrder = append(liveOrder, l.Name)
	}
	if strings.Join(common, ",") != strings.Join(liveOrder, ",") {
		issues = append(issues, report.Issue{Object: obj, Field: "column order", Reason: "columns are in another order",
			Expected: strings.Join(common, ", "), Actual: strings.Join(liveOrder, ", ")})
	}
	return issues
}

func diffIndexes(obj string, want, live []Index) []report.Issue {
	var issues []report.Issue
	liveBy := byName(live, func(i Index) string { return i.Name })
	desc := func(i Index) string {
		return i.Expr + " TYPE " + i.Type + " GRANULARITY " + strconv.FormatUint(i.Granularity, 10)
	}
	seen := map[string]bool{}
	for _, w := range want {
		seen[w.Name] = true
		l, ok := liveBy[w.Name]
		switch {
		case !ok:
			issues = append(issues, report.Issue{Object: obj, Field: "index " + w.Name, Reason: "skip index is missing", Expected: desc(w)})
		case desc(l) != desc(w):
			issues = append(issues, report.Issue{Object: obj, Field: "index " + w.Name, Reason: "skip index differs", Expected: desc(w), Actual: desc(l)})
		}
	}
	for _, l := range live {
		if !seen[l.Name] {
			issues = append(issues, report.Issue{Object: obj, Field: "index " + l.Name, Reason: "unexpected skip index", Actual: desc(l)})
		}
	}
	return issues
}
