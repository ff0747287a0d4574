package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/sqlphase"
	"github.com/outpost-migrate/outpost/batch/stores"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/report"
	"github.com/outpost-migrate/outpost/schemas"
)

func schemaNames() []string { return schemas.Names() }

// scrubSecretsFromArgsAndEnv registers every password the invocation may
// have been given, before anything is parsed, so that even an error about
// a malformed setting cannot print one.
func scrubSecretsFromArgsAndEnv(s *report.Scrubber, e env) {
	add := func(v string) {
		s.Add(v)
		if u, err := url.Parse(v); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				s.Add(p)
			}
		}
	}
	for _, name := range append(config.SecretEnvs(), "NOMAD_TOKEN") {
		if v, ok := e.lookupEnv(name); ok {
			add(v)
		}
	}
	for i, a := range e.args {
		for _, f := range config.SecretFlags() {
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				add(v)
			} else if a == f && i+1 < len(e.args) {
				add(e.args[i+1])
			}
		}
	}
}

// loadConfig merges flags, environment and file.
func (inv *invocation) loadConfig() (*config.Config, error) {
	flags := inv.c.store.Settings()
	for k, v := range inv.storeOverride {
		flags[k] = v
	}
	envPath, _ := inv.e.lookupEnv("CONFIG")
	// OUTPOST_TEST_CONFIG_ROOT moves the absolute search paths (/config/…)
	// for tests; it is not documented for operators.
	root, ok := inv.e.lookupEnv("OUTPOST_TEST_CONFIG_ROOT")
	if !ok {
		root = "/"
	}
	path, err := config.Locate(*inv.c.store.ConfigFile, envPath, inv.e.searchConfig, root)
	if err != nil {
		return nil, err
	}
	if path != "" {
		// Passwords in the file are secrets too, even if the file is invalid.
		if s, _, err := config.ReadFile(path); err == nil {
			for _, v := range config.Secrets(s) {
				inv.scrub.Add(v)
				scrubURL(inv.scrub, v)
			}
		}
	}
	cfg, err := config.Load(flags, config.FromEnv(inv.e.lookupEnv), path)
	if err != nil {
		return nil, err
	}
	for _, v := range cfg.Secrets() {
		inv.scrub.Add(v)
		scrubURL(inv.scrub, v)
	}
	if path != "" {
		progress.Infof(inv.events, "config file: %s", path)
	}
	for _, w := range cfg.Warnings {
		progress.Warnf(inv.events, "%s", w)
	}
	if len(cfg.Ignored) > 0 {
		inv.events.Emit(progress.Event{Level: "debug", Event: progress.Log, Msg: fmt.Sprintf("%s: not read by the migration tool (Outpost's other settings): %s", path, strings.Join(cfg.Ignored, ", "))})
	}
	return cfg, nil
}

func scrubURL(s *report.Scrubber, v string) {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			s.Add(p)
		}
	}
}

func (inv *invocation) warn(format string, args ...any) {
	inv.events.Emit(progressWarn(fmt.Sprintf(format, args...)))
}

// scope resolves --sql-only/--redis-only: the stores the command asks for,
// and whether it needs the SQL store (then a missing log store is an error,
// not a skipped phase).
func (inv *invocation) scope(cmd string) (config.Scope, bool, error) {
	switch cmd {
	case "migrate unlock":
		return config.Scope{Redis: true}, false, nil
	case "migrate force":
		return config.Scope{SQL: true}, true, nil
	}
	sqlOnly, redisOnly := inv.c.sqlOnly != nil && *inv.c.sqlOnly, inv.c.redisOnly != nil && *inv.c.redisOnly
	if sqlOnly && redisOnly {
		return config.Scope{}, false, report.E(report.CodeUsage, "--sql-only and --redis-only exclude each other")
	}
	return config.Scope{SQL: !redisOnly, Redis: !sqlOnly}, sqlOnly, nil
}

