package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// cli holds the parsed command line.
type cli struct {
	app *kingpin.Application

	// Global flags.
	store     *config.Flags
	output    *string
	logFormat *string
	verbose   *bool
	waitFor   *time.Duration

	// Per-command flags.
	sqlOnly, redisOnly *bool
	noCheckpoints      *bool
	scanCount          *int64
	parallel           *int
	window             *int
	yes                *bool
	target             *string
	repair             *bool
	lockTimeout        *time.Duration
	lockTTL            *time.Duration
	maxRuntime         *time.Duration
	detailed           *bool
	planOut            *string
	showSQL            *bool
	showExamples       *int
	planFile           *string
	sample             *int
	statusWait         *time.Duration
	schemaName         *string
	schemaRaw          *bool
	forceVersion       *int
	seedOpts           seedFlags
	demoOpts           demoFlags
	actions            map[string]func(ctx context.Context, stdout, stderr io.Writer) int
	// stdout is where --version prints; versionPrinted says it did.
	stdout         io.Writer
	versionPrinted bool
}

// errVersionPrinted ends parsing once --version has printed.
var errVersionPrinted = errors.New("version printed")

// commandKinds maps kingpin's full command to the report it prints.
var commandKinds = map[string]string{
	"migrate list":    report.KindList,
	"migrate plan":    report.KindPlan,
	"migrate apply":   report.KindApply,
	"migrate verify":  report.KindVerify,
	"migrate status":  report.KindStatus,
	"migrate unlock":  report.KindUnlock,
	"migrate cleanup": report.KindCleanup,
	"migrate force":   report.KindForce,
	"migrate schema":  report.KindSchema,
	"version":         report.KindVersion,
	"demo":            report.KindDemo,
	"dev seed":        report.KindSeed,
}

