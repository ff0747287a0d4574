package sqlmigrations

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/report"
)

// Backfill is migration 5's batched step: every delivery gets its event's
// tenant_id, topic, time (as event_time), eligible_for_retry, data (as
// event_data) and metadata (as event_metadata), found by event_id, and a
// delivery whose event does not exist is deleted.
//
// It walks each leaf partition of deliveries in physical order, a range of
// heap pages per batch (a TID range scan), from page 0 to the partition's
// size when the walk reached it. Physical order is what makes it as fast as
// Outpost's single UPDATE: each page is read and dirtied once, and the new
// row versions are appended together. (Walking in primary-key order instead
// touched rows scattered over the whole table in every batch, and the
// planner, misjudging a batch's size, hashed the whole table twice per
// batch: both measured, see README "Performance".)
//
// A batch changes only rows whose tenant_id is still NULL, so a row version
// that an update moved ahead of the walk is not visited twice, and the
// counts are exact. Each batch runs in its own short transaction with the
// checkpoint (sqlphase), so no lock is held for long and a crash repeats at
// most one batch. Rows the walk cannot see (written behind it or past the
// end while it ran, or moved by a VACUUM FULL between a crash and the
// resume) keep tenant_id NULL: the migration's "finish" step catches them
// up under a lock that keeps writers out, so the result is exact whatever
// happened to physical positions.
//
// The position is "ctid|<partition>|<next page>|<end page>|<rows per page>".
type Backfill struct{}

