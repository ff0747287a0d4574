package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
)

type demoFlags struct {
	tenants *int
	seed    *int64
}

type seedFlags struct {
	tenants, destinations, unrelated *int
	seed                             *int64
	layout                           *int
	softDeleted, colonIDs, missing   *float64
	flush                            *bool
	pgVersion, pgEvents              *int
	pgDeliveries                     *int
	pgOrphans                        *float64
}

// registerDemoFlags adds the demo's flags.
func registerDemoFlags(c *cli, d kingpinCmd) {
	c.o.demo.tenants = d.Flag("tenants", "Tenants to seed.").Default("2000").Int()
	c.o.demo.seed = d.Flag("seed", "Data generator seed.").Default("1").Int64()
}

// registerSeedFlags adds the flags of `dev seed`.
func registerSeedFlags(c *cli, s kingpinCmd) {
	f := &c.o.seed
	f.tenants = s.Flag("tenants", "Tenants.").Default("1000").Int()
	f.destinations = s.Flag("destinations", "Average destinations per tenant.").Default("3").Int()
	f.unrelated = s.Flag("unrelated", "Unrelated Outpost keys.").Default("100").Int()
	f.seed = s.Flag("seed", "Generator seed: same seed, same data.").Default("1").Int64()
	f.layout = s.Flag("layout", "Redis layout: 0 (legacy), 1 (hash-tagged), 2 (ms timestamps), 3 (current).").Default("0").Int()
	f.softDeleted = s.Flag("soft-deleted", "Share of soft-deleted tenants and destinations.").Default("0.05").Float64()
	f.colonIDs = s.Flag("colon-ids", "Share of ids containing ':'.").Default("0.05").Float64()
	f.missing = s.Flag("missing-from-summary", "Share of live destinations missing from the summary.").Default("0.03").Float64()
	f.flush = s.Flag("flush", "FLUSHALL first (refused unless the keyspace is empty or this is set).").Bool()
	f.pgVersion = s.Flag("pg-version", "Also write PostgreSQL log data at this schema version (4), creating the schema up to it.").Default("0").Int()
	f.pgEvents = s.Flag("pg-events", "Events to write.").Default("10000").Int()
	f.pgDeliveries = s.Flag("pg-deliveries-per-event", "Deliveries per event.").Default("2").Int()
	f.pgOrphans = s.Flag("pg-orphans", "Share of deliveries whose event is missing.").Default("0.01").Float64()
}

// demo runs plan, apply, verify and status on a seeded store through the
// same runner as the migrate commands.
func (inv *invocation) demo(ctx context.Context) error {
	over := config.Settings{}
	if !inv.given(config.KeyRedisHost) {
		mr, err := startDemoRedis()
		if err != nil {
			return report.Wrap(report.CodeInternal, err, "start the in-process demo Redis")
		}
		defer mr.close()
		over[config.KeyRedisHost], over[config.KeyRedisPort], over[config.KeyRedisDB] = mr.host(), mr.port(), "0"
		progress.Infof(inv.events, "using an in-process Redis (miniredis) at %s; pass --redis-host for a real one", mr.addr())
	}
	// The scope rules of apply: the SQL phase runs when a log store is
	// configured.
	w, err := inv.wire(ctx, config.Scope{Redis: true, SQL: true}, false, over)
	if err != nil {
		return err
	}
	defer w.close()
	n, err := w.redis.DBSize(ctx).Result()
	if err != nil {
		return report.Wrap(report.CodeUnreachable, err, "DBSIZE")
	}
	opts := seed.DefaultOptions()
	opts.Tenants = *inv.c.o.demo.tenants
	opts.Seed = *inv.c.o.demo.seed
	var stats seed.Stats
	if n == 0 {
		if stats, err = seed.Write(ctx, w.redis, opts); err != nil {
			return err
		}
		progress.Infof(inv.events, "seeded %d legacy keys (%d tenants)", stats.Keys, opts.Tenants)
	} else {
		progress.Warnf(inv.events, "the Redis at %s is not empty (%d keys): not seeding, migrating what is there", w.cfg.Redis.Addr(), n)
	}
	o := inv.options()
	steps := []struct {
		kind, command string
		fn            func(*report.Report) error
	}{
		{report.KindPlan, "plan", func(r *report.Report) error { return w.runner.Plan(ctx, r) }},
		{report.KindApply, "apply", func(r *report.Report) error { return w.runner.Apply(ctx, r, o) }},
		{report.KindVerify, "verify", func(r *report.Report) error { return w.runner.Verify(ctx, r, o) }},
		{report.KindStatus, "status", func(r *report.Report) error { return w.runner.Status(ctx, r, batch.Options{}) }},
	}
	var out []any
	for _, s := range steps {
		r := report.New(s.kind, s.command, toolInfo())
		r.RunID = inv.rep.RunID
		r.Targets = inv.rep.Targets
		err := s.fn(r)
		r.Finish(err, false)
		if verr := report.Validate(r); verr != nil {
			return report.Wrap(report.CodeInternal, verr, "demo step %s", s.command)
		}
		if !inv.jsonOut {
			_ = report.WriteTextWidth(inv.scrub.Writer(inv.e.stdout), r, inv.scrub, inv.textWidth())
		}
		b, _ := report.Marshal(r, inv.scrub)
		var v any
		_ = json.Unmarshal(b, &v)
		out = append(out, v)
		if err != nil {
			inv.rep.Extra = map[string]any{"steps": out}
			return fmt.Errorf("demo step %s: %w", s.command, err)
		}
	}
	inv.rep.Extra = map[string]any{"steps": out, "seeded_keys": stats.Keys, "tenants": opts.Tenants}
	inv.rep.Outcome = report.OutcomeCompleted
	inv.rep.Changed = true
	inv.rep.Msg = "demo: seeded " + strconv.Itoa(stats.Keys) + " legacy keys, then planned, applied, verified and checked status"
	return nil
}