func newCLI() *cli {
	c := &cli{app: kingpin.New("outpost", "Migrates Outpost's storage (Redis and PostgreSQL). Every command prints one JSON report (the last line of stdout) and exits with a documented code.")}
	a := c.app
	// --version prints the version alone on one line (kingpin's own would
	// go on to print the usage, the parse having no command).
	var showVersion bool
	a.Flag("version", "Print the version and exit.").PreAction(func(*kingpin.ParseContext) error {
		if !showVersion {
			return nil // --no-version
		}
		fmt.Fprintln(c.stdout, version)
		c.versionPrinted = true
		return errVersionPrinted
	}).BoolVar(&showVersion)
	a.HelpFlag.Short('h')
	a.Terminate(nil)
	c.store = config.RegisterFlags(a)
	c.output = a.Flag("output", "Report format: json, text, or auto (json unless stdout is a terminal).").Short('o').Default("auto").Enum("auto", "json", "text")
	c.logFormat = a.Flag("log-format", "Logs and progress on stderr: text or json (one event per line, schema `progress`).").Default("text").Enum("text", "json")
	c.verbose = a.Flag("verbose", "Debug logs.").Short('v').Bool()
	c.waitFor = a.Flag("wait-for", "Retry an unreachable store this long before giving up with exit 69.").Default("0s").Duration()

	m := a.Command("migrate", "Plan, apply, verify and inspect migrations.")
	// These flags belong to every migrate command, so that one job
	// specification (a Nomad parameterized job, an Ansible loop) can pass
	// the same flags whatever the command; a command ignores what does not
	// concern it.
	m.Flag("sql-only", "Only the PostgreSQL store (list, plan, apply, verify, status, cleanup).").BoolVar(flagVar(&c.sqlOnly))
	m.Flag("redis-only", "Only the Redis store (list, plan, apply, verify, status, cleanup).").BoolVar(flagVar(&c.redisOnly))
	m.Flag("yes", "Do not ask for confirmation: required by apply, cleanup, unlock and force when there is no terminal.").Short('y').BoolVar(flagVar(&c.yes))
	m.Flag("lock-timeout", "apply, cleanup, force: wait this long for a busy migration lock (the Redis lease; for the SQL phase, golang-migrate's PostgreSQL advisory lock) before giving up with exit 75.").Default(lock.DefaultWait.String()).DurationVar(flagVar(&c.lockTimeout))
	// Hidden: the lease's TTL, for tests that must see a lease renewed (or
	// expire) within seconds; in production the one hour Outpost uses is
	// the bound on how long a crashed run blocks everyone.
	m.Flag("lock-ttl", "apply, cleanup: TTL of the migration lock's lease, renewed every third of it.").Hidden().Default(lock.DefaultTTL.String()).DurationVar(flagVar(&c.lockTTL))
	m.Flag("max-runtime", "apply, cleanup, verify: stop at a safe point after this long, progress saved (exit 75; a rerun resumes). 0: no limit.").Default("0s").DurationVar(flagVar(&c.maxRuntime))
	m.Flag("scan-count", "Redis: SCAN COUNT hint, about the keys per chunk and per checkpoint.").Default(strconv.Itoa(scan.DefaultCount)).Int64Var(flagVar(&c.scanCount))
	m.Flag("parallel", "Redis: parts of a chunk processed at once.").Default(strconv.Itoa(scan.DefaultParallel)).IntVar(flagVar(&c.parallel))
	m.Flag("window", "Redis: chunks per node worked on at once (a crash repeats at most this many chunks per node).").Default(strconv.Itoa(scan.DefaultWindow)).IntVar(flagVar(&c.window))
	m.Flag("no-checkpoints", "Benchmarks only: run without saving checkpoints (a crash then starts over).").Hidden().BoolVar(flagVar(&c.noCheckpoints))
	m.Command("list", "List every migration and its state.")
	plan := m.Command("plan", "Show what apply would do, and how much; changes nothing.")
	plan.Flag("detailed-exitcode", "Exit 2 when migrations are pending.").BoolVar(flagVar(&c.detailed))
	plan.Flag("out", "Save the plan to FILE (a SavedPlan document) for `apply --plan FILE`.").PlaceHolder("FILE").StringVar(flagVar(&c.planOut))
	plan.Flag("show-examples", "Show N real records of each kind before and after each pending Redis migration (secrets masked).").PlaceHolder("N").IntVar(flagVar(&c.showExamples))
	plan.Flag("show-sql", "List the SQL statements of each pending SQL migration, with the table locks they take.").BoolVar(flagVar(&c.showSQL))
	apply := m.Command("apply", "Apply pending migrations in order, SQL first, then Redis, under one lock.")
	apply.Flag("plan", "Apply exactly the migrations of a plan saved by `plan --out FILE`; refuse (exit 65, PLAN_MISMATCH) when the stores no longer match it.").PlaceHolder("FILE").StringVar(flagVar(&c.planFile))
	apply.Flag("target", "Stop after this migration (an id from `migrate list`, e.g. sql/000004 or redis/001_hash_tags).").StringVar(flagVar(&c.target))
	apply.Flag("repair", "Redo the Redis records of applied migrations that verify finds missing or wrong (twins copied again from their legacy records, compare-and-set), then verify them.").BoolVar(flagVar(&c.repair))
	verify := m.Command("verify", "Check that applied migrations hold in the data (full pass; --sample N for a spot check).")
	verify.Flag("detailed-exitcode", "Exit 2 when nothing is applied yet (so nothing was verified).").BoolVar(flagVar(&c.detailed))
	verify.Flag("sample", "Spot-check about N records instead of all.").Default("0").IntVar(flagVar(&c.sample))
	status := m.Command("status", "Show versions, pending migrations, the lock and any unfinished run.")
	status.Flag("detailed-exitcode", "Exit 2 when migrations are pending.").BoolVar(flagVar(&c.detailed))
	status.Flag("wait", "Poll until the stores are up to date, up to this long (exit 75 after).").Default("0s").DurationVar(flagVar(&c.statusWait))
	m.Command("unlock", "Remove the migration lock, whoever holds it (after a crash).")
	m.Command("cleanup", "Remove the legacy keys that an applied migration preserved, where the copies verify.")
	force := m.Command("force", "Record a PostgreSQL schema version after a manual repair (clears dirty).")
	force.Arg("version", "The version to record.").Required().IntVar(flagVar(&c.forceVersion))
	schema := m.Command("schema", "Print the published JSON Schemas of the reports and progress events.")
	schema.Arg("name", "One schema: "+strings.Join(schemaNames(), ", ")+".").StringVar(flagVar(&c.schemaName))
	schema.Flag("raw", "Print the bare schema document instead of a report (needs NAME).").BoolVar(flagVar(&c.schemaRaw))
	a.Command("version", "Print the version.")
	c.registerDemo(a)
	c.actions = registerJobs(a)
	return c
}

