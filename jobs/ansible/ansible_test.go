// Package ansible holds the Ansible recipe (migrate.yml). Its tests run the
// playbook with Debian's real ansible-playbook against localhost, the real
// outpost binary (built from this module) and real Redis and PostgreSQL
// servers (batch/servertest), and read each task's result through the callback
// plugin in testdata/.
package ansible

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	servertest.StopShared()
	recipetest.Cleanup()
	os.Exit(code)
}

// outpostBinary is the real outpost binary, built once from this module.
func outpostBinary(t *testing.T) string { return recipetest.Binary(t) }

// checked holds the command lines checkCommandLines has run through the
// binary already.
var checked sync.Map

// checkCommandLines: every outpost command the play ran (the "cmd" Ansible
// records for the command module and for the role's outpost_apply) carries
// --wait-for and parses with the real binary.
func checkCommandLines(t *testing.T, p playResult) {
	t.Helper()
	for _, e := range p.events {
		raw, _ := e.Result["cmd"].([]any)
		var argv []string
		for _, a := range raw {
			s, _ := a.(string)
			if s == "migrate" || len(argv) > 0 {
				argv = append(argv, s)
			}
		}
		if len(argv) == 0 {
			continue
		}
		key := strings.Join(argv, "\x00")
		if _, seen := checked.LoadOrStore(key, true); !seen {
			recipetest.CheckParses(t, "ansible task "+e.Task, argv)
		}
	}
}

