package sqlmigrations

import (
	"context"
	"fmt"
	"time"

	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/report"
)

// The rates a table rewrite runs at (ALTER COLUMN ... TYPE rewrites the
// heap and rebuilds every index of the table): heap bytes read and written,
// and index entries built, per second. Fitted to issue #23's timings of
// 000006 (11.5-12.0 s) and 000009 (8.4-9.5 s) on a million deliveries on
// an otherwise idle machine of this project's kind (2 cores); a slower or
// busier server takes longer (under a load average of 30 the benchmark saw
// five times as long).
const (
	rewriteHeapBytesPerS  = 100 << 20
	rewriteIndexEntriesPS = 1_270_000
)

// Indexes each table has while a locking migration rebuilds it (the
// primary key included).
const (
	attemptsIndexesAt6 = 7 // pkey + the six of 000005
	eventsIndexesAt6   = 4 // pkey + idx_events_tenant_time, _tenant_topic_time, _id
	attemptsIndexesAt9 = 8 // + idx_attempts_tenant_desttype_time (000008)
	finishScans        = 3 // the catch-up UPDATE, the DELETE, SET NOT NULL
	finishAttemptsIdx  = 6
	finishEventsIdx    = 2
)

// Locks implements sqlphase.Source.Locks for Outpost's migrations: 000005's
// finish step (catch-up, SET NOT NULL, renames, eight index builds) and
// 000006 and 000009 (column type changes that rewrite the table) hold
// ACCESS EXCLUSIVE on whole tables until they commit.
func Locks(ctx context.Context, q sqlphase.Querier, version int) (*report.ExclusiveLock, error) {
	if version != 5 && version != 6 && version != 9 {
		return nil, nil
	}
	ev, err := sizeOf(ctx, q, "events")
	if err != nil {
		return nil, err
	}
	att, predicted, err := attemptsSize(ctx, q, ev)
	if err != nil {
		return nil, err
	}
	var lock report.ExclusiveLock
	var heap, entries int64
	switch version {
	case 5:
		lock = report.ExclusiveLock{Tables: []string{"deliveries", "events"}, Step: "finish"}
		heap = finishScans*att.heap + ev.heap
		entries = att.rows*finishAttemptsIdx + ev.rows*finishEventsIdx
	case 6:
		lock = report.ExclusiveLock{Tables: []string{"events", "attempts"}}
		heap = att.heap + ev.heap
		entries = att.rows*attemptsIndexesAt6 + ev.rows*eventsIndexesAt6
	case 9:
		lock = report.ExclusiveLock{Tables: []string{"attempts"}}
		heap = att.heap
		entries = att.rows * attemptsIndexesAt9
	}
	lock.Mode = "ACCESS EXCLUSIVE"
	lock.Bytes = heap
	d := time.Duration(float64(heap)/rewriteHeapBytesPerS*float64(time.Second)) +
		time.Duration(float64(entries)/rewriteIndexEntriesPS*float64(time.Second))
	lock.EstimatedMS = d.Milliseconds()
	lock.Basis = fmt.Sprintf("%d MiB of table pages and %d index entries, at %d MiB/s and %d entries/s (fitted on an idle 2-core machine)",
		heap>>20, entries, rewriteHeapBytesPerS>>20, rewriteIndexEntriesPS)
	if predicted {
		lock.Basis += "; attempts' size predicted from deliveries and events, before migration 5 made it"
	}
	return &lock, nil
}

// relSize is a table's size over all its partitions.
type relSize struct{ heap, rows int64 }

// sizeOf measures table (zero if it does not exist).
func sizeOf(ctx context.Context, q sqlphase.Querier, table string) (relSize, error) {
	var s relSize
	err := q.QueryRow(ctx, `
		WITH t AS (SELECT to_regclass($1) AS oid),
		leaves AS (
			SELECT relid FROM t, pg_partition_tree(t.oid) WHERE isleaf
			UNION
			SELECT c.oid FROM t JOIN pg_class c ON c.oid = t.oid WHERE c.relkind = 'r'
		)
		SELECT COALESCE(sum(pg_relation_size(l.relid)), 0)::bigint, COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint
		FROM leaves l JOIN pg_class c ON c.oid = l.relid`, table).Scan(&s.heap, &s.rows)
	if err != nil {
		return s, fmt.Errorf("measure table %s: %w", table, err)
	}
	return s, nil
}

// attemptsSize measures attempts or, before migration 5 made it, predicts
// its size after 5 from deliveries and events: each delivery's row grows by
// about an event's row (its data and metadata are copied), and the old row
// versions stay in the table as dead space until 000006 rewrites it.
func attemptsSize(ctx context.Context, q sqlphase.Querier, ev relSize) (relSize, bool, error) {
	att, err := sizeOf(ctx, q, "attempts")
	if err != nil || att.heap > 0 {
		return att, false, err
	}
	del, err := sizeOf(ctx, q, "deliveries")
	if err != nil {
		return att, false, err
	}
	perEvent := int64(0)
	if ev.rows > 0 {
		perEvent = ev.heap / ev.rows
	}
	return relSize{heap: 2*del.heap + del.rows*perEvent, rows: del.rows}, true, nil
}
