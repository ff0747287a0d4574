package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
	"github.com/redis/go-redis/v9"
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
	d.Flag("yes", "Use a real store given by --redis-host that is not empty, or one given by --postgres-url, without asking.").Short('y').BoolVar(&c.o.yes)
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
	f.flush = s.Flag("flush", "FLUSHDB the selected database first (asks on a terminal, needs --yes otherwise); without it a non-empty database is refused.").Bool()
	s.Flag("yes", "With --flush: do not ask.").Short('y').BoolVar(&c.o.yes)
	f.pgVersion = s.Flag("pg-version", "Also write PostgreSQL log data at this schema version (4), creating the schema up to it.").Default("0").Int()
	f.pgEvents = s.Flag("pg-events", "Events to write.").Default("10000").Int()
	f.pgDeliveries = s.Flag("pg-deliveries-per-event", "Deliveries per event.").Default("2").Int()
	f.pgOrphans = s.Flag("pg-orphans", "Share of deliveries whose event is missing.").Default("0.01").Float64()
}

// demo runs plan, apply, verify and status on a seeded store through the
// same runner as the migrate commands.
//
// A real store is used only when a flag names it: never from the
// environment or a config file, so that `outpost demo` on a machine with
// production settings loaded cannot migrate production (issue #22).
func (inv *invocation) demo(ctx context.Context) error {
	inv.demoIgnoreEnv()
	redisGiven := inv.c.store.IsSet(config.KeyRedisHost)
	over := config.Settings{}
	if !redisGiven {
		// About ten keys a tenant once applied: legacy records and
		// their twins.
		mr, err := startDemoRedis(10**inv.c.o.demo.tenants + 1024)
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
	if err := inv.demoConfirm(w, redisGiven, n); err != nil {
		return err
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
		if err := inv.seedFlush(ctx, w, n); err != nil {
			return err
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

// demoIgnoreEnv makes the demo read store settings from its flags only:
// the environment, CONFIG, --config and ./.env are ignored, with a warning
// naming what was set.
func (inv *invocation) demoIgnoreEnv() {
	var ignored []string
	for _, k := range []string{"REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DATABASE", "REDIS_CLUSTER_ENABLED", "POSTGRES_URL", "CONFIG", "DEPLOYMENT_ID"} {
		if _, ok := inv.e.lookupEnv(k); ok {
			ignored = append(ignored, k)
		}
	}
	if *inv.c.store.ConfigFile != "" {
		ignored = append(ignored, "--config")
	}
	if len(ignored) > 0 {
		progress.Warnf(inv.events, "demo ignores %s: it uses a real store only when --redis-host or --postgres-url names it", strings.Join(ignored, ", "))
	}
	inv.e.lookupEnv = func(string) (string, bool) { return "", false }
	inv.e.searchConfig = false
	*inv.c.store.ConfigFile = ""
}

// demoConfirm prints the demo's target and, for a real Redis that holds
// keys or a real PostgreSQL (the demo migrates them), asks on a terminal
// or needs --yes.
func (inv *invocation) demoConfirm(w *wiring, redisGiven bool, keys int64) error {
	target := "the in-process Redis"
	if redisGiven {
		target = fmt.Sprintf("the Redis at %s (database %d, %d keys)", w.cfg.Redis.Addr(), w.cfg.Redis.Database, keys)
	}
	pg := ""
	if t := inv.rep.Targets; t != nil && t.Postgres != nil {
		pg = fmt.Sprintf("the PostgreSQL at %s:%s/%s", t.Postgres.Host, t.Postgres.Port, t.Postgres.Database)
		target += " and " + pg
	}
	progress.Warnf(inv.events, "demo target: %s", target)
	if (!redisGiven || keys == 0) && pg == "" {
		return nil
	}
	return inv.confirm(fmt.Sprintf("demo will migrate %s. Go on?", target))
}

// seedFlush prints the target, refuses a non-empty database without
// --flush, and with it asks (or needs --yes) before FLUSHDB of the
// selected database only: other databases of the server are not touched
// (it was FLUSHALL, issue #22).
func (inv *invocation) seedFlush(ctx context.Context, w *wiring, keys int64) error {
	db := w.cfg.Redis.Database
	progress.Warnf(inv.events, "dev seed target: the Redis at %s, database %d (%d keys)", w.cfg.Redis.Addr(), db, keys)
	if keys > 0 && !*inv.c.o.seed.flush {
		return report.E(report.CodeDataRefused, "the Redis database %d at %s is not empty (%d keys); pass --flush to empty it first", db, w.cfg.Redis.Addr(), keys)
	}
	if !*inv.c.o.seed.flush || keys == 0 {
		return nil
	}
	if err := inv.confirm(fmt.Sprintf("delete the %d keys of database %d at %s (FLUSHDB)?", keys, db, w.cfg.Redis.Addr())); err != nil {
		return err
	}
	flush := func(ctx context.Context, c *redis.Client) error { return c.FlushDB(ctx).Err() }
	var err error
	if cc, ok := w.redis.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, flush)
	} else {
		err = w.redis.FlushDB(ctx).Err()
	}
	return rediserr.Classify(err, "FLUSHDB")
}