// outpost runs the binary directly (to set stores up, outside the playbook)
// and returns its exit code and report.
func outpost(t *testing.T, env map[string]string, args ...string) (int, map[string]any) {
	t.Helper()
	cmd := exec.Command(outpostBinary(t), args...)
	cmd.Env = envList(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
	}
	var rep map[string]any
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &rep); err != nil {
		t.Fatalf("outpost %s printed no report: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), rep
}

func envList(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return lines[len(lines)-1]
}

// stores are the real servers of one test, holding Outpost data that needs
// every migration: v0 Redis keys (seed.Write) and, with Postgres, an event
// log at schema version 4 with rows, as a deployment that last migrated
// before the attempts rework would have.
type stores struct {
	redis  *servertest.RedisServer
	pg     *servertest.PGDatabase // nil without PostgreSQL
	client *redis.Client
	seed   seed.Options
	// env is the tool's environment: REDIS_HOST, REDIS_PORT and, with
	// Postgres, POSTGRES_URL.
	env map[string]string
}

func newStores(t *testing.T, withPostgres bool) *stores {
	t.Helper()
	ctx := context.Background()
	s := &stores{redis: servertest.Redis(t)}
	s.client = s.redis.Client(t)
	s.env = map[string]string{"REDIS_HOST": s.redis.Host, "REDIS_PORT": strconv.Itoa(s.redis.Port)}
	s.seed = seed.DefaultOptions()
	s.seed.Tenants = 60
	s.seed.UnrelatedKeys = 20
	if _, err := seed.Write(ctx, s.client, s.seed); err != nil {
		t.Fatalf("seed redis: %v", err)
	}
	if withPostgres {
		pg := servertest.Postgres(t)
		s.pg = pg
		s.env["POSTGRES_URL"] = pg.URL
		if code, rep := outpost(t, s.env, "migrate", "apply", "--sql-only", "--yes", "--target", "sql/000004", "--output", "json"); code != 0 {
			t.Fatalf("migrate the log store to version 4: exit %d: %v", code, rep["msg"])
		}
		conn := pg.Connect(t)
		if _, err := seed.WritePostgres(ctx, conn, seed.PGOptions{Version: 4, Events: 200, DeliveriesPerEvent: 2, OrphanRatio: 0.02, Seed: 1}); err != nil {
			t.Fatalf("seed postgres: %v", err)
		}
	}
	return s
}

// checkMigrated asserts that the Redis keyspace is what migrations 001-003
// must make of the seed, key by key.
func (s *stores) checkMigrated(t *testing.T) {
	t.Helper()
	diffs, checked, err := seedtest.Check(context.Background(), s.client, s.seed, seedtest.Expect)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 || checked == 0 {
		t.Fatalf("keyspace after the playbook (%d keys checked) differs:\n%s", checked, strings.Join(diffs[:min(len(diffs), 20)], "\n"))
	}
}

// holdLock takes the migration lock as Outpost's own migrator does (SET NX
// EX with a bare random token, which this tool reads as a foreign holder)
// for ttl, and returns the token.
func (s *stores) holdLock(t *testing.T, ttl time.Duration) string {
	t.Helper()
	token := fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	ok, err := s.client.SetNX(context.Background(), lock.Key(s.seed.Prefix()), token, ttl).Result()
	if err != nil || !ok {
		t.Fatalf("take the lock: %v (set %v)", err, ok)
	}
	return token
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

// taskName is the task's name without the role's "outpost_migrate : ".
func taskName(e event) string {
	if _, name, ok := strings.Cut(e.Task, " : "); ok {
		return name
	}
	return e.Task
}

// final returns the last result of the task whose name starts with prefix.
func (p playResult) final(t *testing.T, prefix string) event {
	t.Helper()
	for i := len(p.events) - 1; i >= 0; i-- {
		e := p.events[i]
		if strings.HasPrefix(taskName(e), prefix) && e.Event != "retry" {
			return e
		}
	}
	t.Fatalf("no result for task %q in:\n%s", prefix, p.output)
	return event{}
}

// ran reports whether the task whose name starts with prefix has a result.
func (p playResult) ran(prefix string) bool {
	for _, e := range p.events {
		if strings.HasPrefix(taskName(e), prefix) {
			return true
		}
	}
	return false
}

// retriesOf returns the "retry" results of the task, one per failed attempt
// that Ansible retried.
func (p playResult) retriesOf(prefix string) []event {
	var out []event
	for _, e := range p.events {
		if strings.HasPrefix(taskName(e), prefix) && e.Event == "retry" {
			out = append(out, e)
		}
	}
	return out
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
	return playbookWatch(t, argv, env, extra, nil)
}

// playbookWatch is playbook that calls watch with each result as Ansible
// reports it, while the play runs.
func playbookWatch(t *testing.T, argv []string, env map[string]string, extra map[string]any, watch func(event)) playResult {
	t.Helper()
	return runPlaybook(t, argv, env, extra, watch)
}

// runPlaybook runs migrate.yml with ansible-playbook and flags (--check,
// --diff), calling watch (when not nil) with each result.
func runPlaybook(t *testing.T, argv []string, env map[string]string, extra map[string]any, watch func(event), flags ...string) playResult {
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

	cmd := exec.Command(ap, append([]string{"-i", "localhost,", "-c", "local", "migrate.yml", "-e", "@" + varsFile}, flags...)...)
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
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ansible-playbook: %v", err)
	}
	var res playResult
	sc := bufio.NewScanner(io.TeeReader(pipe, &stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Event != "" {
			res.events = append(res.events, e)
			if watch != nil {
				watch(e)
			}
		}
	}
	_, _ = io.Copy(&stdout, pipe) // the rest of an overlong line, if any
	err = cmd.Wait()
	res.output = stdout.String() + "\n--- stderr ---\n" + stderr.String()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.exitCode = ee.ExitCode()
	case err != nil:
		t.Fatalf("ansible-playbook: %v", err)
	}
	if len(res.events) == 0 {
		t.Fatalf("ansible-playbook printed no results (exit %d):\n%s", res.exitCode, res.output)
	}
	checkCommandLines(t, res)
	return res
}

func boolOf(e event, key string) bool { v, _ := e.Result[key].(bool); return v }

func numOf(e event, key string) int { v, _ := e.Result[key].(float64); return int(v) }

// reportOf decodes the report the task's command printed: the last line of
// its stdout as Ansible recorded it.
func reportOf(t *testing.T, e event) map[string]any {
	t.Helper()
	lines, _ := e.Result["stdout_lines"].([]any)
	if len(lines) == 0 {
		t.Fatalf("task %q recorded no stdout: %v", e.Task, e.Result)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1].(string)), &rep); err != nil {
		t.Fatalf("task %q: the last stdout line is not a report: %v", e.Task, err)
	}
	return rep
}

