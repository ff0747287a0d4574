package main

import (
	"context"
	"strings"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/report"
)

// storeScope is which stores a command works on.
type storeScope int

const (
	// scopeNone: no store (version, schema) or the command wires its own
	// (demo, dev seed, jobs).
	scopeNone storeScope = iota
	// scopeRedis: the migration lock lives in Redis (unlock).
	scopeRedis
	// scopeSQL: golang-migrate's version table (force).
	scopeSQL
	// scopeFlags: both stores unless --sql-only or --redis-only.
	scopeFlags
)

// command is one row of the command table: everything the invocation needs
// to know about a command, in one place.
type command struct {
	path  string // kingpin's full command, "migrate apply"
	kind  string // the report it prints
	help  string
	scope storeScope
	// mutates: it changes a store, so it asks on a terminal and refuses
	// without --yes when there is none, before touching anything.
	mutates bool
	// flags are the flags its help shows (see migrateFlags).
	flags []string
	// args registers its positional arguments.
	args func(c *cli, cl kingpinCmd)
	// confirm shows on stderr what the command is about to do and returns
	// the question to ask; "" means there is nothing to ask (nothing to
	// do, no lock to remove): the command runs and says so.
	confirm func(ctx context.Context, inv *invocation, w *wiring) (string, error)
	// run does the work, filling inv.rep; w is nil when scope is scopeNone.
	run func(ctx context.Context, inv *invocation, w *wiring) error
	// own replaces run for commands that print their own report and
	// return the exit code (jobs nomad run relays a task's report).
	own func(ctx context.Context, inv *invocation) int
	// advisory: how the report shows golang-migrate's advisory lock.
	advisory advisoryView
	// examples are shown by --help.
	examples []string
}

// advisoryView is how a report shows the PostgreSQL advisory lock.
type advisoryView int

const (
	advisoryNone advisoryView = iota
	advisoryLeft              // as this run left it (apply, force)
	advisoryLive              // as it is now (plan, status)
)

func (c *command) migrate() bool { return strings.HasPrefix(c.path, "migrate ") }

// name is the report's command field: "apply" for "migrate apply".
func (c *command) name() string { return strings.TrimPrefix(c.path, "migrate ") }

