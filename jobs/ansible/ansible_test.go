// Package ansible holds the Ansible recipe (migrate.yml); its test runs the
// playbook with Debian's real ansible-playbook against localhost.
package ansible

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeOutpost stands in for the outpost binary until the test runs the real
// one against real servers: for `migrate CMD` it takes the next exit code
// from $FAKE_OUTPOST_STATE/CMD.codes (repeating the last one), prints the
// report kept for that code on stdout, a log line on stderr, and exits with
// the code. It records its arguments and REDIS_HOST.
const fakeOutpost = `#!/bin/sh
set -u
state="${FAKE_OUTPOST_STATE:?FAKE_OUTPOST_STATE is not set}"
echo "$*" >> "$state/calls"
echo "REDIS_HOST=${REDIS_HOST:-}" >> "$state/env"
cmd="$2"
n=$(cat "$state/$cmd.n" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$state/$cmd.n"
code=$(sed -n "${n}p" "$state/$cmd.codes")
[ -n "$code" ] || code=$(tail -n 1 "$state/$cmd.codes")
echo "level=info msg=\"fake outpost $cmd\"" >&2
[ -f "$state/$cmd.$code.json" ] && cat "$state/$cmd.$code.json"
exit "$code"
`

func envelope(kind, command, outcome string, code int, changed bool, msg, errCode string, retryable bool) string {
	errDoc := "null"
	if errCode != "" {
		errDoc = fmt.Sprintf(`{"code":%q,"message":%q,"retryable":%v}`, errCode, msg, retryable)
	}
	failed := code != 0 && code != 2
	return fmt.Sprintf(`{"api_version":"outpost.migrate/v1","kind":%q,"command":%q,"outcome":%q,"exit_code":%d,"rc":%d,"changed":%v,"failed":%v,"msg":%q,"run_id":"r-00000000000000%02d","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01Z","duration_ms":1000,"tool":{"name":"outpost","version":"test"},"error":%s}`,
		kind, command, outcome, code, code, changed, failed, msg, code, errDoc)
}

// Reports the fake prints, by command and exit code.
var reports = map[string]map[int]string{
	"plan": {
		0:  envelope("PlanReport", "plan", "up_to_date", 0, false, "nothing to migrate", "", false),
		2:  envelope("PlanReport", "plan", "pending", 2, true, "3 migrations pending", "", false),
		69: envelope("PlanReport", "plan", "unreachable", 69, false, "redis: connection refused", "STORE_UNREACHABLE", true),
	},
	"apply": {
		0:  envelope("ApplyReport", "apply", "applied", 0, true, "applied 3 migrations", "", false),
		4:  envelope("ApplyReport", "apply", "failed", 4, false, "redis/002 failed", "MIGRATION_FAILED", false),
		75: envelope("ApplyReport", "apply", "locked", 75, false, "lock held by r-9 on host-b", "LOCK_HELD", true),
	},
	"verify": {
		0: envelope("VerifyReport", "verify", "verified", 0, false, "3 migrations verified", "", false),
		3: envelope("VerifyReport", "verify", "drift", 3, false, "2 records differ", "DRIFT", false),
	},
}

// scenario is the exit codes the fake returns, per command, in call order.
type scenario map[string][]int