// checkStep asserts what Ansible recorded for one step: its event, the
// command's exit code, the report's outcome, and that the task's `changed`
// is the report's (changed_when reads it; Ansible's own guess for a command
// is always true).
func checkStep(t *testing.T, e event, wantEvent string, wantRC int, wantOutcome string, wantChanged bool) map[string]any {
	t.Helper()
	rep := reportOf(t, e)
	if e.Event != wantEvent || numOf(e, "rc") != wantRC || rep["outcome"] != wantOutcome {
		t.Fatalf("task %q: %s rc %d outcome %v, want %s rc %d outcome %s\nmsg: %v", e.Task, e.Event, numOf(e, "rc"), rep["outcome"], wantEvent, wantRC, wantOutcome, rep["msg"])
	}
	if got := boolOf(e, "changed"); got != rep["changed"] || got != wantChanged {
		t.Fatalf("task %q: changed %v, report's changed %v, want %v", e.Task, got, rep["changed"], wantChanged)
	}
	if int(rep["exit_code"].(float64)) != wantRC {
		t.Fatalf("task %q: rc %d but the report says exit_code %v", e.Task, wantRC, rep["exit_code"])
	}
	return rep
}

func errCodeOf(rep map[string]any) string {
	e, _ := rep["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestPlaybookMigratesRealStores runs the playbook twice over both stores:
// the first run plans (changed), applies (changed) and verifies; the second
// finds nothing to do (plan not changed, apply skipped, verify passes).
func TestAnsiblePlaybookMigratesRealStores(t *testing.T) {
	t.Parallel()
	s := newStores(t, true)
	argv := []string{outpostBinary(t)}

	p := playbook(t, argv, s.env, nil)
	if p.exitCode != 0 {
		t.Fatalf("playbook failed (exit %d):\n%s", p.exitCode, p.output)
	}
	plan := checkStep(t, p.final(t, "Plan"), "ok", 2, "pending", true)
	if scope := fmt.Sprint(plan["targets"].(map[string]any)["scope"]); scope != "[sql redis]" {
		t.Fatalf("plan scope %s", scope)
	}
	apply := p.final(t, "Apply")
	checkStep(t, apply, "ok", 0, "applied", true)
	if numOf(apply, "attempts") != 1 || len(p.retriesOf("Apply")) != 0 {
		t.Fatalf("apply took %d attempts", numOf(apply, "attempts"))
	}
	verify := checkStep(t, p.final(t, "Verify"), "ok", 0, "verified", false)
	if sum := verify["summary"].(map[string]any); sum["verified"] == nil || sum["failed"] != nil {
		t.Fatalf("verify summary %v", sum)
	}
	if _, changed, failures := p.stats(t); changed != 2 || failures != 0 {
		t.Fatalf("stats changed %d failures %d", changed, failures)
	}
	msg, _ := p.final(t, "Report").Result["msg"].(string)
	if !strings.Contains(msg, "pending") || !strings.Contains(msg, "verified") {
		t.Fatalf("report: %q", msg)
	}
	s.checkMigrated(t)

	// Again: up to date, so plan is not changed and apply does not run.
	p = playbook(t, argv, s.env, nil)
	if p.exitCode != 0 {
		t.Fatalf("second run failed (exit %d):\n%s", p.exitCode, p.output)
	}
	checkStep(t, p.final(t, "Plan"), "ok", 0, "up_to_date", false)
	if apply := p.final(t, "Apply"); apply.Event != "skipped" {
		t.Fatalf("apply ran with nothing pending: %+v", apply)
	}
	checkStep(t, p.final(t, "Verify"), "ok", 0, "verified", false)
	if _, changed, failures := p.stats(t); changed != 0 || failures != 0 {
		t.Fatalf("second run: stats changed %d failures %d", changed, failures)
	}
	if msg, _ := p.final(t, "Report").Result["msg"].(string); !strings.Contains(msg, "nothing to apply") {
		t.Fatalf("report: %q", msg)
	}
	s.checkMigrated(t)
}

// TestApplyRetriesWhileTheLockIsHeld: Outpost's migrator holds the lock;
// apply (with a short --lock-timeout) exits 75 and Ansible retries only
// that. Once Ansible has retried, the holder's lock is given a short TTL, as
// Outpost's migrator finishing would; the retries end when it expires and
// apply succeeds. The scope flags limit every step to Redis.
func TestAnsibleApplyRetriesWhileTheLockIsHeld(t *testing.T) {
	t.Parallel()
	s := newStores(t, false)
	ctx := context.Background()
	key := lock.Key(s.seed.Prefix())
	token := s.holdLock(t, 5*time.Minute)
	var expiring bool
	p := playbookWatch(t, []string{outpostBinary(t)}, s.env, map[string]any{
		"outpost_scope_flags":   []string{"--redis-only"},
		"outpost_lock_timeout":  "1s",
		"outpost_apply_retries": 30,
		"outpost_apply_delay":   1,
	}, func(e event) {
		if e.Event == "retry" && strings.HasPrefix(taskName(e), "Apply") && !expiring {
			expiring = true
			if v, _ := s.client.Get(ctx, key).Result(); v != token {
				t.Errorf("the held lock changed while apply waited: %q", v)
			}
			if err := s.client.PExpire(ctx, key, 1500*time.Millisecond).Err(); err != nil {
				t.Error(err)
			}
		}
	})
	if p.exitCode != 0 {
		t.Fatalf("playbook failed (exit %d):\n%s", p.exitCode, p.output)
	}
	plan := checkStep(t, p.final(t, "Plan"), "ok", 2, "pending", true)
	if scope := fmt.Sprint(plan["targets"].(map[string]any)["scope"]); scope != "[redis]" {
		t.Fatalf("--redis-only did not reach the tool: scope %s", scope)
	}
	retries := p.retriesOf("Apply")
	if len(retries) == 0 {
		t.Fatalf("apply was not retried:\n%s", p.output)
	}
	for _, r := range retries {
		rep := reportOf(t, r)
		holder, _ := rep["lock"].(map[string]any)
		if numOf(r, "rc") != 75 || errCodeOf(rep) != "LOCK_HELD" || holder["foreign"] != true || boolOf(r, "changed") {
			t.Fatalf("retried attempt: rc %d error %s lock %v changed %v", numOf(r, "rc"), errCodeOf(rep), holder, boolOf(r, "changed"))
		}
	}
	apply := p.final(t, "Apply")
	checkStep(t, apply, "ok", 0, "applied", true)
	if numOf(apply, "attempts") != len(retries)+1 {
		t.Fatalf("attempts %d, retries %d", numOf(apply, "attempts"), len(retries))
	}
	checkStep(t, p.final(t, "Verify"), "ok", 0, "verified", false)
	s.checkMigrated(t)
	// The tool released its own lease; Outpost's lock had expired.
	if n, _ := s.client.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("the lock key is still there after the play")
	}
}

// TestLockHeldTooLongFails: the lock outlives every retry; the play fails
// on apply with 75 and never verifies, and the foreign lock is left alone.
func TestAnsibleLockHeldTooLongFails(t *testing.T) {
	t.Parallel()
	s := newStores(t, false)
	token := s.holdLock(t, 5*time.Minute)
	p := playbook(t, []string{outpostBinary(t)}, s.env, map[string]any{
		"outpost_scope_flags":   []string{"--redis-only"},
		"outpost_lock_timeout":  "0s",
		"outpost_apply_retries": 2,
	})
	apply := p.final(t, "Apply")
	rep := checkStep(t, apply, "failed", 75, "locked", false)
	if p.exitCode == 0 || errCodeOf(rep) != "LOCK_HELD" {
		t.Fatalf("exit %d error %s\n%s", p.exitCode, errCodeOf(rep), p.output)
	}
	// One run and two retries (each retried run is a "retry" result, the
	// last run the failed one; ansible-core records attempts as 2 then), and
	// the play stops before verify.
	if len(p.retriesOf("Apply")) != 2 || p.ran("Verify") {
		t.Fatalf("apply retried %d times, verify ran %v", len(p.retriesOf("Apply")), p.ran("Verify"))
	}
	for _, r := range p.retriesOf("Apply") {
		if numOf(r, "rc") != 75 || errCodeOf(reportOf(t, r)) != "LOCK_HELD" {
			t.Fatalf("retried run: rc %d %v", numOf(r, "rc"), reportOf(t, r)["msg"])
		}
	}
	if _, _, failures := p.stats(t); failures != 1 {
		t.Fatal("want one failure")
	}
	if v, _ := s.client.Get(context.Background(), lock.Key(s.seed.Prefix())).Result(); v != token {
		t.Fatalf("the foreign lock was touched: %q", v)
	}
}

// TestMigrationFailureIsNotRetried: a tenant whose created_at is not a
// timestamp makes redis/002 fail (exit 4); that is not retried.
func TestAnsibleMigrationFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	s := newStores(t, false)
	if err := s.client.HSet(context.Background(), "tenant:broken", "id", "broken", "created_at", "the day before yesterday").Err(); err != nil {
		t.Fatal(err)
	}
	p := playbook(t, []string{outpostBinary(t)}, s.env, map[string]any{"outpost_scope_flags": []string{"--redis-only"}})
	checkStep(t, p.final(t, "Plan"), "ok", 2, "pending", true)
	apply := p.final(t, "Apply")
	rep := checkStep(t, apply, "failed", 4, "failed", reportOf(t, apply)["changed"] == true)
	if p.exitCode == 0 || errCodeOf(rep) != "MIGRATION_FAILED" || len(p.retriesOf("Apply")) != 0 || numOf(apply, "attempts") != 1 {
		t.Fatalf("exit %d error %s retries %d", p.exitCode, errCodeOf(rep), len(p.retriesOf("Apply")))
	}
	if !strings.Contains(fmt.Sprint(rep["migrations"]), "tenant:{broken}:tenant") {
		t.Fatalf("the report does not name the key that failed: %v", rep["migrations"])
	}
	if p.ran("Verify") {
		t.Fatal("verify ran after a failed apply")
	}
}

