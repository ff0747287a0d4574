package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
	"github.com/outpost-migrate/outpost/schemas"
)

func TestVersion(t *testing.T) {
	r := run(t, nil, "version")
	require.Equal(t, 0, r.code)
	require.Equal(t, "VersionReport", r.rep["kind"])
	require.Equal(t, "printed", r.rep["outcome"])

	// --version prints the version alone on one line, no report, exit 0.
	bin := binary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err)
	require.Equal(t, r.rep["tool"].(map[string]any)["version"].(string)+"\n", string(out))
	// A stamp still takes (the variable keeps a constant initializer).
	stamped := filepath.Join(t.TempDir(), "outpost")
	out, err = exec.Command("go", "build", "-ldflags", "-X main.version=v1.2.3", "-o", stamped, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = exec.Command(stamped, "--version").CombinedOutput()
	require.NoError(t, err)
	require.Equal(t, "v1.2.3\n", string(out))
}

// TestModuleVersion: an unstamped build takes the module version from the
// build info (what `go install …@v1.2.3` records); a stamp wins.
func TestModuleVersion(t *testing.T) {
	info := func(v string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Main: debug.Module{Version: v}}, true }
	}
	require.Equal(t, "v1.4.0", moduleVersion("dev", info("v1.4.0")))
	require.Equal(t, "v0.0.0-20261206031500-e212a56d3f1a", moduleVersion("dev", info("v0.0.0-20261206031500-e212a56d3f1a")))
	require.Equal(t, "dev", moduleVersion("dev", info("(devel)")))
	require.Equal(t, "dev", moduleVersion("dev", func() (*debug.BuildInfo, bool) { return nil, false }))
	require.Equal(t, "v2.0.0", moduleVersion("v2.0.0", info("v1.4.0")))
}

func TestSchemaCommand(t *testing.T) {
	r := run(t, nil, "migrate", "schema")
	require.Equal(t, 0, r.code)
	extra := r.rep["extra"].(map[string]any)
	all := extra["schemas"].(map[string]any)
	require.Len(t, all, len(schemas.Names()))
	// Every printed schema compiles on its own $id with the others.
	c, err := report.Compiler()
	require.NoError(t, err)
	for name, s := range all {
		require.Equal(t, schemas.ID(name), s.(map[string]any)["$id"])
		_, err := c.Compile(schemas.ID(name))
		require.NoError(t, err, name)
	}
	one := run(t, nil, "migrate", "schema", "apply")
	require.Len(t, one.rep["extra"].(map[string]any)["schemas"], 1)

	bad := run(t, nil, "migrate", "schema", "nope")
	require.Equal(t, 64, bad.code)
	require.Equal(t, "USAGE", errorCode(bad))

	raw, err := exec.Command(binary(t), "migrate", "schema", "progress", "--raw").Output()
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(raw, &v))
	require.Equal(t, schemas.ID("progress"), v["$id"])
}

