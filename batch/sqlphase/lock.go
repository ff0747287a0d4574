package sqlphase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/poll"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// lockID computes golang-migrate's advisory lock id from the server's
// current_schema() and current_database().
func (p *Phase) lockID(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var schema *string
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_schema(), current_database()`).Scan(&schema, &db); err != nil {
		return 0, classify(ctx, err, report.CodeUnknown, "read current_schema() and current_database() from %s", p.where())
	}
	if schema == nil {
		return 0, report.E(report.CodeConfig, "no schema on the search_path of %s exists (current_schema() is NULL)", p.where())
	}
	return AdvisoryLockID(*schema, versionTable, db), nil
}

// AdvisoryLockID returns the id of golang-migrate's advisory lock for this
// database, as the server names its schema and database.
func (p *Phase) AdvisoryLockID(ctx context.Context) (int64, error) {
	conn, err := p.connect(ctx)
	if err != nil {
		return 0, err
	}
	return p.lockID(ctx, conn)
}

// holder describes the session that holds an advisory lock; no secrets.
type holder struct {
	PID         int
	Application string
	ClientAddr  string
	Since       time.Time
}

// advisoryHolder finds the session holding the advisory lock id (a bigint
// key shows in pg_locks as classid = high 32 bits, objid = low 32 bits,
// objsubid = 1), or nil when it is free.
func advisoryHolder(ctx context.Context, conn *pgx.Conn, id int64) (*holder, error) {
	var h holder
	var since *time.Time
	err := conn.QueryRow(ctx, `
		SELECT l.pid, COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), ''), a.backend_start
		FROM pg_locks l
		LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (l.classid::bigint << 32) | l.objid::bigint = $1
		LIMIT 1`, id).Scan(&h.PID, &h.Application, &h.ClientAddr, &since)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if since != nil {
		h.Since = *since
	}
	return &h, nil
}

func (h *holder) String() string {
	s := fmt.Sprintf("backend pid %d", h.PID)
	if h.Application != "" {
		s += fmt.Sprintf(", application %q", h.Application)
	}
	if h.ClientAddr != "" {
		s += ", client " + h.ClientAddr
	}
	if !h.Since.IsZero() {
		s += ", connected at " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

// lockAdvisory takes golang-migrate's session advisory lock on conn,
// polling pg_try_advisory_lock for up to Options.AdvisoryLockWait rather
// than blocking in pg_advisory_lock, so a wait is bounded and reported.
// The returned release unlocks it (closing the session would too).
func (p *Phase) lockAdvisory(ctx context.Context, conn *pgx.Conn, run *batch.Run) (release func(), err error) {
	id, err := p.lockID(ctx, conn)
	if err != nil {
		return nil, err
	}
	p.advisory = &report.AdvisoryLock{ID: id, State: "free"}
	var h *holder
	who := "another session"
	// Polled every 500 ms up to --lock-timeout; 0 tries once, as the Redis
	// lease does.
	err = poll.Policy{Wait: p.opts.AdvisoryLockWait, First: 500 * time.Millisecond}.Until(ctx,
		func(int) (bool, error) {
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, id).Scan(&ok); err != nil {
				return false, classify(ctx, err, report.CodeUnknown, "take the advisory lock %d on %s", id, p.where())
			}
			if !ok {
				p.advisory.State = "held"
				if h, _ = advisoryHolder(ctx, conn, id); h != nil {
					who = h.String()
				}
			}
			return ok, nil
		},
		func(attempt int, _ time.Duration) {
			if attempt == 1 {
				run.Emit(progress.Event{Level: "warn", Event: progress.LockWaiting,
					Msg:    fmt.Sprintf("waiting up to %s for PostgreSQL advisory lock %d, held by %s", p.opts.AdvisoryLockWait, id, who),
					Fields: map[string]any{"lock": "postgres_advisory", "advisory_lock_id": id}})
			}
		})
	var ended *poll.Ended
	switch {
	case errors.Is(err, poll.ErrExpired):
		e := report.E(report.CodeLockHeld,
			"golang-migrate's advisory lock %d on %s is held by %s (golang-migrate or an older Outpost migrating?); gave up after %s",
			id, p.where(), who, p.opts.AdvisoryLockWait).With("advisory_lock_id", id)
		if h != nil {
			e.With("holder_pid", h.PID)
		}
		return nil, e
	case errors.As(err, &ended):
		return nil, fmt.Errorf("waiting for the advisory lock %d: %w", id, ended.Cause)
	case err != nil:
		return nil, err
	}
	p.advisory.State = "acquired"
	run.Emit(progress.Event{Level: "info", Event: progress.LockAcquired,
		Msg: fmt.Sprintf("PostgreSQL advisory lock %d acquired", id), Fields: map[string]any{"lock": "postgres_advisory", "advisory_lock_id": id}})
	return func() {
		if !conn.IsClosed() {
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(rctx, `SELECT pg_advisory_unlock($1)`, id); err != nil {
				// The session's end releases it; make sure it ends.
				_ = conn.Close(rctx)
			}
		}
		p.advisory.State = "released"
		run.Emit(progress.Event{Level: "info", Event: progress.LockReleased,
			Msg: fmt.Sprintf("PostgreSQL advisory lock %d released", id), Fields: map[string]any{"lock": "postgres_advisory", "advisory_lock_id": id}})
	}, nil
}
