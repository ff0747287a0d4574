// Command outpost migrates the storage of Outpost (Redis and PostgreSQL):
// `outpost migrate plan|apply|verify|status|unlock|cleanup|list|force|schema`.
// It is a non-interactive batch executor: every command prints one JSON
// report (the last line of stdout) and exits with a code from the table in
// package report.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	redis "github.com/redis/go-redis/v9"
	"golang.org/x/term"

	"github.com/outpost-migrate/outpost/batch/scan"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3" (which
// needs a constant initializer). An unstamped build takes the module
// version from the Go build info, in init.
var version = "dev"

func init() { version = moduleVersion(version, debug.ReadBuildInfo) }

// moduleVersion is stamped unless it is "dev": then the main module's
// version from the build info (`go install …@v1.2.3` records v1.2.3; a
// build in a git checkout records a pseudo-version of its commit), or "dev"
// when the build info has none ("(devel)").
func moduleVersion(stamped string, info func() (*debug.BuildInfo, bool)) string {
	if stamped != "dev" {
		return stamped
	}
	if bi, ok := info(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return stamped
}

// env is everything an invocation reads from its process, so that tests
// can run commands in-process.
type env struct {
	args      []string
	lookupEnv func(string) (string, bool)
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	stdinTTY  bool
	stdoutTTY bool
	stderrTTY bool
	// stderrWidth and stdoutWidth are the terminal's width in columns
	// (nil: 80 for stderr, no wrapping for stdout).
	stderrWidth, stdoutWidth func() int
	// signals delivers SIGINT/SIGTERM; nil in tests that do not send any.
	signals <-chan os.Signal
	// terminationLog is where a one-line summary goes for Kubernetes
	// (kubectl describe shows it); empty: none.
	terminationLog string
	// searchConfig: look for a config file in Outpost's places when none
	// is named (off in in-process tests, whose working directory is the
	// package's).
	searchConfig bool
}

// memoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT says
// otherwise: it makes the garbage collector work harder before the heap
// grows past it, so that a run's peak memory stays flat whatever the
// keyspace (the heap itself holds a few chunks; see the benchmark).
// perMaster is what each further master adds: every master has its own
// chunks in flight, and on a 3-master cluster 40 MiB left the collector
// running without pause (half the tool's CPU; 20 s for an apply of 480k
// keys that takes 8 s with room).
const (
	memoryLimit = 40 << 20
	perMaster   = 12 << 20
)

func main() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(memoryLimit)
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// A reader that goes away (`| head`) must not kill the run with
	// SIGPIPE mid-apply: writes then fail with EPIPE, which logging
	// ignores and the report turns into exit 74 (see print).
	signal.Ignore(syscall.SIGPIPE)
	e := env{
		args:         os.Args[1:],
		lookupEnv:    os.LookupEnv,
		stdin:        os.Stdin,
		stdout:       os.Stdout,
		stderr:       os.Stderr,
		stdinTTY:     term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTTY:    term.IsTerminal(int(os.Stdout.Fd())),
		stderrTTY:    term.IsTerminal(int(os.Stderr.Fd())),
		signals:      sig,
		stderrWidth:  func() int { return width(os.Stderr) },
		stdoutWidth:  func() int { return width(os.Stdout) },
		searchConfig: true,
	}
	e.terminationLog = terminationLogPath(os.LookupEnv)
	// OUTPOST_CPUPROFILE=FILE writes a CPU profile, for performance work
	// (go tool pprof FILE).
	if path, ok := os.LookupEnv("OUTPOST_CPUPROFILE"); ok {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			code := Main(context.Background(), e)
			pprof.StopCPUProfile()
			_ = f.Close()
			os.Exit(code)
		}
	}
	os.Exit(Main(context.Background(), e))
}

// terminationLogPath is /dev/termination-log when it exists (Kubernetes
// mounts it), or OUTPOST_TERMINATION_LOG when set.
func terminationLogPath(lookup func(string) (string, bool)) string {
	if p, ok := lookup("OUTPOST_TERMINATION_LOG"); ok {
		return p
	}
	if _, err := os.Stat("/dev/termination-log"); err == nil {
		return "/dev/termination-log"
	}
	return ""
}

// width is f's terminal width, 80 when it cannot be told.
func width(f *os.File) int {
	if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
		return w
	}
	return 80
}

// fitMemoryLimit raises the soft memory limit (as main set it) by
// perMaster for each master of c past the first.
func fitMemoryLimit(ctx context.Context, c redis.UniversalClient) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok || debug.SetMemoryLimit(-1) != memoryLimit {
		return
	}
	nodes, err := scan.Nodes(ctx, c)
	if err != nil || len(nodes) < 2 {
		return
	}
	debug.SetMemoryLimit(memoryLimit + int64(len(nodes)-1)*perMaster)
}
