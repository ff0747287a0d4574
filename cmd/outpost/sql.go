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
	if err := waitLogStore(ctx, p, "postgres", waitFor, events); err != nil {
		return nil, err
	}
	return p, nil
}

// logStore is what the phases of the two log stores (PostgreSQL,
// ClickHouse) share for --wait-for and force.
type logStore interface {
	Version(ctx context.Context) (version int, dirty bool, err error)
	Force(ctx context.Context, version int) error
	Status(ctx context.Context) ([]report.Migration, error)
	Close() error
}

// waitLogStore waits, with --wait-for, for a log store (name) that is still
// starting: one that answers is used whatever its version table says (a
// missing schema_migrations table is not an error), and the command reports
// what it finds. It closes p when it gives up.
func waitLogStore(ctx context.Context, p logStore, name string, waitFor time.Duration, events progress.Sink) error {
	err := stores.Wait(ctx, waitFor,
		func() error {
			_, _, err := p.Version(ctx)
			if report.CodeOf(err) == report.CodeUnreachable {
				return err
			}
			return nil
		},
		func(error) bool { return true },
		func(attempt int, err error, _ time.Duration) {
			progress.Warnf(events, "%s not reachable yet (attempt %d): %v; retrying", name, attempt, err)
		})
	if err != nil {
		_ = p.Close()
	}
	return err
}

// forceLogStore records a version of the log store in scope after a manual
// repair.
func forceLogStore(ctx context.Context, w *wiring, rep *report.Report, version int) error {
	var p logStore = w.sql
	recorded := func(before int, dirty bool) string {
		return fmt.Sprintf("recorded schema version %d (was %d, dirty %v)", version, before, dirty)
	}
	if w.ch != nil {
		p = w.ch
		recorded = func(before int, dirty bool) string {
			return fmt.Sprintf("recorded ClickHouse schema version %d in %s (was %d, dirty %v)", version, w.ch.Target().VersionTable, before, dirty)
		}
	}
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
	rep.Msg = recorded(before, dirty)
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