func targets(cfg *config.Config, s config.Scope, sql *report.SQLTarget) *report.Targets {
	t := &report.Targets{Scope: s.Names(), DeploymentID: cfg.DeploymentID, SQL: sql, ConfigFile: cfg.File}
	if s.Redis {
		mode := "standalone"
		if cfg.Redis.Cluster {
			mode = "cluster"
		}
		t.Redis = &report.RedisTarget{Addr: cfg.Redis.Addr(), Mode: mode, Database: cfg.Redis.Database, TLS: cfg.Redis.TLS, Username: cfg.Redis.Username, Prefix: cfg.Prefix()}
	}
	if s.SQL && cfg.PostgresURL != "" {
		if u, err := url.Parse(cfg.PostgresURL); err == nil {
			pt := &report.PostgresTarget{Host: u.Hostname(), Port: u.Port(), Database: strings.TrimPrefix(u.Path, "/"), SSLMode: u.Query().Get("sslmode")}
			if u.User != nil {
				pt.User = u.User.Username()
			}
			t.Postgres = pt
		}
	}
	return t
}

// wiring is what a store command needs: the runner and the connections to
// close.
type wiring struct {
	runner *batch.Runner
	redis  redis.UniversalClient
	sql    batch.Phase
	cfg    *config.Config
}

func (w *wiring) close() {
	for _, p := range w.runner.Phases {
		_ = p.Close()
	}
}

// wire opens the stores in scope and builds the runner: cmd hands the
// migrations to the engine, which never imports them.
func (inv *invocation) wire(ctx context.Context, cmd string) (*wiring, error) {
	cfg, err := inv.loadConfig()
	if err != nil {
		return nil, err
	}
	want, sqlRequired, err := inv.scope(cmd)
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
	w := &wiring{runner: &batch.Runner{Events: inv.events, RunID: inv.rep.RunID}, cfg: cfg}
	if sc.SQL {
		var lockWait time.Duration
		if inv.c.lockTimeout != nil {
			lockWait = *inv.c.lockTimeout
		}
		p, err := openSQL(ctx, cfg, *inv.c.waitFor, lockWait, inv.c.showSQL != nil && *inv.c.showSQL, inv.events)
		if err != nil {
			return nil, err
		}
		w.sql = p
		w.runner.Phases = append(w.runner.Phases, p)
	}
	if sc.Redis {
		client, err := stores.OpenRedis(ctx, cfg.Redis, *inv.c.waitFor, inv.events)
		if err != nil {
			w.close()
			return nil, err
		}
		w.redis = client
		prefix := cfg.Prefix()
		lockKey := lock.Key(prefix)
		w.runner.Phases = append(w.runner.Phases, redisphase.New(client, prefix, lockKey, redismigrations.New(client, prefix), redisphase.Options{NoCheckpoints: *inv.c.noCheckpoints, ScanCount: *inv.c.scanCount, Parallel: *inv.c.parallel, Window: *inv.c.window, Examples: inv.examples()}, client.Close))
		locker := &redisLocker{client: client, key: lockKey, runID: inv.rep.RunID, events: inv.events}
		if inv.c.lockTTL != nil {
			locker.ttl = *inv.c.lockTTL
		}
		w.runner.Locker = locker
	}
	return w, nil
}

func (inv *invocation) options() batch.Options {
	o := batch.Options{Stop: inv.stop, StopCause: inv.stopCause}
	if inv.c.repair != nil {
		o.Repair = *inv.c.repair
	}
	if inv.c.target != nil {
		o.Target = *inv.c.target
	}
	if inv.c.lockTimeout != nil {
		o.LockWait = *inv.c.lockTimeout
	}
	if inv.c.maxRuntime != nil {
		o.MaxRuntime = *inv.c.maxRuntime
	}
	if inv.c.sample != nil {
		o.Sample = *inv.c.sample
	}
	if inv.c.statusWait != nil {
		o.StatusWait = *inv.c.statusWait
	}
	return o
}

// panicHook lets a test prove that a panic becomes exit 70 with a report.
var panicHook func()

