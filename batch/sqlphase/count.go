package sqlphase

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/report"
)

// CountRows says how many rows table holds (all its partitions for a
// partitioned table): the catalog's estimate (the sum of pg_class.reltuples
// over its leaf partitions, Method "catalog") when that is at least
// countBelow, else an exact count(*) (Method "counted"). A table whose
// statistics were never gathered is counted. A table that does not exist
// (yet) counts 0, with a note. table is an unqualified name resolved by the
// search_path.
func CountRows(ctx context.Context, q Querier, table string, countBelow int64) (report.Estimate, error) {
	est := report.Estimate{Units: "rows"}
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return est, fmt.Errorf("look up table %s: %w", table, err)
	}
	if !exists {
		est.Method = "counted"
		est.Note = fmt.Sprintf("table %s does not exist yet: an earlier pending migration creates it", table)
		return est, nil
	}
	var catalog int64
	var unknown bool
	// pg_partition_tree lists nothing for a table that is not partitioned:
	// such a table is its own only leaf.
	err := q.QueryRow(ctx, `
		WITH leaves AS (
			SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf
			UNION
			SELECT oid FROM pg_class WHERE oid = $1::regclass AND relkind <> 'p'
		)
		SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint, COALESCE(bool_or(c.reltuples < 0), true)
		FROM leaves l JOIN pg_class c ON c.oid = l.relid`, table).Scan(&catalog, &unknown)
	if err != nil {
		return est, fmt.Errorf("estimate rows of %s: %w", table, err)
	}
	if !unknown && catalog >= countBelow {
		est.Method, est.Value = "catalog", catalog
		est.Note = "estimate from pg_class.reltuples"
		return est, nil
	}
	if err := q.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&est.Value); err != nil {
		return est, fmt.Errorf("count rows of %s: %w", table, err)
	}
	est.Method = "counted"
	return est, nil
}