// flagVar returns the variable *p points to, allocating it on first use, so
// that several commands' flags can share one field.
func flagVar[T any](p **T) *T {
	if *p == nil {
		*p = new(T)
	}
	return *p
}

func toolInfo() report.Tool {
	t := report.Tool{Name: "outpost", Version: version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				t.Commit = s.Value
			}
		}
	}
	return t
}

// invocation is one run of a command: its report, output settings and
// the tools to build stores with.
type invocation struct {
	e        env
	c        *cli
	rep      *report.Report
	scrub    *report.Scrubber
	events   progress.Sink
	jsonOut  bool
	detailed bool
	stop     chan struct{}
	stopOnce sync.Once
	cause    error
	causeMu  sync.Mutex
	// storeOverride is set over the command line's store settings (the
	// demo's in-process Redis).
	storeOverride config.Settings
}

func (inv *invocation) stopCause() error {
	inv.causeMu.Lock()
	defer inv.causeMu.Unlock()
	return inv.cause
}

// Main runs one invocation and returns its exit code.
func Main(ctx context.Context, e env) (code int) {
	scrub := &report.Scrubber{}
	scrubSecretsFromArgsAndEnv(scrub, e)
	c := newCLI()
	inv := &invocation{e: e, c: c, scrub: scrub, stop: make(chan struct{})}
	inv.jsonOut = wantJSON(e)
	stderr := scrub.Writer(e.stderr)
	c.app.UsageWriter(stderr)
	c.app.ErrorWriter(stderr)
	// kingpin prints --help and --version and then calls Terminate; we
	// record that instead of exiting, and print no report.
	terminated := false
	c.app.Terminate(func(int) { terminated = true })
	c.app.Writer(scrub.Writer(e.stdout))
	c.stdout = scrub.Writer(e.stdout)

	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "internal error: %v\n%s", r, debug.Stack())
			rep := inv.rep
			if rep == nil {
				rep = report.New(report.KindError, "outpost", toolInfo())
			}
			rep.Outcome = ""
			rep.Finish(report.E(report.CodeInternal, "internal error (a bug; please report it): %v", r), false)
			code = inv.print(rep)
		}
	}()

	if len(e.args) == 0 {
		c.app.Writer(stderr)
		c.app.Usage(nil)
		rep := report.New(report.KindError, "outpost", toolInfo())
		rep.Finish(report.E(report.CodeUsage, "no command given (see --help)"), false)
		return inv.print(rep)
	}
	cmd, err := c.app.Parse(e.args)
	if terminated || c.versionPrinted {
		return report.ExitOK
	}
	if err != nil {
		kind, command := report.KindError, "outpost"
		if k, ok := commandKinds[cmd]; ok && cmd != "" {
			kind, command = k, strings.TrimPrefix(cmd, "migrate ")
		}
		rep := report.New(kind, command, toolInfo())
		rep.Finish(report.E(report.CodeUsage, "%v (see --help)", err), false)
		return inv.print(rep)
	}
	if *c.output == "json" {
		inv.jsonOut = true
	} else if *c.output == "text" {
		inv.jsonOut = false
	}
	if cmd == "" {
		rep := report.New(report.KindError, "outpost", toolInfo())
		rep.Finish(report.E(report.CodeUsage, "no command given (see --help)"), false)
		return inv.print(rep)
	}
	if action, ok := c.actions[cmd]; ok {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case s := <-e.signals:
				cancel(signalCauseErr(s))
			case <-ctx.Done():
			}
		}()
		return action(ctx, scrub.Writer(e.stdout), stderr)
	}
	kind := commandKinds[cmd]
	inv.rep = report.New(kind, strings.TrimPrefix(cmd, "migrate "), toolInfo())
	logger := progress.NewLogger(stderr, *c.logFormat == "json", inv.rep.RunID, inv.rep.Command)
	logger.Verbose = *c.verbose
	inv.events = logger
	if *c.logFormat == "text" && e.stderrTTY {
		bar := newBar(stderr)
		logger.Quiet = true
		inv.events = progress.Tee{logger, bar}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inv.watchSignals(ctx, cancel)

	err = inv.dispatch(ctx, cmd)
	if inv.rep.Outcome == "" && err == nil {
		err = report.E(report.CodeInternal, "command %s set no outcome", cmd)
	}
	inv.rep.Finish(err, inv.detailed)
	return inv.print(inv.rep)
}

