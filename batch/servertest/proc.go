// Package servertest starts real Redis and PostgreSQL servers for tests.
//
// Every server runs from a binary installed on the machine (redis-server and
// redis-cli from Debian's redis-server/redis-tools packages, initdb and
// postgres from the postgresql package). A test that cannot find a binary
// fails with a message naming the package to install (run
// .ci/install-deps.sh); it never skips.
//
// Servers listen on free ports of 127.0.0.1, keep their files and logs in a
// temporary directory, run in their own process group and receive SIGKILL
// when the test binary dies (Linux parent-death signal), so no server
// outlives the test binary even if it panics or is killed by a timeout.
//
// Redis servers belong to one test and are stopped by t.Cleanup. The
// PostgreSQL server is shared by the whole test binary: Postgres gives every
// test a fresh database on it. Packages that use Postgres should stop the
// shared server from TestMain:
//
//	func TestMain(m *testing.M) { servertest.Main(m) }
//
// Without it the server is still killed when the binary exits, and its
// directory is removed by the next test binary that starts one.
package servertest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// installHint tells what provides each binary on Debian.
var installHint = map[string]string{
	"redis-server": "apt-get install redis-server (or run .ci/install-deps.sh)",
	"redis-cli":    "apt-get install redis-tools (or run .ci/install-deps.sh)",
	"initdb":       "apt-get install postgresql (or run .ci/install-deps.sh)",
	"postgres":     "apt-get install postgresql (or run .ci/install-deps.sh)",
	"pg_ctl":       "apt-get install postgresql (or run .ci/install-deps.sh)",
	"pg_dump":      "apt-get install postgresql-client (or run .ci/install-deps.sh)",
	"pg_restore":   "apt-get install postgresql-client (or run .ci/install-deps.sh)",
	"psql":         "apt-get install postgresql-client (or run .ci/install-deps.sh)",
	"pg_isready":   "apt-get install postgresql-client (or run .ci/install-deps.sh)",
}

// pgBinDirs lists /usr/lib/postgresql/*/bin, newest major version first.
func pgBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	return dirs
}

// FindBinary looks for a server or tool binary (redis-server, redis-cli,
// initdb, postgres, pg_dump, ...) in PATH, then in /usr/local/bin, /usr/bin,
// /usr/sbin and /usr/lib/postgresql/*/bin, newest version first (Debian does
// not put initdb or postgres in PATH). The error names the package to
// install.
func FindBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs := []string{"/usr/local/bin", "/usr/bin", "/usr/sbin", "/usr/local/sbin"}
	dirs = append(dirs, pgBinDirs()...)
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	hint := installHint[name]
	if hint == "" {
		hint = "install it"
	}
	return "", fmt.Errorf("servertest: %s not found in PATH nor in /usr/lib/postgresql/*/bin: %s", name, hint)
}

// ---- ports ----

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a loopback TCP port that was free a moment ago and that
// this process has not handed out before. Callers retry on a clash.
func freePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("servertest: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("servertest: no free port found")
}

// ---- processes ----

// spawner starts every child from one OS thread that never exits: Linux
// sends the parent-death signal when the thread that forked the child
// exits, not the process, so forking from an arbitrary goroutine's thread
// could kill servers early.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}

// process is a running server.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

// startProcess runs bin with args, its stdout and stderr appended to
// logPath, in its own process group, killed if the test binary dies.
// cred, when non-nil, runs it as another user.
func startProcess(bin string, args []string, dir, logPath string, env []string, cred *syscall.Credential) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if cred != nil {
		_ = os.Chown(logPath, int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr(cred)
	if err := startCmd(cmd); err != nil {
		return nil, fmt.Errorf("servertest: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends sig to the process, waits up to grace for it to exit, then
// kills its whole process group. It always kills the group at the end so
// no child survives.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanEnv returns the environment without locale and libpq settings that
// could change how servers and tools behave.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || strings.HasPrefix(k, "PG") || k == "REDISCLI_AUTH" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	return append(env, extra...)
}