func TestUsageErrors(t *testing.T) {
	r := run(t, nil, "migrate", "status", "--bogus-flag")
	require.Equal(t, 64, r.code)
	require.Equal(t, "USAGE", errorCode(r))
	require.Equal(t, "invalid_usage", r.rep["outcome"])

	r = run(t, nil, "--bogus-flag")
	require.Equal(t, 64, r.code)
	require.Equal(t, "ErrorReport", r.rep["kind"])

	r = run(t, nil, "migrate", "frobnicate")
	require.Equal(t, 64, r.code)

	r = run(t, nil)
	require.Equal(t, 64, r.code)

	r = run(t, nil, "migrate", "plan", "--sql-only", "--redis-only")
	require.Equal(t, 64, r.code)

	r = run(t, nil, "migrate", "verify", "--sample", "-3", "--redis-only")
	require.Equal(t, 64, r.code)
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	cases := []struct {
		name    string
		envs    map[string]string
		args    []string
		setting string
		msg     string
	}{
		{"missing file", nil, []string{"--config", "/nonexistent/outpost.yaml"}, "config", "cannot read"},
		{"yaml syntax", nil, []string{"--config", write("bad.yaml", "redis:\n  host: [oops\n")}, "config", "line"},
		{"yaml wrong type", nil, []string{"--config", write("type.yaml", "redis:\n  port: {a: 1}\n")}, "redis.port", "line 2"},
		{"yaml unknown redis setting", nil, []string{"--config", write("unk.yaml", "redis:\n  hots: x\n")}, "redis.hots", "line 2"},
		{"bad dotenv", nil, []string{"--config", write("x.env", "REDIS_PORT='unterminated\n")}, "config", ".env"},
		{"port not a number", map[string]string{"REDIS_PORT": "abc"}, nil, "redis.port", "not a port"},
		{"port flag", nil, []string{"--redis-port", "99999"}, "redis.port", "not a port"},
		{"bad bool", map[string]string{"REDIS_TLS_ENABLED": "maybe"}, nil, "redis.tls_enabled", "boolean"},
		{"bad postgres url", map[string]string{"POSTGRES_URL": "mysql://x"}, nil, "postgres", "postgres://"},
		{"sql-only without a log store", nil, []string{"--sql-only"}, "postgres", "POSTGRES_URL"},
		{"host with a port", map[string]string{"REDIS_HOST": "127.0.0.1:6379"}, nil, "redis.host", "includes a port"},
		{"config and CONFIG differ", map[string]string{"CONFIG": write("one.yaml", "")}, []string{"--config", write("two.yaml", "")}, "config", "different config files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var args, tail []string
			for _, a := range c.args {
				if a == "--sql-only" { // a migrate flag: after the command
					tail = append(tail, a)
					continue
				}
				args = append(args, a)
			}
			args = append(append(args, "migrate", "status"), tail...)
			r := run(t, c.envs, args...)
			require.Equal(t, 78, r.code, r.stdout)
			require.Equal(t, "CONFIG_INVALID", errorCode(r))
			e := r.rep["error"].(map[string]any)
			require.Contains(t, e["message"], c.msg)
			require.Equal(t, c.setting, e["details"].(map[string]any)["setting"])
		})
	}
}

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	srv := servertest.Redis(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "outpost.yaml")
	// The file points to a closed port; env overrides the port; the flag
	// overrides the host.
	require.NoError(t, os.WriteFile(cfg, []byte("redis:\n  host: 192.0.2.1\n  port: 1\n"), 0o600))
	r := run(t, map[string]string{"REDIS_PORT": itoa(srv.Port), "REDIS_HOST": "192.0.2.1"}, "--config", cfg, "--redis-host", "127.0.0.1", "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "127.0.0.1:"+itoa(srv.Port), r.rep["targets"].(map[string]any)["redis"].(map[string]any)["addr"])
	// CONFIG names the file too.
	r = run(t, map[string]string{"CONFIG": cfg, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(srv.Port)}, "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code)
	// A .env file works as a config file.
	envFile := filepath.Join(dir, "prod.env")
	require.NoError(t, os.WriteFile(envFile, []byte("REDIS_HOST=127.0.0.1\nREDIS_PORT="+itoa(srv.Port)+"\n"), 0o600))
	r = run(t, nil, "--config", envFile, "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
}

func TestRedisUnreachable(t *testing.T) {
	srv := servertest.Redis(t)
	port := srv.Port
	srv.Stop(t)
	r := run(t, map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(port)}, "migrate", "status", "--output", "json", "--redis-only")
	require.Equal(t, 69, r.code)
	require.Equal(t, "STORE_UNREACHABLE", errorCode(r))
	require.Equal(t, true, r.rep["error"].(map[string]any)["retryable"])
	require.Equal(t, "unreachable", r.rep["outcome"])
}

func TestApplyWithoutYesAndTerminalChangesNothing(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	before, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)

	// A real process with a pipe on stdin: `echo | outpost migrate apply`.
	cmd := exec.Command(binary(t), "migrate", "apply", "--redis-only")
	cmd.Env = []string{"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + itoa(srv.Port), "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader("\n")
	out, _ := cmd.Output()
	r := &result{code: cmd.ProcessState.ExitCode(), stdout: string(out)}
	checkReport(t, r)
	require.Equal(t, 64, r.code)
	require.Equal(t, "CONFIRMATION_REQUIRED", errorCode(r))
	after, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, before, after, "no key may be written, not even the lock")

	for _, args := range [][]string{{"migrate", "unlock"}, {"migrate", "cleanup", "--redis-only"}} {
		r := run(t, redisEnv(srv), args...)
		require.Equal(t, 64, r.code, args)
	}
}

