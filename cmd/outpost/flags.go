package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// opts holds every parsed flag value. Commands bind their flags to these
// fields; kingpin applies defaults only for the command that was selected,
// so sharing a field between commands is safe.
type opts struct {
	sqlOnly, redisOnly bool
	yes                bool
	target             string
	repair             bool
	lockTimeout        time.Duration
	lockTTL            time.Duration
	maxRuntime         time.Duration
	statusWait         time.Duration
	scanCount          int64
	parallel           int
	window             int
	noCheckpoints      bool
	skipMemoryCheck    bool
	detailed           bool
	planOut            string
	showSQL            bool
	showExamples       int
	planFile           string
	sample             int
	schemaName         string
	schemaRaw          bool
	forceVersion       int
	seed               seedFlags
	demo               demoFlags
}

// flagDef is one flag of the migrate commands. A shared flag is accepted by
// every migrate command, because one job specification (a Nomad
// parameterized job, an Ansible loop) passes the same flags whatever the
// command; it is shown only in the help of the commands that list it. A
// flag that is not shared exists only on the commands that list it.
type flagDef struct {
	name   string
	short  rune
	help   string
	shared bool
	hidden bool // never shown: for tests and benchmarks
	bind   func(f *kingpin.FlagClause, o *opts)
}

// migrateFlags is every flag of the migrate commands; a command lists the
// names it uses in command.flags. Adding a flag to one command is one row
// here and its name in that command's row.
var migrateFlags = []flagDef{
	{name: "sql-only", shared: true, help: "Only the PostgreSQL store.", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.sqlOnly) }},
	{name: "redis-only", shared: true, help: "Only the Redis store.", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.redisOnly) }},
	{name: "yes", short: 'y', shared: true, help: "Do not ask for confirmation (required when there is no terminal to ask on).", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.yes) }},
	{name: "lock-timeout", shared: true, help: "Wait this long for a busy migration lock (the Redis lease; golang-migrate's PostgreSQL advisory lock) before exit 75; e.g. 30s, 10m, or a number of seconds.",
		bind: func(f *kingpin.FlagClause, o *opts) {
			f.Default(lock.DefaultWait.String()).PlaceHolder("DURATION").SetValue(durationValue{&o.lockTimeout, f.Model().Name})
		}},
	// The lease's TTL, for tests that must see a lease renewed (or expire)
	// within seconds; in production the one hour Outpost uses is the bound
	// on how long a crashed run blocks everyone.
	{name: "lock-ttl", shared: true, hidden: true, help: "TTL of the migration lock's lease, renewed every third of it.",
		bind: func(f *kingpin.FlagClause, o *opts) {
			f.Default(lock.DefaultTTL.String()).SetValue(durationValue{&o.lockTTL, f.Model().Name})
		}},
	{name: "max-runtime", shared: true, help: "Stop at a safe point after this long (exit 75), never before every node did one chunk; apply and cleanup save progress and a rerun resumes, verify starts over. 0: no limit.",
		bind: func(f *kingpin.FlagClause, o *opts) {
			f.Default("0s").PlaceHolder("DURATION").SetValue(durationValue{&o.maxRuntime, f.Model().Name})
		}},
	{name: "scan-count", shared: true, help: "Redis: SCAN COUNT hint, about the keys per chunk and per checkpoint.", bind: func(f *kingpin.FlagClause, o *opts) {
		f.Default(strconv.Itoa(scan.DefaultCount)).Int64Var(&o.scanCount)
	}},
	{name: "parallel", shared: true, help: "Redis: parts of a chunk processed at once.", bind: func(f *kingpin.FlagClause, o *opts) {
		f.Default(strconv.Itoa(scan.DefaultParallel)).IntVar(&o.parallel)
	}},
	{name: "window", shared: true, help: "Redis: chunks per node worked on at once (a crash repeats at most this many chunks per node).", bind: func(f *kingpin.FlagClause, o *opts) {
		f.Default(strconv.Itoa(scan.DefaultWindow)).IntVar(&o.window)
	}},
	{name: "no-checkpoints", shared: true, hidden: true, help: "Benchmarks only: run without saving checkpoints (a crash then starts over).", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.noCheckpoints) }},
	{name: "detailed-exitcode", help: "Exit 2 when migrations are pending.", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.detailed) }},
	{name: "repair", help: "Redo the Redis records of applied migrations that verify finds missing or wrong (twins copied again from their legacy records, compare-and-set), then verify them.", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.repair) }},
	{name: "target", help: "Stop after this migration (an id from `migrate list`: sql/000004, redis/001_hash_tags, 001, 4).", bind: func(f *kingpin.FlagClause, o *opts) { f.PlaceHolder("ID").StringVar(&o.target) }},
	{name: "sample", help: "Spot-check about N records instead of all.", bind: func(f *kingpin.FlagClause, o *opts) { f.Default("0").PlaceHolder("N").IntVar(&o.sample) }},
	{name: "wait", help: "Poll until the stores are up to date, up to this long (exit 75 after).", bind: func(f *kingpin.FlagClause, o *opts) {
		f.Default("0s").PlaceHolder("DURATION").SetValue(durationValue{&o.statusWait, f.Model().Name})
	}},
	{name: "out", help: "Save the plan to FILE (a SavedPlan document) for `apply --plan FILE`.", bind: func(f *kingpin.FlagClause, o *opts) { f.PlaceHolder("FILE").StringVar(&o.planOut) }},
	{name: "show-examples", help: "Show N real records of each kind before and after each pending Redis migration (secrets masked).", bind: func(f *kingpin.FlagClause, o *opts) { f.PlaceHolder("N").IntVar(&o.showExamples) }},
	{name: "show-sql", help: "List the SQL statements of each pending SQL migration, with the table locks they take.", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.showSQL) }},
	{name: "plan", help: "Apply exactly the migrations of a plan saved by `plan --out FILE`; refuse (exit 65, PLAN_MISMATCH) when the stores no longer match it.", bind: func(f *kingpin.FlagClause, o *opts) { f.PlaceHolder("FILE").StringVar(&o.planFile) }},
	{name: "skip-memory-check", help: "Apply even when Redis looks short of memory for 001's copies (the eviction watch stays on).", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.skipMemoryCheck) }},
	{name: "raw", help: "Print the bare schema document instead of a report (needs NAME).", bind: func(f *kingpin.FlagClause, o *opts) { f.BoolVar(&o.schemaRaw) }},
}

