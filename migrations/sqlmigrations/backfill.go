package sqlmigrations

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/report"
)

// Backfill is migration 5's batched step: every delivery gets its event's
// tenant_id, topic, time (as event_time), eligible_for_retry, data (as
// event_data) and metadata (as event_metadata), found by event_id, and a
// delivery whose event does not exist is deleted.
//
// It walks deliveries in primary-key order (time, id), at most limit rows
// per batch, from the position after the last row of the previous batch.
// A batch is one statement (a CTE that selects the batch, updates the rows
// that have an event and deletes those that have none), run by sqlphase in
// its own short transaction with the checkpoint, so no lock is held for
// long and a crash repeats at most one batch. Repeating a batch writes the
// same values again: the step is idempotent. The lookup of events by id
// uses idx_events_id, which the migration's first step creates.
//
// The position is "<time in RFC 3339, UTC, microseconds>|<id>".
type Backfill struct{}

// Estimate implements sqlphase.BatchedStep: the rows of deliveries.
func (Backfill) Estimate(ctx context.Context, q sqlphase.Querier, countBelow int64) (report.Estimate, error) {
	return sqlphase.CountRows(ctx, q, "deliveries", countBelow)
}

// The batch CTE. batch is referenced several times, so PostgreSQL
// materializes it once: upd, del and last see the same rows.
const backfillBody = `
	ORDER BY d.time, d.id
	LIMIT $1
), upd AS (
	UPDATE deliveries AS d
	SET tenant_id          = e.tenant_id,
	    topic              = e.topic,
	    event_time         = e.time,
	    eligible_for_retry = e.eligible_for_retry,
	    event_data         = e.data,
	    event_metadata     = e.metadata
	FROM batch AS b
	JOIN events AS e ON e.id = b.event_id
	WHERE d.time = b.time AND d.id = b.id
	RETURNING 1
), del AS (
	DELETE FROM deliveries AS d
	USING batch AS b
	WHERE d.time = b.time AND d.id = b.id
	  AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.id = b.event_id)
	RETURNING 1
), last AS (
	SELECT time, id FROM batch ORDER BY time DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM upd), (SELECT count(*) FROM del),
       (SELECT time FROM last), (SELECT id FROM last)`

const backfillFirst = `WITH batch AS (
	SELECT d.time, d.id, d.event_id
	FROM deliveries AS d` + backfillBody

const backfillNext = `WITH batch AS (
	SELECT d.time, d.id, d.event_id
	FROM deliveries AS d
	WHERE (d.time, d.id) > ($2::timestamptz, $3::text)` + backfillBody

// Batch implements sqlphase.BatchedStep.
func (Backfill) Batch(ctx context.Context, tx pgx.Tx, position string, limit int) (sqlphase.BatchResult, error) {
	var res sqlphase.BatchResult
	var row pgx.Row
	if position == "" {
		row = tx.QueryRow(ctx, backfillFirst, limit)
	} else {
		t, id, err := parsePosition(position)
		if err != nil {
			return res, err
		}
		row = tx.QueryRow(ctx, backfillNext, limit, t, id)
	}
	var lastTime *time.Time
	var lastID *string
	if err := row.Scan(&res.Rows, &res.Changed, &res.Deleted, &lastTime, &lastID); err != nil {
		return res, fmt.Errorf("backfill deliveries after %q: %w", position, err)
	}
	if lastTime != nil && lastID != nil {
		res.Position = formatPosition(*lastTime, *lastID)
	}
	res.Done = res.Rows < int64(limit)
	return res, nil
}

func formatPosition(t time.Time, id string) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") + "|" + id
}

func parsePosition(p string) (time.Time, string, error) {
	ts, id, ok := strings.Cut(p, "|")
	if !ok {
		return time.Time{}, "", fmt.Errorf("backfill position %q is not TIME|ID", p)
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("backfill position %q: %w", p, err)
	}
	return t, id, nil
}