// outpostCommand returns the argv prefix the playbook runs as outpost and
// the environment it needs. It is the one place to switch the test to the
// real binary (with REDIS_*/POSTGRES_URL of real servers in env).
func outpostCommand(t *testing.T, sc scenario) (argv []string, env map[string]string, state string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "outpost")
	if err := os.WriteFile(bin, []byte(fakeOutpost), 0o755); err != nil {
		t.Fatal(err)
	}
	for cmd, codes := range sc {
		var lines []string
		for _, c := range codes {
			lines = append(lines, fmt.Sprint(c))
			if r, ok := reports[cmd][c]; ok {
				if err := os.WriteFile(filepath.Join(state, fmt.Sprintf("%s.%d.json", cmd, c)), []byte(r+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(state, cmd+".codes"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{bin}, map[string]string{"FAKE_OUTPOST_STATE": state, "REDIS_HOST": "redis.test"}, state
}

type event struct {
	Event  string         `json:"event"`
	Task   string         `json:"task"`
	Result map[string]any `json:"result"`
	Hosts  map[string]struct {
		OK       int `json:"ok"`
		Changed  int `json:"changed"`
		Failures int `json:"failures"`
		Skipped  int `json:"skipped"`
	} `json:"hosts"`
}

type playResult struct {
	exitCode int
	events   []event
	output   string
}

// final returns the last result of the task whose name starts with prefix.
func (p playResult) final(t *testing.T, prefix string) event {
	t.Helper()
	for i := len(p.events) - 1; i >= 0; i-- {
		e := p.events[i]
		if strings.HasPrefix(e.Task, prefix) && e.Event != "retry" {
			return e
		}
	}
	t.Fatalf("no result for task %q in:\n%s", prefix, p.output)
	return event{}
}

func (p playResult) retries(prefix string) int {
	n := 0
	for _, e := range p.events {
		if strings.HasPrefix(e.Task, prefix) && e.Event == "retry" {
			n++
		}
	}
	return n
}

func (p playResult) stats(t *testing.T) (ok, changed, failures int) {
	t.Helper()
	for _, e := range p.events {
		if e.Event == "stats" {
			h := e.Hosts["localhost"]
			return h.OK, h.Changed, h.Failures
		}
	}
	t.Fatalf("no stats in:\n%s", p.output)
	return
}

// playbook runs migrate.yml against localhost with the real ansible-playbook.
func playbook(t *testing.T, argv []string, env map[string]string, extra map[string]any) playResult {
	t.Helper()
	ap, err := exec.LookPath("ansible-playbook")
	if err != nil {
		t.Fatalf("ansible-playbook is not installed (apt-get install ansible-core): %v", err)
	}
	dir := t.TempDir()
	vars := map[string]any{
		"outpost_command":       argv,
		"outpost_env":           env,
		"outpost_apply_retries": 3,
		"outpost_apply_delay":   0,
	}
	for k, v := range extra {
		vars[k] = v
	}
	b, _ := json.Marshal(vars)
	varsFile := filepath.Join(dir, "vars.json")
	cfg := filepath.Join(dir, "ansible.cfg")
	_ = os.WriteFile(varsFile, b, 0o600)
	_ = os.WriteFile(cfg, []byte("[defaults]\n"), 0o600)
	cb, _ := filepath.Abs(filepath.Join("testdata", "callback_plugins"))

	cmd := exec.Command(ap, "-i", "localhost,", "-c", "local", "migrate.yml", "-e", "@"+varsFile)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_CONFIG="+cfg,
		"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
		"ANSIBLE_STDOUT_CALLBACK=record",
		"ANSIBLE_CALLBACK_PLUGINS="+cb,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(dir, "rtmp"),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_HOST_KEY_CHECKING=0",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := playResult{output: stdout.String() + "\n--- stderr ---\n" + stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.exitCode = ee.ExitCode()
	case err != nil:
		t.Fatalf("ansible-playbook: %v", err)
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Event != "" {
			res.events = append(res.events, e)
		}
	}
	if len(res.events) == 0 {
		t.Fatalf("ansible-playbook printed no results (exit %d):\n%s", res.exitCode, res.output)
	}
	return res
}

func boolOf(e event, key string) bool { v, _ := e.Result[key].(bool); return v }

func numOf(e event, key string) int { v, _ := e.Result[key].(float64); return int(v) }

func readFile(t *testing.T, p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestPlanApplyRetryVerify(t *testing.T) {
	argv, env, state := outpostCommand(t, scenario{"plan": {2}, "apply": {75, 75, 0}, "verify": {0}})
	p := playbook(t, argv, env, nil)
	if p.exitCode != 0 {
		t.Fatalf("playbook failed (exit %d):\n%s", p.exitCode, p.output)
	}
	plan := p.final(t, "Plan")
	if plan.Event != "ok" || !boolOf(plan, "changed") || numOf(plan, "rc") != 2 {
		t.Fatalf("plan: %+v", plan)
	}
	apply := p.final(t, "Apply")
	if apply.Event != "ok" || !boolOf(apply, "changed") || numOf(apply, "rc") != 0 || numOf(apply, "attempts") != 3 || p.retries("Apply") != 2 {
		t.Fatalf("apply: %+v (retries %d)", apply, p.retries("Apply"))
	}
	verify := p.final(t, "Verify")
	if verify.Event != "ok" || boolOf(verify, "changed") {
		t.Fatalf("verify: %+v", verify)
	}
	if msg, _ := p.final(t, "Report").Result["msg"].(string); !strings.Contains(msg, "applied 3 migrations") || !strings.Contains(msg, "3 migrations pending") {
		t.Fatalf("report: %q", msg)
	}
	_, changed, failures := p.stats(t)
	if changed != 2 || failures != 0 {
		t.Fatalf("stats changed %d failures %d", changed, failures)
	}
	calls := readFile(t, filepath.Join(state, "calls"))
	want := "migrate plan --output json --detailed-exitcode\n" + strings.Repeat("migrate apply --yes --lock-timeout 10m --output json\n", 3) + "migrate verify --output json\n"
	if calls != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", calls, want)
	}
	if !strings.Contains(readFile(t, filepath.Join(state, "env")), "REDIS_HOST=redis.test") {
		t.Fatal("outpost_env did not reach the program")
	}
}

func TestNothingPendingSkipsApply(t *testing.T) {
	argv, env, state := outpostCommand(t, scenario{"plan": {0}, "verify": {0}})
	p := playbook(t, argv, env, nil)
	if p.exitCode != 0 {
		t.Fatalf("exit %d:\n%s", p.exitCode, p.output)
	}
	if plan := p.final(t, "Plan"); boolOf(plan, "changed") {
		t.Fatalf("plan changed with nothing pending: %+v", plan)
	}
	if apply := p.final(t, "Apply"); apply.Event != "skipped" {
		t.Fatalf("apply ran: %+v", apply)
	}
	if strings.Contains(readFile(t, filepath.Join(state, "calls")), "apply") {
		t.Fatal("apply was called")
	}
	if _, changed, _ := p.stats(t); changed != 0 {
		t.Fatalf("changed %d", changed)
	}
}

func TestLockHeldTooLongFails(t *testing.T) {
	argv, env, state := outpostCommand(t, scenario{"plan": {2}, "apply": {75}, "verify": {0}})
	p := playbook(t, argv, env, map[string]any{"outpost_apply_retries": 2})
	apply := p.final(t, "Apply")
	if p.exitCode == 0 || apply.Event != "failed" || numOf(apply, "rc") != 75 {
		t.Fatalf("exit %d apply %+v\n%s", p.exitCode, apply, p.output)
	}
	// One run and two retries, then the play stops before verify.
	calls := readFile(t, filepath.Join(state, "calls"))
	if n := strings.Count(calls, "migrate apply"); n != 3 || p.retries("Apply") != 2 || strings.Contains(calls, "verify") {
		t.Fatalf("apply ran %d times (%d retries):\n%s", n, p.retries("Apply"), calls)
	}
	if _, _, failures := p.stats(t); failures != 1 {
		t.Fatal("want one failure")
	}
}

func TestMigrationFailureIsNotRetried(t *testing.T) {
	argv, env, state := outpostCommand(t, scenario{"plan": {2}, "apply": {4}, "verify": {0}})
	p := playbook(t, argv, env, nil)
	apply := p.final(t, "Apply")
	if p.exitCode == 0 || apply.Event != "failed" || numOf(apply, "rc") != 4 || p.retries("Apply") != 0 {
		t.Fatalf("exit %d apply %+v retries %d", p.exitCode, apply, p.retries("Apply"))
	}
	if strings.Contains(readFile(t, filepath.Join(state, "calls")), "verify") {
		t.Fatal("verify ran after a failed apply")
	}
}

func TestDriftFailsThePlay(t *testing.T) {
	argv, env, _ := outpostCommand(t, scenario{"plan": {2}, "apply": {0}, "verify": {3}})
	p := playbook(t, argv, env, nil)
	if v := p.final(t, "Verify"); p.exitCode == 0 || v.Event != "failed" || numOf(v, "rc") != 3 {
		t.Fatalf("exit %d verify %+v", p.exitCode, v)
	}
}

func TestPlanFailures(t *testing.T) {
	// A store that does not answer.
	argv, env, _ := outpostCommand(t, scenario{"plan": {69}})
	p := playbook(t, argv, env, nil)
	if plan := p.final(t, "Plan"); p.exitCode == 0 || plan.Event != "failed" {
		t.Fatalf("exit %d plan %+v", p.exitCode, plan)
	}
	// Exit 2 without a report saying "pending" (a panic, a missing program)
	// is a failure, not "changes pending".
	argv, env, _ = outpostCommand(t, scenario{"plan": {2}})
	_ = os.Remove(filepath.Join(env["FAKE_OUTPOST_STATE"], "plan.2.json"))
	p = playbook(t, argv, env, nil)
	if plan := p.final(t, "Plan"); p.exitCode == 0 || plan.Event != "failed" {
		t.Fatalf("exit 2 without a report passed: exit %d plan %+v", p.exitCode, plan)
	}
	p = playbook(t, []string{filepath.Join(t.TempDir(), "no-such-outpost")}, env, nil)
	if plan := p.final(t, "Plan"); p.exitCode == 0 || plan.Event != "failed" {
		t.Fatalf("a missing program passed: exit %d plan %+v", p.exitCode, plan)
	}
}
