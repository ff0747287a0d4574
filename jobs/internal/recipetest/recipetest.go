// Package recipetest is test support for the recipes under jobs/: it builds
// the real outpost binary, runs a recipe's command line through it, and
// computes the longest one attempt of a command line can take, which every
// orchestrator's deadline must exceed.
package recipetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// Binary builds the real outpost binary once per test process, from the
// module root (found with `go env GOMOD`), into a temporary directory of
// its own (packages test in parallel; a shared path would let one run a
// half-written binary of another). Call Cleanup from TestMain.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, err = os.MkdirTemp("", "outpost-recipes-"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "outpost")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/outpost")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/outpost: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Cleanup removes the binary Binary built.
func Cleanup() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// ModuleRoot is the directory of this module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module")
	}
	return filepath.Dir(gomod), nil
}

// ClosedPort returns a loopback port nothing listens on.
func ClosedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// Flag returns the value of --name in argv ("--name v" or "--name=v").
func Flag(argv []string, name string) (string, bool) {
	for i, a := range argv {
		if a == "--"+name && i+1 < len(argv) {
			return argv[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// WithFlag returns argv with the value of --name replaced by value.
func WithFlag(argv []string, name, value string) []string {
	out := slices.Clone(argv)
	for i, a := range out {
		if a == "--"+name && i+1 < len(out) {
			out[i+1] = value
		}
		if strings.HasPrefix(a, "--"+name+"=") {
			out[i] = "--" + name + "=" + value
		}
	}
	return out
}

// The tool's default --lock-timeout (cmd/outpost), used when a command line
// does not set it.
const defaultLockTimeout = 30 * time.Second

// Budget is the longest one attempt of a command line can take before the
// tool exits by itself, and what it is made of.
type Budget struct {
	WaitFor, LockTimeout, MaxRuntime, Grace time.Duration
}

// Total is 2×wait-for (each store is waited for in turn) + 2×lock-timeout
// (the Redis lease, then golang-migrate's PostgreSQL advisory lock) +
// max-runtime + the grace the orchestrator gives a stopping process (the
// tool stops at the next safe point and releases its lock).
func (b Budget) Total() time.Duration {
	return 2*b.WaitFor + 2*b.LockTimeout + b.MaxRuntime + b.Grace
}

func (b Budget) String() string {
	return fmt.Sprintf("2×%s (wait-for) + 2×%s (lock-timeout) + %s (max-runtime) + %s (grace) = %s",
		b.WaitFor, b.LockTimeout, b.MaxRuntime, b.Grace, b.Total())
}

// BudgetOf reads --wait-for, --lock-timeout and --max-runtime from argv. A
// recipe must set --wait-for and --max-runtime (a value above 0): without
// them one attempt has no bound that a deadline could be fitted to.
func BudgetOf(argv []string, grace time.Duration) (Budget, error) {
	b := Budget{LockTimeout: defaultLockTimeout, Grace: grace}
	for _, f := range []struct {
		name     string
		dst      *time.Duration
		required bool
	}{{"wait-for", &b.WaitFor, true}, {"lock-timeout", &b.LockTimeout, false}, {"max-runtime", &b.MaxRuntime, true}} {
		v, ok := Flag(argv, f.name)
		if !ok {
			if f.required {
				return b, fmt.Errorf("%q lacks --%s", argv, f.name)
			}
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return b, fmt.Errorf("--%s %q: %v", f.name, v, err)
		}
		if f.required && d <= 0 {
			return b, fmt.Errorf("--%s %s: want a bound above 0", f.name, v)
		}
		*f.dst = d
	}
	return b, nil
}

// Result is one run of the binary.
type Result struct {
	Code           int
	Report         map[string]any
	Stdout, Stderr string
}

// Run runs the binary with argv and exactly env (plus PATH and HOME).
func Run(t testing.TB, env map[string]string, argv ...string) Result {
	t.Helper()
	cmd := exec.Command(Binary(t), argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("outpost %s: %v", strings.Join(argv, " "), err)
	}
	r := Result{Code: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String()}
	lines := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n")
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &r.Report)
	return r
}

// CheckParses runs a recipe's command line (the image's entrypoint,
// `outpost`, already stripped: argv starts with "migrate") through the real
// binary against stores that do not answer, with --wait-for set to 0s so it
// gives up at once. Every flag must parse, so the binary reaches the stores
// and exits 69 (STORE_UNREACHABLE) with a report of the recipe's command; a
// flag the binary does not know is 64 (USAGE) instead.
func CheckParses(t testing.TB, name string, argv []string) {
	t.Helper()
	if len(argv) < 2 || argv[0] != "migrate" {
		t.Errorf("%s: %q does not run `outpost migrate COMMAND`", name, argv)
		return
	}
	if _, ok := Flag(argv, "wait-for"); !ok {
		t.Errorf("%s: %q lacks --wait-for", name, argv)
		return
	}
	env := map[string]string{
		"REDIS_HOST":   "127.0.0.1",
		"REDIS_PORT":   strconv.Itoa(ClosedPort(t)),
		"POSTGRES_URL": fmt.Sprintf("postgres://outpost@127.0.0.1:%d/outpost?sslmode=disable", ClosedPort(t)),
	}
	r := Run(t, env, WithFlag(argv, "wait-for", "0s")...)
	errObj, _ := r.Report["error"].(map[string]any)
	if r.Code != report.ExitUnavailable || r.Report["command"] != argv[1] || errObj["code"] != string(report.CodeUnreachable) {
		t.Errorf("%s: outpost %s: exit %d, command %v, error %v; want 69 STORE_UNREACHABLE from %s (64 is a flag the binary does not take)\nstdout: %s\nstderr: %s",
			name, strings.Join(argv, " "), r.Code, r.Report["command"], errObj, argv[1], r.Stdout, r.Stderr)
	}
}