// tuningFlags are the Redis engine's knobs, listed by the commands that scan.
var tuningFlags = []string{"scan-count", "parallel", "window"}

// registerFlags adds to cl the flags a command lists, and the shared flags
// it does not list as hidden ones.
func registerFlags(cl *kingpin.CmdClause, c *command, o *opts) {
	listed := map[string]bool{}
	for _, n := range c.flags {
		listed[n] = true
	}
	for _, d := range migrateFlags {
		if !listed[d.name] && !(d.shared && c.migrate()) {
			continue
		}
		f := cl.Flag(d.name, d.help)
		if d.short != 0 {
			f.Short(d.short)
		}
		if d.hidden || !listed[d.name] {
			f.Hidden()
		}
		d.bind(f, o)
	}
}

// checkTuning refuses tuning values out of range before any store is
// touched.
func (o *opts) checkTuning() error {
	if err := scan.CheckTuning(o.scanCount, o.parallel, o.window); err != nil {
		return err
	}
	if o.showExamples < 0 || o.showExamples > 100 {
		return report.E(report.CodeUsage, "--show-examples must be 0..100")
	}
	if o.sample < 0 {
		return report.E(report.CodeUsage, "--sample must be 0 (full pass) or more")
	}
	if o.lockTTL != 0 && o.lockTTL < minLockTTL {
		return report.E(report.CodeUsage, "--lock-ttl must be at least %s", minLockTTL)
	}
	return nil
}

// durationValue is a flag duration typed the way operators type them: a Go
// duration (30s, 10m, 1h30m) or a bare number of seconds (10, 2.5).
type durationValue struct {
	d    *time.Duration
	name string
}

func (v durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("--%s: %w", v.name, err)
	}
	*v.d = d
	return nil
}

func (v durationValue) String() string { return v.d.String() }

// parseDuration reads a duration; a bare number is seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q is negative; use a duration such as 30s, 10m or 1h30m", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration; use e.g. 30s, 10m, 1h30m, or a number of seconds", s)
	}
	return v, nil
}

// durationFlag binds f to a duration typed as operators type them.
func durationFlag(f *kingpin.FlagClause) *time.Duration {
	d := new(time.Duration)
	f.SetValue(durationValue{d, f.Model().Name})
	return d
}