func (inv *invocation) dispatch(ctx context.Context, cmd string) error {
	if panicHook != nil {
		panicHook()
	}
	switch cmd {
	case "version":
		inv.rep.Outcome = report.OutcomePrinted
		inv.rep.Msg = "outpost " + version
		return nil
	case "migrate schema":
		return inv.schema()
	case "demo":
		return inv.demo(ctx)
	case "dev seed":
		return inv.seed(ctx)
	}
	if inv.c.detailed != nil {
		inv.detailed = *inv.c.detailed
	}
	if err := scan.CheckTuning(*inv.c.scanCount, *inv.c.parallel, *inv.c.window); err != nil {
		return err
	}
	if n := inv.examples(); n < 0 || n > 100 {
		return report.E(report.CodeUsage, "--show-examples must be 0..100")
	}
	if inv.c.sample != nil && *inv.c.sample < 0 {
		return report.E(report.CodeUsage, "--sample must be 0 (full pass) or more")
	}
	if inv.c.lockTTL != nil && *inv.c.lockTTL != 0 && *inv.c.lockTTL < minLockTTL {
		return report.E(report.CodeUsage, "--lock-ttl must be at least %s", minLockTTL)
	}
	// Refuse before touching a store: without --yes and a terminal nothing
	// may change.
	switch cmd {
	case "migrate apply", "migrate unlock", "migrate cleanup", "migrate force":
		if !*inv.c.yes && !inv.e.stdinTTY {
			return inv.confirm("")
		}
	}
	o := inv.options()
	if cmd == "migrate apply" {
		var err error
		if o.Plan, err = inv.savedPlan(); err != nil {
			return err
		}
	}
	w, err := inv.wire(ctx, cmd)
	if err != nil {
		return err
	}
	defer w.close()
	r := w.runner
	defer inv.addAdvisory(ctx, w, cmd)
	switch cmd {
	case "migrate list":
		return r.List(ctx, inv.rep)
	case "migrate plan":
		if err := r.Plan(ctx, inv.rep); err != nil {
			return err
		}
		return inv.savePlan()
	case "migrate status":
		return r.Status(ctx, inv.rep, o)
	case "migrate verify":
		return r.Verify(ctx, inv.rep, o)
	case "migrate apply":
		if !*inv.c.yes {
			if err := r.Plan(ctx, inv.rep); err != nil {
				return err
			}
			if inv.rep.Outcome == report.OutcomeUpToDate {
				inv.rep.Migrations = nil
				return r.Apply(ctx, inv.rep, o)
			}
			if err := inv.confirm(fmt.Sprintf("Apply %d pending migrations to %s?", inv.rep.Summary["pending"]+inv.rep.Summary["partial"], describeTargets(inv.rep.Targets))); err != nil {
				return err
			}
			inv.rep.Migrations, inv.rep.Summary, inv.rep.Outcome, inv.rep.Msg, inv.rep.Changed = nil, nil, "", "", false
		}
		return r.Apply(ctx, inv.rep, o)
	case "migrate cleanup":
		if err := inv.confirm("Delete the legacy keys whose copies verify?"); err != nil {
			return err
		}
		return r.Cleanup(ctx, inv.rep, o)
	case "migrate unlock":
		if err := inv.confirm("Remove the migration lock? Make sure no migration is running."); err != nil {
			return err
		}
		return r.Unlock(ctx, inv.rep)
	case "migrate force":
		if err := inv.confirm(fmt.Sprintf("Record PostgreSQL schema version %d as clean?", *inv.c.forceVersion)); err != nil {
			return err
		}
		return forceSQL(ctx, w, inv.rep, *inv.c.forceVersion)
	}
	return report.E(report.CodeInternal, "unknown command %s", cmd)
}

func describeTargets(t *report.Targets) string {
	var parts []string
	if t.Postgres != nil {
		parts = append(parts, "postgres "+net.JoinHostPort(t.Postgres.Host, t.Postgres.Port)+"/"+t.Postgres.Database)
	}
	if t.Redis != nil {
		parts = append(parts, "redis "+t.Redis.Addr)
	}
	return strings.Join(parts, " and ")
}

func (inv *invocation) schema() error {
	name := *inv.c.schemaName
	names := schemas.Names()
	if name != "" {
		if _, ok := schemas.Get(name); !ok {
			return report.E(report.CodeUsage, "no schema called %q; there are: %s", name, strings.Join(names, ", "))
		}
		names = []string{name}
	}
	if *inv.c.schemaRaw {
		if name == "" {
			return report.E(report.CodeUsage, "--raw needs a schema NAME")
		}
		b, _ := schemas.Get(name)
		_, err := inv.e.stdout.Write(b)
		if err != nil {
			return err
		}
		// The bare schema is the output; no report follows it.
		os.Exit(0)
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
func (inv *invocation) addAdvisory(ctx context.Context, w *wiring, cmd string) {
	p, ok := w.sql.(*sqlphase.Phase)
	if !ok {
		return
	}
	var a *report.AdvisoryLock
	switch cmd {
	case "migrate apply", "migrate force":
		a = p.Advisory()
	case "migrate status", "migrate plan":
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
