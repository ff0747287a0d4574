package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/batch/stores"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/report"
	"github.com/outpost-migrate/outpost/schemas"
)

func schemaNames() []string { return schemas.Names() }

// wiring is what a store command needs: the runner and the phases.
type wiring struct {
	runner *batch.Runner
	redis  redis.UniversalClient
	sql    *sqlphase.Phase
	// ch is the SQL phase when the log store is ClickHouse (sql is nil).
	ch     *clickhousephase.Phase
	rphase *redisphase.Phase
	cfg    *config.Config
}

func (w *wiring) close() {
	for _, p := range w.runner.Phases {
		_ = p.Close()
	}
}

// wire opens the stores in scope and builds the runner: cmd hands the
// migrations to the engine, which never imports them. The SQL phase runs
// when a log store is configured, and must unless sqlRequired allows it to
// be skipped; over are settings the command sets itself (the demo's
// in-process Redis).
func (inv *invocation) wire(ctx context.Context, want config.Scope, sqlRequired bool, over config.Settings) (*wiring, error) {
	cfg, err := inv.loadConfig(over)
	if err != nil {
		return nil, err
	}
	sc, sqlTarget, err := cfg.Resolve(want, sqlRequired)
	inv.rep.Targets = targets(cfg, sc, sqlTarget)
	if err != nil {
		return nil, err
	}
	switch {
	case sqlTarget == nil:
	case sqlTarget.State == report.SQLNotSupported:
		// A log store the operator expects migrated is not: say it loudly.
		progress.Warnf(inv.events, "%s", sqlTarget.Message)
	case sqlTarget.State == report.SQLNotConfigured:
		progress.Infof(inv.events, "%s", sqlTarget.Message)
	}
	o := &inv.c.o
	w := &wiring{runner: &batch.Runner{Events: inv.events, RunID: inv.rep.RunID}, cfg: cfg}
	if sc.SQL && cfg.LogStore() == report.StoreClickHouse {
		if err := inv.openClickHouseInto(ctx, w, cfg); err != nil {
			return nil, err
		}
	} else if sc.SQL {
		p, err := openSQL(ctx, cfg, inv.c.waitFor, o.lockTimeout, o.showSQL, inv.events)
		if err != nil {
			return nil, err
		}
		w.sql = p
		w.runner.Phases = append(w.runner.Phases, p)
	}
	if sc.Redis {
		client, err := stores.OpenRedis(ctx, cfg.Redis, inv.c.waitFor, inv.events)
		if err != nil {
			w.close()
			return nil, err
		}
		w.redis = client
		fitMemoryLimit(ctx, client)
		if r := inv.rep.Targets.Redis; r != nil {
			r.Warnings = stores.Warnings(client)
		}
		prefix := cfg.Prefix()
		lockKey := lock.Key(prefix)
		w.rphase = redisphase.New(client, prefix, lockKey, redismigrations.New(client, prefix), inv.redisOptions(), client.Close)
		w.runner.Phases = append(w.runner.Phases, w.rphase)
		w.runner.Locker = &redisLocker{client: client, key: lockKey, runID: inv.rep.RunID, events: inv.events, ttl: o.lockTTL}
	}
	return w, nil
}

func (inv *invocation) redisOptions() redisphase.Options {
	o := &inv.c.o
	r := redisphase.Options{NoCheckpoints: o.noCheckpoints, SkipMemoryCheck: o.skipMemoryCheck, ScanCount: o.scanCount, Parallel: o.parallel, Window: o.window, Examples: o.showExamples}
	if !inv.cmd.migrate() {
		// demo and dev seed have no tuning flags: the defaults.
		r = redisphase.Options{}
	}
	return r
}

func (inv *invocation) options() batch.Options {
	o := &inv.c.o
	return batch.Options{Stop: inv.stop, StopCause: inv.stopCause, Target: o.target, Repair: o.repair, LockWait: o.lockTimeout,
		MaxRuntime: o.maxRuntime, Sample: o.sample, StatusWait: o.statusWait, Plan: inv.plan}
}

func (inv *invocation) schema() error {
	name := inv.c.o.schemaName
	names := schemas.Names()
	if name != "" {
		if _, ok := schemas.Get(name); !ok {
			return report.E(report.CodeUsage, "no schema called %q; there are: %s", name, strings.Join(names, ", "))
		}
		names = []string{name}
	}
	if inv.c.o.schemaRaw {
		if name == "" {
			return report.E(report.CodeUsage, "--raw needs a schema NAME")
		}
		// The bare schema is the output; no report follows it.
		inv.raw, _ = schemas.Get(name)
	}
	out := map[string]any{}
	ids := map[string]string{}
	for _, n := range names {
		b, _ := schemas.Get(n)
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return report.Wrap(report.CodeInternal, err, "schema %s", n)
		}
		out[n] = v
		ids[n] = schemas.ID(n)
	}
	inv.rep.Extra = map[string]any{"schemas": out, "ids": ids}
	inv.rep.Outcome = report.OutcomePrinted
	inv.rep.Msg = fmt.Sprintf("%d schemas", len(names))
	return nil
}

// redisLocker adapts batch/lock to batch.Locker.
type redisLocker struct {
	client redis.UniversalClient
	key    string
	runID  string
	events interface{ Emit(e progressEvent) }
	// ttl is the lease's TTL (hidden flag --lock-ttl); 0: lock.DefaultTTL.
	ttl time.Duration
}

// minLockTTL keeps --lock-ttl where renewal (every third of it) still has
// time for a round trip to Redis.
const minLockTTL = 100 * time.Millisecond

func (l *redisLocker) Acquire(ctx context.Context, command string, wait time.Duration) (batch.Lease, error) {
	lease, err := lock.Acquire(ctx, l.client, lock.Options{
		Key:    l.key,
		Holder: report.Holder{RunID: l.runID, Command: command, ToolVersion: version},
		TTL:    l.ttl,
		Wait:   wait,
		Events: l.events,
	})
	if err != nil {
		return nil, err
	}
	return lease, nil
}

func (l *redisLocker) Inspect(ctx context.Context) (*report.Lock, error) {
	return lock.Inspect(ctx, l.client, l.key)
}

func (l *redisLocker) ForceUnlock(ctx context.Context) (*report.Lock, error) {
	return lock.ForceUnlock(ctx, l.client, l.key)
}

// addAdvisory reports golang-migrate's PostgreSQL advisory lock beside the
// Redis lease: as the run left it (apply, force) or as it is (status).
func (inv *invocation) addAdvisory(ctx context.Context, w *wiring) {
	p := w.sql
	if p == nil {
		return
	}
	var a *report.AdvisoryLock
	switch inv.cmd.advisory {
	case advisoryLeft:
		a = p.Advisory()
	case advisoryLive:
		a, _ = p.LockStatus(ctx)
	}
	if a == nil {
		return
	}
	if inv.rep.Lock == nil {
		state := a.State
		if state == "acquired" {
			state = "released"
		}
		inv.rep.Lock = &report.Lock{Key: fmt.Sprintf("pg_advisory_lock(%d)", a.ID), State: state}
	}
	inv.rep.Lock.Advisory = a
}

// newerData fails plan and status under --detailed-exitcode when a store
// is newer than this tool (65, as apply and verify), so that a pipeline
// gating on the exit code does not read it as up to date.
func (inv *invocation) newerData() error {
	if !inv.c.o.detailed {
		return nil
	}
	return batch.NewerData(inv.rep)
}