func TestRedisCommandsEndToEnd(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	ctx := context.Background()
	envs := redisEnv(srv)
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.HSet(ctx, "tenant:t1:destination:d1", "id", "d1", "type", "webhook", "created_at", "2025-01-02T03:04:05.5Z").Err())

	r := run(t, envs, "migrate", "list", "--redis-only")
	require.Equal(t, 0, r.code)
	require.Equal(t, "listed", r.rep["outcome"])
	require.Len(t, r.rep["migrations"], 3)

	r = run(t, envs, "migrate", "plan", "--redis-only")
	require.Equal(t, 0, r.code)
	require.Equal(t, "pending", r.rep["outcome"])
	require.Equal(t, true, r.rep["changed"])
	r = run(t, envs, "migrate", "plan", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code)
	require.Equal(t, false, r.rep["failed"])
	r = run(t, envs, "migrate", "status", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 2, r.code)
	require.Equal(t, "pending", r.rep["outcome"])

	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, "nothing applied yet: nothing to contradict")

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "applied", r.rep["outcome"])
	require.Equal(t, true, r.rep["changed"])
	require.Equal(t, "released", r.rep["lock"].(map[string]any)["state"])

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code)
	require.Equal(t, "up_to_date", r.rep["outcome"])
	require.Equal(t, false, r.rep["changed"])

	r = run(t, envs, "migrate", "status", "--redis-only", "--detailed-exitcode")
	require.Equal(t, 0, r.code)
	require.Equal(t, "up_to_date", r.rep["outcome"])
	r = run(t, envs, "migrate", "plan", "--redis-only")
	require.Equal(t, "up_to_date", r.rep["outcome"])
	require.Equal(t, false, r.rep["changed"])

	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code)
	require.Equal(t, "verified", r.rep["outcome"])

	// Drift: a twin edited by hand.
	require.NoError(t, c.HSet(ctx, "tenant:{t1}:tenant", "id", "tampered").Err())
	r = run(t, envs, "migrate", "verify", "--redis-only")
	require.Equal(t, 3, r.code)
	require.Equal(t, "DRIFT", errorCode(r))
	require.Equal(t, "drift", r.rep["outcome"])
	// Cleanup keeps what does not verify and says so.
	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 3, r.code)
	require.EqualValues(t, 1, c.Exists(ctx, "tenant:t1").Val())
	require.NoError(t, c.HSet(ctx, "tenant:{t1}:tenant", "id", "t1").Err())
	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "cleaned", r.rep["outcome"])
	require.EqualValues(t, 0, c.Exists(ctx, "tenant:t1", "tenant:t1:destination:d1").Val())
	r = run(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, "nothing_to_clean", r.rep["outcome"])

	r = run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, 0, r.code)
	require.Equal(t, "no_lock", r.rep["outcome"])
	require.Equal(t, false, r.rep["changed"])
	require.NoError(t, c.Set(ctx, ".outpost:migration_lock", "3f1c6a0e-outpost-token", 0).Err())
	r = run(t, envs, "migrate", "unlock", "--yes")
	require.Equal(t, "unlocked", r.rep["outcome"])
	require.Equal(t, true, r.rep["changed"])
	require.Equal(t, true, r.rep["lock"].(map[string]any)["foreign"])
	require.EqualValues(t, 0, c.Exists(ctx, ".outpost:migration_lock").Val())

	r = run(t, envs, "migrate", "apply", "--yes", "--redis-only", "--target", "redis/999_nope")
	require.Equal(t, 64, r.code)
}

func TestPanicIsInternalError(t *testing.T) {
	panicHook = func() { panic("boom") }
	defer func() { panicHook = nil }()
	r := run(t, nil, "version")
	require.Equal(t, 70, r.code)
	require.Equal(t, "INTERNAL", errorCode(r))
}

// TestDotenvInWorkingDirectory: like Outpost, the binary reads ./.env when
// no config file is named; the environment still wins over it.
func TestDotenvInWorkingDirectory(t *testing.T) {
	srv := servertest.Redis(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".env"), []byte("REDIS_HOST=127.0.0.1\nREDIS_PORT="+itoa(srv.Port)+"\n"), 0o600))
	cmd := exec.Command(binary(t), "migrate", "status", "--redis-only", "-o", "json")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	require.NoError(t, err, string(out))
	r := &result{code: 0, stdout: string(out)}
	checkReport(t, r)
	require.Equal(t, "127.0.0.1:"+itoa(srv.Port), r.rep["targets"].(map[string]any)["redis"].(map[string]any)["addr"])

	cmd = exec.Command(binary(t), "migrate", "status", "--redis-only", "-o", "json")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_PORT=1"}
	out, _ = cmd.Output()
	r = &result{code: cmd.ProcessState.ExitCode(), stdout: string(out)}
	checkReport(t, r)
	require.Equal(t, 69, r.code, "the environment overrides ./.env")
}
