package ci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// gateRun is one run of the gate script.
type gateRun struct {
	code    int
	stderr  string
	reports map[string]map[string]any // "plan", "apply": the report each step left, if any
	argvs   [][]string                // what the script ran, in order
}

// runGate runs the gate script with /bin/sh (dash on Debian: POSIX, no
// bash-isms get through), the real binary behind a wrapper that records
// each command line, and env (the stores' settings and the script's own).
func runGate(t *testing.T, env map[string]string) gateRun {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "argv.log")
	wrapper := filepath.Join(dir, "outpost")
	// One argument per line, a line "--" after each run.
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done >>%q\necho -- >>%q\nexec %q \"$@\"\n",
		logFile, logFile, recipetest.Binary(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	gate, _ := filepath.Abs(gateScript)
	cmd := exec.Command("/bin/sh", gate)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"OUTPOST=" + wrapper, "OUTPOST_REPORT_DIR=" + filepath.Join(dir, "reports")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	r := gateRun{code: cmd.ProcessState.ExitCode(), stderr: stderr.String(), reports: map[string]map[string]any{}}
	for _, step := range []string{"plan", "apply"} {
		b, err := os.ReadFile(filepath.Join(dir, "reports", step+".json"))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var rep map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
			t.Fatalf("%s.json holds no report: %v\n%s", step, err, b)
		}
		r.reports[step] = rep
	}
	if b, err := os.ReadFile(logFile); err == nil {
		var cur []string
		for _, a := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if a == "--" {
				r.argvs = append(r.argvs, cur)
				cur = nil
				continue
			}
			cur = append(cur, a)
		}
	}
	return r
}

// checkArgvs: the script ran these commands, each with --wait-for and each
// parsing with the real binary.
func checkArgvs(t *testing.T, r gateRun, commands ...string) {
	t.Helper()
	if len(r.argvs) != len(commands) {
		t.Fatalf("the script ran %q, want %v", r.argvs, commands)
	}
	for i, argv := range r.argvs {
		if len(argv) < 2 || argv[1] != commands[i] {
			t.Fatalf("run %d: %q, want migrate %s", i, argv, commands[i])
		}
		recipetest.CheckParses(t, "gate "+commands[i], argv)
	}
	if _, err := recipetest.BudgetOf(r.argvs[len(r.argvs)-1], 0); commands[len(commands)-1] == "apply" && err != nil {
		t.Errorf("apply: %v", err)
	}
}

// gateStores are real servers holding Outpost data that needs every
// migration: v0 Redis keys and an empty PostgreSQL database.
func gateStores(t *testing.T) (map[string]string, *servertest.RedisServer, seed.Options, *servertest.PGDatabase) {
	t.Helper()
	srv := servertest.Redis(t)
	pg := servertest.Postgres(t)
	opts := seed.DefaultOptions()
	opts.Tenants, opts.UnrelatedKeys = 40, 10
	if _, err := seed.Write(context.Background(), srv.Client(t), opts); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_HOST": srv.Host, "REDIS_PORT": strconv.Itoa(srv.Port), "POSTGRES_URL": pg.URL}
	return env, srv, opts, pg
}

func outcome(r gateRun, step string) any {
	if rep := r.reports[step]; rep != nil {
		return rep["outcome"]
	}
	return nil
}

// TestGatePlanExit2Applies: plan exits 2 ("pending"), the script applies
// and exits 0; every key is what the migrations must make of it. The next
// run's plan exits 0 and nothing is applied.
func TestGatePlanExit2Applies(t *testing.T) {
	t.Parallel()
	env, srv, opts, _ := gateStores(t)
	r := runGate(t, env)
	if r.code != 0 || outcome(r, "plan") != "pending" || outcome(r, "apply") != "applied" {
		t.Fatalf("exit %d, plan %v, apply %v\n%s", r.code, outcome(r, "plan"), outcome(r, "apply"), r.stderr)
	}
	if code := r.reports["plan"]["exit_code"]; code != float64(2) {
		t.Fatalf("plan's exit_code %v, want 2", code)
	}
	checkArgvs(t, r, "plan", "apply")
	diffs, checked, err := seedtest.Check(context.Background(), srv.Client(t), opts, seedtest.Expect)
	if err != nil || len(diffs) > 0 || checked == 0 {
		t.Fatalf("keyspace after the gate (%d keys): %v %v", checked, err, diffs[:min(len(diffs), 10)])
	}

	// Plan exit 0: nothing to do, no apply, exit 0.
	r = runGate(t, env)
	if r.code != 0 || outcome(r, "plan") != "up_to_date" || r.reports["apply"] != nil {
		t.Fatalf("second run: exit %d, plan %v, apply %v\n%s", r.code, outcome(r, "plan"), outcome(r, "apply"), r.stderr)
	}
	checkArgvs(t, r, "plan")
	if !strings.Contains(r.stderr, "nothing to apply") {
		t.Errorf("stderr: %s", r.stderr)
	}
}