// commands is the command table.
var commands = []*command{
	{path: "migrate list", kind: report.KindList, scope: scopeFlags,
		help:  "List every migration and its recorded state.",
		flags: []string{"sql-only", "redis-only"},
		run:   func(ctx context.Context, inv *invocation, w *wiring) error { return w.runner.List(ctx, inv.rep) }},
	{path: "migrate plan", kind: report.KindPlan, scope: scopeFlags, advisory: advisoryLive,
		help:  "Show what apply would do, and how much; changes nothing.",
		flags: []string{"sql-only", "redis-only", "detailed-exitcode", "out", "show-sql", "show-examples"},
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			if err := w.runner.Plan(ctx, inv.rep); err != nil {
				return err
			}
			if err := inv.newerData(); err != nil {
				return err
			}
			return inv.savePlan()
		},
		examples: []string{"outpost migrate plan", "outpost migrate plan --redis-only --detailed-exitcode   # exit 2 when something is pending",
			"outpost migrate plan --show-examples 2 --show-sql", "outpost migrate plan --out plan.json   # then: outpost migrate apply --plan plan.json"}},
	{path: "migrate apply", kind: report.KindApply, scope: scopeFlags, mutates: true, advisory: advisoryLeft,
		help:    "Apply pending migrations in order, SQL first, then Redis, under one lock.",
		flags:   append([]string{"sql-only", "redis-only", "yes", "plan", "target", "repair", "lock-timeout", "max-runtime", "skip-memory-check"}, tuningFlags...),
		confirm: confirmApply,
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			return w.runner.Apply(ctx, inv.rep, inv.options())
		},
		examples: []string{"outpost migrate apply                      # shows the plan, then asks",
			"outpost migrate apply --yes --lock-timeout 10m -o json   # in a job",
			"outpost migrate apply --yes --target sql/000004"}},
	{path: "migrate verify", kind: report.KindVerify, scope: scopeFlags,
		help:  "Check that applied migrations hold in the data (full pass; --sample N for a spot check).",
		flags: append([]string{"sql-only", "redis-only", "detailed-exitcode", "sample", "max-runtime"}, tuningFlags...),
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			return w.runner.Verify(ctx, inv.rep, inv.options())
		},
		examples: []string{"outpost migrate verify", "outpost migrate verify --redis-only --sample 1000"}},
	{path: "migrate status", kind: report.KindStatus, scope: scopeFlags, advisory: advisoryLive,
		help:  "Show versions, pending migrations, the lock and any unfinished run.",
		flags: []string{"sql-only", "redis-only", "detailed-exitcode", "wait"},
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			if err := w.runner.Status(ctx, inv.rep, inv.options()); err != nil {
				return err
			}
			return inv.newerData()
		},
		examples: []string{"outpost migrate status", "outpost migrate status --wait 10m   # an app container waiting for the migration job"}},
	{path: "migrate unlock", kind: report.KindUnlock, scope: scopeRedis, mutates: true,
		help:     "Remove the migration lock, whoever holds it (after a crash).",
		flags:    []string{"yes"},
		confirm:  confirmUnlock,
		run:      func(ctx context.Context, inv *invocation, w *wiring) error { return w.runner.Unlock(ctx, inv.rep) },
		examples: []string{"outpost migrate status   # who holds the lock, since when", "outpost migrate unlock"}},
	{path: "migrate cleanup", kind: report.KindCleanup, scope: scopeFlags, mutates: true,
		help:    "Remove the legacy keys that an applied migration preserved, where the copies verify.",
		flags:   append([]string{"sql-only", "redis-only", "yes", "lock-timeout", "max-runtime"}, tuningFlags...),
		confirm: confirmCleanup,
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			return w.runner.Cleanup(ctx, inv.rep, inv.options())
		},
		examples: []string{"outpost migrate verify && outpost migrate cleanup"}},
	{path: "migrate force", kind: report.KindForce, scope: scopeSQL, mutates: true, advisory: advisoryLeft,
		help:  "Record a PostgreSQL schema version after a manual repair (clears dirty).",
		flags: []string{"yes", "lock-timeout"},
		args: func(c *cli, cl kingpinCmd) {
			cl.Arg("version", "The version to record.").Required().IntVar(&c.o.forceVersion)
		},
		confirm: confirmForce,
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			return forceLogStore(ctx, w, inv.rep, inv.c.o.forceVersion)
		},
		examples: []string{"outpost migrate force 5"}},
	{path: "migrate schema", kind: report.KindSchema, scope: scopeNone,
		help:  "Print the published JSON Schemas of the reports and progress events.",
		flags: []string{"raw"},
		args: func(c *cli, cl kingpinCmd) {
			cl.Arg("name", "One schema: "+strings.Join(schemaNames(), ", ")+".").StringVar(&c.o.schemaName)
		},
		run:      func(ctx context.Context, inv *invocation, w *wiring) error { return inv.schema() },
		examples: []string{"outpost migrate schema progress --raw > progress.json"}},
	{path: "version", kind: report.KindVersion, scope: scopeNone, help: "Print the version.",
		run: func(ctx context.Context, inv *invocation, w *wiring) error {
			inv.rep.Outcome = report.OutcomePrinted
			inv.rep.Msg = "outpost " + version
			return nil
		}},
	{path: "demo", kind: report.KindDemo, scope: scopeNone,
		help:     "See it work: seed a realistic legacy Outpost keyspace into an in-process Redis (or --redis-host), then run plan, apply, verify and status, printing each report.",
		args:     registerDemoFlags,
		run:      func(ctx context.Context, inv *invocation, w *wiring) error { return inv.demo(ctx) },
		examples: []string{"outpost demo", "outpost demo --tenants 20000", "outpost demo --redis-host localhost   # an empty real Redis"}},
	{path: "dev seed", kind: report.KindSeed, scope: scopeNone,
		help: "Write a realistic, deterministic Outpost dataset into the configured Redis (and, with --pg-version, PostgreSQL log data).",
		args: registerSeedFlags,
		run:  func(ctx context.Context, inv *invocation, w *wiring) error { return inv.seed(ctx) }},
	{path: "jobs nomad run", kind: report.KindJobRun, scope: scopeNone,
		help:     "Register (or dispatch) a migration job, wait until it is dead, print the task's report and exit with the task's exit code.",
		args:     registerJobs,
		own:      func(ctx context.Context, inv *invocation) int { return inv.c.jobs(ctx, inv) },
		examples: []string{"outpost jobs nomad run --job migrate-apply --image hookdeck/outpost:v0.17.0", "outpost jobs nomad run --job migrate-param --meta command=verify"}},
}

// groups are the parent commands, with their help.
var groups = []struct{ path, help string }{
	{"migrate", "Plan, apply, verify and inspect migrations."},
	{"dev", "Tools for developers and benchmarks."},
	{"jobs", "Run the migration through an orchestrator and relay its report."},
	{"jobs nomad", "Nomad batch jobs (recipes in jobs/nomadspecs)."},
}

func lookupCommand(path string) *command {
	for _, c := range commands {
		if c.path == path {
			return c
		}
	}
	return nil
}

// storeScope resolves the stores a command asks for, and whether it needs
// the SQL store (then a missing log store is an error, not a skipped
// phase: --sql-only, force).
func (c *command) storeScope(o *opts) (sc config.Scope, sqlRequired bool, err error) {
	switch c.scope {
	case scopeRedis:
		return config.Scope{Redis: true}, false, nil
	case scopeSQL:
		return config.Scope{SQL: true}, true, nil
	case scopeNone:
		return config.Scope{}, false, nil
	}
	if o.sqlOnly && o.redisOnly {
		return config.Scope{}, false, report.E(report.CodeUsage, "--sql-only and --redis-only exclude each other")
	}
	return config.Scope{SQL: !o.redisOnly, Redis: !o.sqlOnly}, o.sqlOnly, nil
}
