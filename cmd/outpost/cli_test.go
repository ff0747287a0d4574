package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/testsrv"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { testsrv.Main(m) }

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
	var out, errb bytes.Buffer
	e := env{
		args:      args,
		lookupEnv: func(k string) (string, bool) { v, ok := envs[k]; return v, ok },
		stdin:     bytes.NewReader(stdin),
		stdout:    &out,
		stderr:    &errb,
	}
	code := Main(context.Background(), e)
	r := &result{code: code, stdout: out.String(), stderr: errb.String()}
	checkReport(t, r)
	return r
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

// redisEnv is the environment for a standalone test server.
func redisEnv(s *testsrv.RedisServer) map[string]string {
	return map[string]string{"REDIS_HOST": s.Host, "REDIS_PORT": itoa(s.Port)}
}