// Estimate implements sqlphase.BatchedStep: the rows of deliveries.
func (Backfill) Estimate(ctx context.Context, q sqlphase.Querier, countBelow int64) (report.Estimate, error) {
	est, err := sqlphase.CountRows(ctx, q, "deliveries", countBelow)
	if err != nil || est.Value == 0 {
		return est, err
	}
	// The deliveries whose event is gone are deleted, not backfilled: count
	// them exactly (one anti-join, read-only), so a reviewer sees what is
	// destroyed.
	var orphans int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)`).Scan(&orphans); err != nil {
		return est, fmt.Errorf("count deliveries without an event: %w", err)
	}
	est.Deletes = &orphans
	return est, nil
}

// walk is a decoded position.
type walk struct {
	leaf      string // regclass text of the partition, as PostgreSQL quotes it
	next, end int64  // pages [next, end) are left
	perPage   float64
}

func (w walk) String() string {
	return fmt.Sprintf("ctid|%s|%d|%d|%.1f", w.leaf, w.next, w.end, w.perPage)
}

const positionPrefix = "ctid|"

// leafRE: a partition's name as regclass prints it, possibly schema
// qualified and quoted. The position is spliced into SQL, so anything else
// is not trusted: the walk starts over.
var leafRE = regexp.MustCompile(`^[A-Za-z0-9_."$]+$`)

func parseWalk(p string) (walk, bool) {
	rest, ok := strings.CutPrefix(p, positionPrefix)
	if !ok {
		return walk{}, false
	}
	f := strings.Split(rest, "|")
	if len(f) != 4 {
		return walk{}, false
	}
	w := walk{leaf: f[0]}
	var err1, err2, err3 error
	w.next, err1 = strconv.ParseInt(f[1], 10, 64)
	w.end, err2 = strconv.ParseInt(f[2], 10, 64)
	w.perPage, err3 = strconv.ParseFloat(f[3], 64)
	if err1 != nil || err2 != nil || err3 != nil || !leafRE.MatchString(w.leaf) || w.next < 0 || w.end < 0 {
		return walk{}, false
	}
	return w, true
}

// leafAfter returns the partition to walk after prev ("" = the first one),
// with its current size in pages and its rows per page; ok is false when
// none is left. A deliveries table that is not partitioned is its own leaf.
func leafAfter(ctx context.Context, tx pgx.Tx, prev string) (walk, bool, error) {
	var w walk
	err := tx.QueryRow(ctx, `
		WITH leaves AS (
			SELECT relid FROM pg_partition_tree('deliveries'::regclass) WHERE isleaf
			UNION
			SELECT oid FROM pg_class WHERE oid = 'deliveries'::regclass AND relkind = 'r'
		)
		SELECT l.relid::regclass::text,
		       pg_relation_size(l.relid) / current_setting('block_size')::bigint,
		       CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 50 END
		FROM leaves l JOIN pg_class c ON c.oid = l.relid
		WHERE l.relid::regclass::text > $1
		ORDER BY 1 LIMIT 1`, prev).Scan(&w.leaf, &w.end, &w.perPage)
	if err == pgx.ErrNoRows {
		return w, false, nil
	}
	if err != nil {
		return w, false, fmt.Errorf("list the partitions of deliveries: %w", err)
	}
	return w, true, nil
}

// The batch statements; %s is the partition (a quoted regclass text).
// Hash and merge joins are off for the batch's transaction: a batch is a
// few thousand rows, each found by idx_events_id, and a hash join would
// read every event for each batch.
const (
	backfillPlan   = `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`
	backfillUpdate = `
	UPDATE %s AS d
	SET tenant_id          = e.tenant_id,
	    topic              = e.topic,
	    event_time         = e.time,
	    eligible_for_retry = e.eligible_for_retry,
	    event_data         = e.data,
	    event_metadata     = e.metadata
	FROM events AS e
	WHERE d.ctid >= format('(%%s,0)', $1::bigint)::tid AND d.ctid < format('(%%s,0)', $2::bigint)::tid
	  AND d.tenant_id IS NULL AND e.id = d.event_id`
	backfillDelete = `
	DELETE FROM %s AS d
	WHERE d.ctid >= format('(%%s,0)', $1::bigint)::tid AND d.ctid < format('(%%s,0)', $2::bigint)::tid
	  AND d.tenant_id IS NULL
	  AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.id = d.event_id)`
)

// Batch implements sqlphase.BatchedStep: about limit rows (pages of the
// partition times its rows per page) from position.
func (Backfill) Batch(ctx context.Context, tx pgx.Tx, position string, limit int) (sqlphase.BatchResult, error) {
	var res sqlphase.BatchResult
	w, ok := parseWalk(position)
	if !ok {
		// No position yet, or one written by an earlier release (primary
		// key order): start the walk over. Rows already done are skipped
		// (tenant_id is set), so nothing is counted twice.
		var err error
		if w, ok, err = leafAfter(ctx, tx, ""); err != nil || !ok {
			res.Done = err == nil
			return res, err
		}
	}
	for w.next >= w.end {
		nw, more, err := leafAfter(ctx, tx, w.leaf)
		if err != nil {
			return res, err
		}
		if !more {
			res.Position, res.Done = w.String(), true
			return res, nil
		}
		w = nw
	}
	pages := int64(float64(limit)/max(w.perPage, 1) + 0.5)
	hi := min(w.next+max(pages, 1), w.end)
	if _, err := tx.Exec(ctx, backfillPlan); err != nil {
		return res, fmt.Errorf("backfill: plan settings: %w", err)
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(backfillUpdate, w.leaf), w.next, hi)
	if err != nil {
		return res, fmt.Errorf("backfill %s pages %d-%d: %w", w.leaf, w.next, hi, err)
	}
	res.Changed = tag.RowsAffected()
	tag, err = tx.Exec(ctx, fmt.Sprintf(backfillDelete, w.leaf), w.next, hi)
	if err != nil {
		return res, fmt.Errorf("backfill %s pages %d-%d: delete orphans: %w", w.leaf, w.next, hi, err)
	}
	res.Deleted = tag.RowsAffected()
	res.Rows = res.Changed + res.Deleted
	w.next = hi
	res.Position = w.String()
	if w.next >= w.end {
		_, more, err := leafAfter(ctx, tx, w.leaf)
		if err != nil {
			return res, err
		}
		res.Done = !more
	}
	return res, nil
}