// watchSignals turns the first SIGINT/SIGTERM into a stop at the next safe
// point and a second one into cancellation.
func (inv *invocation) watchSignals(ctx context.Context, cancel context.CancelFunc) {
	if inv.e.signals == nil {
		return
	}
	count := 0
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-inv.e.signals:
			count++
			if count > 1 {
				progress.Warnf(inv.events, "second signal: cancelling now")
				cancel()
				return
			}
			cause := report.E(report.CodeInterrupted, "interrupted by SIGINT; stopped at a safe point, progress saved, lock released")
			if s == syscall.SIGTERM {
				cause = report.E(report.CodeTerminated, "terminated by SIGTERM; stopped at a safe point, progress saved, lock released")
			}
			progress.Warnf(inv.events, "%s received: stopping at the next safe point (send again to cancel at once)", s)
			inv.causeMu.Lock()
			inv.cause = cause
			inv.causeMu.Unlock()
			inv.stopOnce.Do(func() { close(inv.stop) })
		}
	}
}

func wantJSON(e env) bool {
	// Decided again after parsing; before it (a usage error) look at the
	// arguments by hand so that a bad flag still gets a JSON report.
	for i, a := range e.args {
		switch {
		case a == "--output=json" || a == "-ojson" || (a == "--output" || a == "-o") && i+1 < len(e.args) && e.args[i+1] == "json":
			return true
		case a == "--output=text" || a == "-otext" || (a == "--output" || a == "-o") && i+1 < len(e.args) && e.args[i+1] == "text":
			return false
		}
	}
	return !e.stdoutTTY
}

// print validates and writes the report, writes the termination log, and
// returns the exit code. A report that fails its own schema is a bug: it is
// replaced by an internal-error report (exit 70).
func (inv *invocation) print(rep *report.Report) int {
	if err := report.Validate(rep); err != nil {
		bad := rep
		rep = report.New(bad.Kind, bad.Command, bad.Tool)
		rep.RunID = bad.RunID
		rep.StartedAt = bad.StartedAt
		rep.Finish(report.E(report.CodeInternal, "the report failed its own schema (a bug; please report it): %v", err), false)
	}
	out := inv.scrub.Writer(inv.e.stdout)
	var err error
	if inv.jsonOut {
		err = report.WriteJSON(inv.e.stdout, rep, inv.scrub)
	} else {
		err = report.WriteText(out, rep, inv.scrub)
	}
	if err != nil {
		fmt.Fprintf(inv.scrub.Writer(inv.e.stderr), "cannot write the report: %v\n", err)
	}
	if p := inv.e.terminationLog; p != "" {
		_ = os.WriteFile(p, inv.scrub.Bytes([]byte(batch.Describe(rep)+"\n")), 0o644)
	}
	return rep.ExitCode
}

// confirm asks on the terminal; without one it refuses (exit 64).
func (inv *invocation) confirm(question string) error {
	if *inv.c.yes {
		return nil
	}
	if !inv.e.stdinTTY {
		return report.E(report.CodeConfirmationRequired, "%s needs --yes when there is no terminal to ask on; nothing was changed", inv.rep.Command)
	}
	fmt.Fprintf(inv.e.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(inv.e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return report.Wrap(report.CodeCancelled, err, "no answer")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return report.E(report.CodeCancelled, "cancelled at the prompt; nothing was changed")
}

// causeError is the cancellation cause of an action stopped by a signal:
// it carries the exit code (130 or 143).
type causeError struct {
	code report.Code
	exit int
}

func (c causeError) Error() string { return string(c.code) }
func (c causeError) ExitCode() int { return c.exit }

func signalCauseErr(s os.Signal) error {
	if s == syscall.SIGTERM {
		return &report.Error{Code: report.CodeTerminated, Message: "terminated by SIGTERM", Err: causeError{report.CodeTerminated, report.ExitSIGTERM}}
	}
	return &report.Error{Code: report.CodeInterrupted, Message: "interrupted by SIGINT", Err: causeError{report.CodeInterrupted, report.ExitSIGINT}}
}