// TestGatePlanExit1Stops: PostgreSQL answers the version query with an
// error no class fits (division by zero in a schema_migrations view), so
// plan exits 1 (UNKNOWN); the script stops with 1 and applies nothing.
func TestGatePlanExit1Stops(t *testing.T) {
	t.Parallel()
	env, srv, _, pg := gateStores(t)
	conn := pg.Connect(t)
	if _, err := conn.Exec(context.Background(), `CREATE VIEW schema_migrations AS SELECT (1/0)::bigint AS version, false AS dirty`); err != nil {
		t.Fatal(err)
	}
	before := keyCount(t, srv)
	r := runGate(t, env)
	errObj, _ := r.reports["plan"]["error"].(map[string]any)
	if r.code != 1 || r.reports["plan"]["exit_code"] != float64(1) || errObj["code"] != "UNKNOWN" || r.reports["apply"] != nil {
		t.Fatalf("exit %d, plan %v, apply %v\n%s", r.code, r.reports["plan"], outcome(r, "apply"), r.stderr)
	}
	checkArgvs(t, r, "plan")
	if after := keyCount(t, srv); after != before {
		t.Fatalf("Redis went from %d to %d keys: something was applied", before, after)
	}
}

// TestGateStopsOnOtherPlanFailures: an unreachable store (69) stops the
// script with 69; apply failing (75, the lock held past --lock-timeout) is
// the script's exit code.
func TestGateStopsOnOtherPlanFailures(t *testing.T) {
	t.Parallel()
	env, srv, opts, _ := gateStores(t)

	bad := map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": strconv.Itoa(recipetest.ClosedPort(t)),
		"POSTGRES_URL": env["POSTGRES_URL"], "OUTPOST_WAIT_FOR": "1s"}
	if r := runGate(t, bad); r.code != 69 || r.reports["apply"] != nil {
		t.Fatalf("unreachable: exit %d, apply %v\n%s", r.code, outcome(r, "apply"), r.stderr)
	}

	// Outpost's own migrator holds the lock (SET NX with a bare token).
	c := srv.Client(t)
	if err := c.SetNX(context.Background(), lock.Key(opts.Prefix()), "0f1e2d3c4b5a69788796a5b4c3d2e1f0", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{"OUTPOST_LOCK_TIMEOUT": "1s"}
	for k, v := range env {
		held[k] = v
	}
	r := runGate(t, held)
	if r.code != 75 || outcome(r, "plan") != "pending" || outcome(r, "apply") != "locked" {
		t.Fatalf("lock held: exit %d, plan %v, apply %v\n%s", r.code, outcome(r, "plan"), outcome(r, "apply"), r.stderr)
	}
	if lt, _ := recipetest.Flag(r.argvs[1], "lock-timeout"); lt != "1s" {
		t.Fatalf("OUTPOST_LOCK_TIMEOUT did not reach apply: %q", r.argvs[1])
	}
}

// TestGateExit2WithoutReport: exit 2 without a report saying "pending" (a
// Go panic exits 2) is a failure, not "pending". The real tool does not
// panic on demand, so a script stands in for it here.
func TestGateExit2WithoutReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	panicky := filepath.Join(dir, "outpost")
	if err := os.WriteFile(panicky, []byte("#!/bin/sh\necho 'panic: runtime error' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	gate, _ := filepath.Abs(gateScript)
	cmd := exec.Command("/bin/sh", gate)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OUTPOST=" + panicky}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "without a report saying pending") {
		t.Fatalf("exit %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "outpost-reports", "apply.json")); err == nil {
		t.Fatal("apply ran")
	}
}

func keyCount(t *testing.T, srv *servertest.RedisServer) int64 {
	t.Helper()
	n, err := srv.Client(t).DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
