package main

// Issue #22, output that cannot kill the run: a reader that goes away
// (`2>&1 | head -n 3`) or a full disk behind stdout never stops an apply
// half-way. The work completes, the lock is released, the data is exact;
// a report that could not be written makes the exit 74 (IOERR) and still
// reaches the termination log.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// shellRun runs script with bash, the binary as $BIN and only envs (and
// PATH) in its environment; the script writes the tool's exit code to
// $RC. It returns that exit code and what the script printed.
func shellRun(t *testing.T, envs map[string]string, script string) (int, string) {
	t.Helper()
	rcFile := filepath.Join(t.TempDir(), "rc")
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BIN=" + binary(t), "RC=" + rcFile}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	b, err := os.ReadFile(rcFile)
	require.NoError(t, err, string(out))
	code, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return code, string(out)
}

// TestOutputReaderGoneMidApply: `apply --yes 2>&1 | head -n 3` with debug
// logs: head closes the pipe after three lines, long before the apply ends.
// The apply completes anyway (not 141), releases its lock, migrates every
// key; its report, lost, makes the exit 74 and is in the termination log.
func TestOutputReaderGoneMidApply(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := seedTenants(t, c, faultSmallTenants)
	tlog := filepath.Join(t.TempDir(), "termination-log")
	envs["OUTPOST_TERMINATION_LOG"] = tlog

	code, out := shellRun(t, envs, `"$BIN" -v migrate apply --yes --redis-only 2>&1 | head -n 3; echo "${PIPESTATUS[0]}" > "$RC"`)
	require.Equal(t, 74, code, "the tool must finish and say its report was lost, not die by SIGPIPE (141):\n%s", out)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 3, out)

	summary, err := os.ReadFile(tlog)
	require.NoError(t, err)
	require.Contains(t, string(summary), "applied (exit 74)")
	require.Contains(t, string(summary), "[IOERR]")
	require.Contains(t, string(summary), "could not be written to stdout")

	n, err := c.Exists(context.Background(), lockKey).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the lock must be released")
	requireMigrated(t, c, o)
	r := run(t, redisEnv(srv), "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "up_to_date", r.rep["outcome"])
}

// TestOutputFullDisk: stdout on /dev/full is exit 74 with the result in the
// termination log (it was 0 with no report); stderr on /dev/full changes
// nothing: exit 0 and the report on stdout.
func TestOutputFullDisk(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	envs := redisEnv(srv)
	o := seedTenants(t, c, 500)
	tlog := filepath.Join(t.TempDir(), "termination-log")
	envs["OUTPOST_TERMINATION_LOG"] = tlog

	code, out := shellRun(t, envs, `"$BIN" -v migrate apply --yes --redis-only 2>/dev/null >/dev/full; echo $? > "$RC"`)
	require.Equal(t, 74, code, out)
	summary, err := os.ReadFile(tlog)
	require.NoError(t, err)
	require.Contains(t, string(summary), "applied (exit 74)")
	require.Contains(t, string(summary), "[IOERR]")
	requireMigrated(t, c, o)

	// Logs on a full disk: the run does not notice.
	code, out = shellRun(t, envs, `"$BIN" -v --output json migrate verify --redis-only 2>/dev/full; echo $? > "$RC"`)
	require.Equal(t, 0, code, out)
	r := &result{code: code, stdout: out}
	checkReport(t, r)
	require.Equal(t, "verified", r.rep["outcome"])
	summary, err = os.ReadFile(tlog)
	require.NoError(t, err)
	require.Contains(t, string(summary), "verify: verified (exit 0)")
}