// given says whether a store setting was given as a flag or in the
// environment (the demo uses an in-process Redis unless one was named).
func (inv *invocation) given(key string) bool {
	if inv.c.store.IsSet(key) {
		return true
	}
	v, ok := inv.e.lookupEnv(config.EnvNames[key])
	return ok && v != ""
}

// seed writes generated data into the configured stores.
func (inv *invocation) seed(ctx context.Context) error {
	f := inv.c.o.seed
	w, err := inv.wire(ctx, config.Scope{Redis: true, SQL: *f.pgVersion > 0}, *f.pgVersion > 0, nil)
	if err != nil {
		return err
	}
	defer w.close()
	extra := map[string]any{}
	if w.redis != nil {
		n, err := w.redis.DBSize(ctx).Result()
		if err != nil {
			return report.Wrap(report.CodeUnreachable, err, "DBSIZE")
		}
		if n > 0 && !*f.flush {
			return report.E(report.CodeDataRefused, "the Redis keyspace is not empty (%d keys); pass --flush to empty it first", n)
		}
		if *f.flush {
			if err := w.redis.FlushAll(ctx).Err(); err != nil {
				return report.Wrap(report.CodeUnreachable, err, "FLUSHALL")
			}
		}
		opts := seed.Options{Tenants: *f.tenants, DestinationsPerTenant: *f.destinations, Seed: *f.seed, Layout: *f.layout,
			DeploymentID: w.cfg.DeploymentID, SoftDeletedRatio: *f.softDeleted, ColonIDRatio: *f.colonIDs,
			MissingFromSummaryRatio: *f.missing, DisabledRatio: 0.1, BinaryCredentials: true, UnrelatedKeys: *f.unrelated}
		stats, err := seed.Write(ctx, w.redis, opts)
		if err != nil {
			return err
		}
		extra["redis"] = stats
	}
	if *f.pgVersion > 0 {
		st, err := seedPostgres(ctx, w, *f.pgVersion, seed.PGOptions{Events: *f.pgEvents, DeliveriesPerEvent: *f.pgDeliveries, OrphanRatio: *f.pgOrphans, Seed: *f.seed})
		if err != nil {
			return err
		}
		extra["postgres"] = st
	}
	b, _ := json.Marshal(extra)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	inv.rep.Extra = v
	inv.rep.Outcome = report.OutcomeSeeded
	inv.rep.Changed = true
	inv.rep.Msg = "seeded"
	return nil
}