// TestDriftFailsThePlay: after a good migration someone strips a migrated
// field; plan finds nothing to apply and verify fails the play with 3.
func TestAnsibleDriftFailsThePlay(t *testing.T) {
	t.Parallel()
	s := newStores(t, false)
	if code, rep := outpost(t, s.env, "migrate", "apply", "--redis-only", "--yes", "--output", "json"); code != 0 {
		t.Fatalf("apply: exit %d: %v", code, rep["msg"])
	}
	ctx := context.Background()
	var victim string
	iter := s.client.Scan(ctx, 0, "tenant:{*}:tenant", 100).Iterator()
	for victim == "" && iter.Next(ctx) {
		if ok, _ := s.client.HExists(ctx, iter.Val(), "entity").Result(); ok {
			victim = iter.Val()
		}
	}
	if victim == "" {
		t.Fatal("no migrated tenant hash to damage")
	}
	if err := s.client.HDel(ctx, victim, "entity").Err(); err != nil {
		t.Fatal(err)
	}
	p := playbook(t, []string{outpostBinary(t)}, s.env, map[string]any{"outpost_scope_flags": []string{"--redis-only"}})
	if apply := p.final(t, "Apply"); apply.Event != "skipped" {
		t.Fatalf("apply ran: %+v", apply)
	}
	rep := checkStep(t, p.final(t, "Verify"), "failed", 3, "drift", false)
	if p.exitCode == 0 || errCodeOf(rep) != "DRIFT" || !strings.Contains(fmt.Sprint(rep["migrations"]), victim) {
		t.Fatalf("exit %d error %s; the report should name %s:\n%v", p.exitCode, errCodeOf(rep), victim, rep["migrations"])
	}
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	return port
}

