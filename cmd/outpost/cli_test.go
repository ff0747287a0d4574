package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// result is one invocation's outcome.
type result struct {
	code   int
	stdout string
	stderr string
	rep    map[string]any
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// checkReport asserts the contract every invocation keeps: stdout's last
// line is one JSON document valid against its kind's schema, whose
// exit_code is the process's.
func checkReport(t *testing.T, r *result) {
	t.Helper()
	line := lastLine(r.stdout)
	require.NoError(t, report.ValidateJSON([]byte(line)), "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(line), &r.rep))
	require.EqualValues(t, r.code, r.rep["exit_code"], "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.EqualValues(t, r.code, r.rep["rc"])
}

// run runs the command in-process with only the given environment.
func run(t *testing.T, envs map[string]string, args ...string) *result {
	t.Helper()
	return runStdin(t, envs, nil, args...)
}

func runStdin(t *testing.T, envs map[string]string, stdin []byte, args ...string) *result {
	t.Helper()
	r := runMain(envs, env{args: args, stdin: bytes.NewReader(stdin)})
	checkReport(t, r)
	return r
}

// runMain runs e in-process with only envs as its environment and returns
// what it printed, unchecked. Stdout and stderr are captured; stdin is
// empty unless e sets it.
func runMain(envs map[string]string, e env) *result {
	var out, errb bytes.Buffer
	e.lookupEnv = func(k string) (string, bool) { v, ok := envs[k]; return v, ok }
	if e.stdin == nil {
		e.stdin = strings.NewReader("")
	}
	e.stdout, e.stderr = &out, &errb
	code := Main(context.Background(), e)
	return &result{code: code, stdout: out.String(), stderr: errb.String()}
}

func errorCode(r *result) string {
	e, _ := r.rep["error"].(map[string]any)
	if e == nil {
		return ""
	}
	return e["code"].(string)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the outpost binary once per test run, for tests that need
// a real process (signals, kill -9, stdin without a terminal).
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "outpost")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	require.NoError(t, binErr, binPath)
	return binPath
}

// The lock key and apply's checkpoint key without a deployment prefix.
const (
	lockKey       = ".outpost:migration_lock"
	checkpointKey = "{" + lockKey + "}:checkpoint:apply"
)

func seedOptions(tenants int) seed.Options {
	o := seed.DefaultOptions()
	o.Tenants = tenants
	return o
}

// seedTenants writes a v0 keyspace of n tenants.
func seedTenants(t *testing.T, c redis.UniversalClient, n int) seed.Options {
	t.Helper()
	o := seedOptions(n)
	_, err := seed.Write(context.Background(), c, o)
	require.NoError(t, err)
	return o
}

// requireKeyspace checks every key against what expect says the seeded
// data o must have become.
func requireKeyspace(t *testing.T, c redis.UniversalClient, o seed.Options, expect seedtest.ExpectFunc) {
	t.Helper()
	diffs, checked, err := seedtest.Check(context.Background(), c, o, expect)
	require.NoError(t, err)
	require.Empty(t, diffs, "%d of %d keys differ; first: %v", len(diffs), checked, diffs[:min(len(diffs), 20)])
	require.Positive(t, checked)
}

// requireMigrated checks the keyspace against what migrations 001-003 must
// make of the seeded data.
func requireMigrated(t *testing.T, c redis.UniversalClient, o seed.Options) {
	t.Helper()
	requireKeyspace(t, c, o, seedtest.Expect)
}

// redisEnv is the environment for a standalone test server.
func redisEnv(s *servertest.RedisServer) map[string]string {
	return map[string]string{"REDIS_HOST": s.Host, "REDIS_PORT": itoa(s.Port)}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is one run of the real binary as a subprocess: stdout is buffered,
// stderr is read line by line as it comes and every line that is a JSON
// object is kept as an event (the progress events of --log-format json).
// Its methods may be called while the process runs.
type proc struct {
	cmd    *exec.Cmd
	stdout lockedBuffer
	// done is closed once stderr is drained and Wait has returned (err is
	// its error): the process is gone and ProcessState is set.
	done chan struct{}
	err  error

	mu     sync.Mutex
	stderr bytes.Buffer
	events []map[string]any
}

// startProc starts the binary with args as given and only envs (and PATH)
// in its environment. A process still running when the test ends is
// killed.
func startProc(t *testing.T, envs map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary(t), args...), done: make(chan struct{})}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range envs {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout = &p.stdout
	pipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		defer close(p.done)
		r := bufio.NewReader(pipe)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				line = bytes.TrimSuffix(line, []byte("\n"))
				var ev map[string]any
				p.mu.Lock()
				p.stderr.Write(line)
				p.stderr.WriteByte('\n')
				if json.Unmarshal(line, &ev) == nil {
					p.events = append(p.events, ev)
				}
				p.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		// Wait only once stderr is drained: it closes the pipe.
		p.err = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startJSON is startProc with JSON logs on stderr and a JSON report, the
// flags of every test that watches the events.
func startJSON(t *testing.T, envs map[string]string, args ...string) *proc {
	t.Helper()
	return startProc(t, envs, append([]string{"--log-format", "json", "--output", "json"}, args...)...)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// event returns the first event of kind so far, or nil.
func (p *proc) event(kind string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if ev["event"] == kind {
			return ev
		}
	}
	return nil
}

// countEvents counts the process's events of kind so far.
func (p *proc) countEvents(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ev := range p.events {
		if ev["event"] == kind {
			n++
		}
	}
	return n
}

// waitEvent waits for the first event of kind and returns it. It fails
// when the process ends without one or none comes within timeout (0: look
// once).
func (p *proc) waitEvent(t *testing.T, kind string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ev := p.event(kind); ev != nil {
			return ev
		}
		select {
		case <-p.done:
			// Drained: every line has been read, so one last look decides.
			if ev := p.event(kind); ev != nil {
				return ev
			}
			t.Fatalf("the process ended without a %s event; stdout: %s\nstderr: %s", kind, p.stdout.String(), p.stderrText())
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event within %s; stderr: %s", kind, timeout, p.stderrText())
		}
	}
}

// kill sends SIGKILL, waits for the process to die of it and checks that
// it printed no report.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
	require.Error(t, p.err)
	require.Equal(t, syscall.SIGKILL, p.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
	require.Empty(t, p.stdout.String(), "a killed run prints no report")
}

// exit waits for the process to exit (at most within, if positive) and
// returns its exit code and output, unchecked.
func (p *proc) exit(t *testing.T, within time.Duration) *result {
	t.Helper()
	if within > 0 {
		select {
		case <-p.done:
		case <-time.After(within):
			// done may have closed at the same moment: look again.
			select {
			case <-p.done:
			default:
				t.Fatalf("the run did not end within %s:\n%s", within, p.stderrText())
			}
		}
	}
	<-p.done
	if p.err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, p.err, &exit)
	}
	return &result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderrText()}
}

// wait waits for the process to exit and checks its report.
func (p *proc) wait(t *testing.T) *result {
	t.Helper()
	return p.waitWithin(t, 0)
}

// waitWithin is wait that fails when the process has not exited within
// the given time.
func (p *proc) waitWithin(t *testing.T, within time.Duration) *result {
	t.Helper()
	r := p.exit(t, within)
	checkReport(t, r)
	return r
}
