package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// kingpinCmd is where a command registers its flags and arguments.
type kingpinCmd = *kingpin.CmdClause

// cli is the kingpin application built from the command table, and what
// it parsed.
type cli struct {
	app *kingpin.Application
	o   opts
	// Global flags: the store settings (batch/config's table), how long
	// to wait for a store, and the output.
	store     *config.Flags
	waitFor   time.Duration
	output    string
	logFormat string
	verbose   bool
	// jobs runs `jobs nomad run` with its parsed flags (set by registerJobs).
	jobs func(ctx context.Context, inv *invocation) int
	// stdout is where --version prints; versionPrinted says it did.
	stdout         io.Writer
	versionPrinted bool
}

// errVersionPrinted ends parsing once --version has printed.
var errVersionPrinted = errors.New("version printed")

func newCLI() *cli {
	c := &cli{app: kingpin.New("outpost", "Migrates Outpost's storage (Redis and PostgreSQL). Every command prints one report (JSON, the last line of stdout, unless -o text) and exits with a documented code.")}
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
	a.UsageTemplate(usageTemplate)
	a.UsageFuncs(usageFuncs())
	c.store = config.RegisterFlags(a)
	f := a.Flag("wait-for", "Retry an unreachable store this long before giving up with exit 69; e.g. 30s, 2m, or a number of seconds.").Default("0s").PlaceHolder("DURATION")
	f.SetValue(durationValue{&c.waitFor, "wait-for"})
	a.Flag("output", "Report format: json, text, or auto (json unless stdout is a terminal).").Short('o').Default("auto").EnumVar(&c.output, "auto", "json", "text")
	a.Flag("log-format", "Logs and progress on stderr: text (logfmt; a progress bar on a terminal) or json (one event per line, schema `progress`).").Default("text").EnumVar(&c.logFormat, "text", "json")
	a.Flag("verbose", "Debug logs.").Short('v').BoolVar(&c.verbose)
	parents := map[string]*kingpin.CmdClause{}
	for _, g := range groups {
		parent, name := splitPath(g.path)
		if parent == "" {
			parents[g.path] = a.Command(name, g.help)
		} else {
			parents[g.path] = parents[parent].Command(name, g.help)
		}
	}
	for _, cmd := range commands {
		parent, name := splitPath(cmd.path)
		var cl *kingpin.CmdClause
		if parent == "" {
			cl = a.Command(name, cmd.help)
		} else {
			cl = parents[parent].Command(name, cmd.help)
		}
		registerFlags(cl, cmd, &c.o)
		if cmd.args != nil {
			cmd.args(c, cl)
		}
	}
	return c
}

func splitPath(path string) (parent, name string) {
	i := strings.LastIndexByte(path, ' ')
	if i < 0 {
		return "", path
	}
	return path[:i], path[i+1:]
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
	cmd      *command
	rep      *report.Report
	scrub    *report.Scrubber
	events   progress.Sink
	jsonOut  bool
	detailed bool
	// console is the text-mode stderr (progress display), nil in JSON mode.
	console *console
	// plan is apply --plan FILE, read before any store is touched.
	plan *report.SavedPlan
	// raw, when set, is printed instead of the report (schema --raw).
	raw      []byte
	stop     chan struct{}
	stopOnce sync.Once
	cause    error
	causeMu  sync.Mutex
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
	e.stderr = newLogWriter(e.stderr)
	c := newCLI()
	inv := &invocation{e: e, c: c, scrub: scrub, stop: make(chan struct{}), events: progress.Nop}
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
		// kingpin would print the usage and exit 0; no command is a usage
		// error with a report, like any other (the usage goes to stderr).
		c.app.Writer(stderr)
		c.app.Usage(nil)
		return inv.usageError("", report.E(report.CodeUsage, "no command given (see --help)"))
	}
	path, err := c.app.Parse(reorderMigrateFlags(e.args))
	if terminated || c.versionPrinted {
		return report.ExitOK
	}
	if len(e.args) == 0 || err == nil && lookupCommand(path) == nil {
		c.app.Writer(stderr)
		c.app.Usage(nil)
		return inv.usageError(path, report.E(report.CodeUsage, "no command given (see --help)"))
	}
	if err != nil {
		return inv.usageError(selectedPath(c.app, e.args), report.E(report.CodeUsage, "%s (see --help)", explainParseError(c.app, e.args, err)))
	}
	switch c.output {
	case "json":
		inv.jsonOut = true
	case "text":
		inv.jsonOut = false
	}
	inv.cmd = lookupCommand(path)
	inv.rep = report.New(inv.cmd.kind, inv.cmd.name(), toolInfo())
	if inv.cmd.own != nil {
		return inv.runOwn(ctx)
	}
	inv.events = inv.newEvents(stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inv.watchSignals(ctx, cancel)

	err = inv.execute(ctx)
	if inv.rep.Outcome == "" && err == nil {
		err = report.E(report.CodeInternal, "command %s set no outcome", path)
	}
	inv.rep.Finish(err, inv.detailed)
	suggestNext(inv.rep, &inv.c.o)
	if inv.raw != nil && err == nil {
		return inv.printRaw()
	}
	return inv.print(inv.rep)
}