func TestAnsiblePlanFailures(t *testing.T) {
	t.Parallel()
	bin := outpostBinary(t)

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		// A store that does not answer: 69, retryable, but plan is not
		// retried and nothing else runs.
		p := playbook(t, []string{bin}, map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": closedPort(t)},
			map[string]any{"outpost_scope_flags": []string{"--redis-only"}})
		rep := checkStep(t, p.final(t, "Plan"), "failed", 69, "unreachable", false)
		if p.exitCode == 0 || errCodeOf(rep) != "STORE_UNREACHABLE" || p.ran("Apply") {
			t.Fatalf("exit %d error %s apply ran %v", p.exitCode, errCodeOf(rep), p.ran("Apply"))
		}
	})

	t.Run("missing program", func(t *testing.T) {
		t.Parallel()
		p := playbook(t, []string{filepath.Join(t.TempDir(), "no-such-outpost")}, nil, nil)
		if plan := p.final(t, "Plan"); p.exitCode == 0 || plan.Event != "failed" || p.ran("Apply") {
			t.Fatalf("a missing program passed: exit %d plan %+v", p.exitCode, plan)
		}
	})

	t.Run("exit 2 without a report", func(t *testing.T) {
		t.Parallel()
		// Exit 2 without a report saying "pending" (a Go panic exits 2) is
		// a failure, not "changes pending". The real tool does not panic on
		// demand, so a script stands in for it here.
		panicky := filepath.Join(t.TempDir(), "outpost")
		script := "#!/bin/sh\necho 'panic: runtime error: invalid memory address' >&2\nexit 2\n"
		if err := os.WriteFile(panicky, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		p := playbook(t, []string{panicky}, nil, nil)
		if plan := p.final(t, "Plan"); p.exitCode == 0 || plan.Event != "failed" || numOf(plan, "rc") != 2 || p.ran("Apply") {
			t.Fatalf("exit 2 without a report passed: exit %d plan %+v", p.exitCode, plan)
		}
	})
}
