package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/batch/stores"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/sqlmigrations"
	"github.com/outpost-migrate/outpost/report"
)

// openSQL builds the SQL phase and, with --wait-for, waits for a server
// that is still starting. lockWait (--lock-timeout) bounds the wait for
// golang-migrate's advisory lock too: with --sql-only it is the only
// migration lock, and 0 must fail at once there as it does for the Redis
// lease.
func openSQL(ctx context.Context, cfg *config.Config, waitFor, lockWait time.Duration, showSQL bool, events progress.Sink) (*sqlphase.Phase, error) {
	p, err := sqlphase.New(ctx, cfg.PostgresURL, sqlmigrations.Source(), sqlphase.Options{AdvisoryLockWait: lockWait, ShowSQL: showSQL})
	if err != nil {
		return nil, err
	}
	err = stores.Wait(ctx, waitFor,
		func() error {
			_, _, err := p.Version(ctx)
			if report.CodeOf(err) == report.CodeUnreachable {
				return err
			}
			// Reachable: let the command report what it finds (a missing
			// schema_migrations table is not an error).
			return nil
		},
		func(error) bool { return true },
		func(attempt int, err error, _ time.Duration) {
			progress.Warnf(events, "postgres not reachable yet (attempt %d): %v; retrying", attempt, err)
		})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// forceSQL records a version after a manual repair.
func forceSQL(ctx context.Context, w *wiring, rep *report.Report, version int) error {
	p := w.sql
	before, dirty, err := p.Version(ctx)
	if err != nil {
		return err
	}
	if err := p.Force(ctx, version); err != nil {
		return err
	}
	lines, err := p.Status(ctx)
	rep.Migrations = lines
	if err != nil {
		return err
	}
	rep.Outcome = report.OutcomeForced
	rep.Changed = true
	rep.Msg = fmt.Sprintf("recorded schema version %d (was %d, dirty %v)", version, before, dirty)
	return nil
}

// seedPostgres migrates the log store to version and writes generated rows.
func seedPostgres(ctx context.Context, w *wiring, version int, opts seed.PGOptions) (seed.PGStats, error) {
	p := w.sql
	if p == nil {
		return seed.PGStats{}, report.E(report.CodeUsage, "--pg-version seeds a PostgreSQL log store: set POSTGRES_URL")
	}
	run := &batch.Run{ID: "seed", Command: "dev seed", Target: strconv.Itoa(version), Events: progress.Nop}
	if _, err := p.Apply(ctx, run); err != nil {
		return seed.PGStats{}, err
	}
	conn, err := pgx.Connect(ctx, w.cfg.PostgresURL)
	if err != nil {
		return seed.PGStats{}, report.Wrap(report.CodeUnreachable, err, "connect to postgres")
	}
	defer conn.Close(context.WithoutCancel(ctx))
	opts.Version = version
	return seed.WritePostgres(ctx, conn, opts)
}