// usageError prints the report of a command line that could not be used.
func (inv *invocation) usageError(path string, err error) int {
	kind, name := report.KindError, "outpost"
	if c := lookupCommand(path); c != nil {
		kind, name = c.kind, c.name()
	}
	rep := report.New(kind, name, toolInfo())
	rep.Finish(err, false)
	return inv.print(rep)
}

// runOwn runs a command that prints its own report, cancelling its context
// on SIGINT/SIGTERM with a cause that carries the exit code.
func (inv *invocation) runOwn(ctx context.Context) int {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case s := <-inv.e.signals:
			cancel(signalCauseErr(s))
		case <-ctx.Done():
		}
	}()
	return inv.cmd.own(ctx, inv)
}

// execute runs the selected command: refuses what needs a confirmation it
// cannot get before any store is touched, wires the stores, asks, runs.
func (inv *invocation) execute(ctx context.Context) error {
	if panicHook != nil {
		panicHook()
	}
	cmd, o := inv.cmd, &inv.c.o
	inv.detailed = o.detailed
	if cmd.scope == scopeNone {
		return cmd.run(ctx, inv, nil)
	}
	if err := o.checkTuning(); err != nil {
		return err
	}
	// Refuse before touching a store: without --yes and a terminal nothing
	// may change.
	if cmd.mutates && !o.yes && !inv.e.stdinTTY {
		return inv.confirm("")
	}
	var err error
	if inv.plan, err = inv.savedPlan(); err != nil {
		return err
	}
	sc, sqlRequired, err := cmd.storeScope(o)
	if err != nil {
		return err
	}
	w, err := inv.wire(ctx, sc, sqlRequired, nil)
	if err != nil {
		return err
	}
	defer w.close()
	defer inv.addAdvisory(ctx, w)
	if cmd.mutates && !o.yes && cmd.confirm != nil {
		question, err := cmd.confirm(ctx, inv, w)
		if err != nil {
			return err
		}
		if question != "" {
			if err := inv.confirm(question); err != nil {
				return err
			}
		}
	}
	return cmd.run(ctx, inv, w)
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
	inv.endProgress(rep.Outcome, rep.ExitCode)
	var err error
	if inv.jsonOut {
		err = report.WriteJSON(inv.e.stdout, rep, inv.scrub)
	} else {
		err = report.WriteTextWidth(inv.scrub.Writer(inv.e.stdout), rep, inv.scrub, inv.textWidth())
	}
	if err != nil {
		fmt.Fprintf(inv.scrub.Writer(inv.e.stderr), "cannot write the report: %v\n", err)
		rep.OutputLost(err)
	}
	if p := inv.e.terminationLog; p != "" {
		_ = os.WriteFile(p, inv.scrub.Bytes([]byte(batch.Describe(rep)+"\n")), 0o644)
	}
	return rep.ExitCode
}

// textWidth is the width text reports wrap at: the terminal's, or none.
func (inv *invocation) textWidth() int {
	if inv.e.stdoutTTY && inv.e.stdoutWidth != nil {
		return inv.e.stdoutWidth() - 1
	}
	return 0
}

// printRaw prints a command's bare output instead of its report.
func (inv *invocation) printRaw() int {
	inv.endProgress(inv.rep.Outcome, report.ExitOK)
	if _, err := inv.e.stdout.Write(inv.raw); err != nil {
		fmt.Fprintf(inv.scrub.Writer(inv.e.stderr), "cannot write: %v\n", err)
		return report.ExitCode(report.CodeUnknown)
	}
	return report.ExitOK
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

// panicHook lets a test prove that a panic becomes exit 70 with a report.
var panicHook func()

// reorderMigrateFlags moves a migrate subcommand given after flags
// ("migrate --yes --lock-timeout 5s apply", the order a job template that
// appends the command may produce) to right after "migrate", where kingpin
// expects it; the flags then belong to that subcommand. Anything else is
// returned as it is.
func reorderMigrateFlags(args []string) []string {
	if len(args) < 3 || args[0] != "migrate" || !strings.HasPrefix(args[1], "-") {
		return args
	}
	for i := 2; i < len(args); i++ {
		if args[i] == "--" {
			break
		}
		if lookupCommand("migrate "+args[i]) != nil {
			out := append([]string{"migrate", args[i]}, args[1:i]...)
			return append(out, args[i+1:]...)
		}
	}
	return args
}
