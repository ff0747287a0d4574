package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// runIn runs the real binary in dir with only envs (and PATH) as its
// environment, stdin as given, and checks its report.
func runIn(t *testing.T, dir string, envs map[string]string, stdin string, args ...string) *result {
	t.Helper()
	r := runInRaw(t, dir, envs, stdin, args...)
	checkReport(t, r)
	return r
}

// runInRaw is runIn without the report check (text output).
func runInRaw(t *testing.T, dir string, envs map[string]string, stdin string, args ...string) *result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		require.NoError(t, err)
	}
	return &result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// targetsOf is the report's targets.
func targetsOf(r *result) map[string]any { return r.rep["targets"].(map[string]any) }

// requireSQLSkipped: no log store configured, so the SQL phase is skipped
// and says so, as in Outpost's own migrate.
func requireSQLSkipped(t *testing.T, r *result) {
	t.Helper()
	tg := targetsOf(r)
	require.Equal(t, []any{"redis"}, tg["scope"], r.stdout)
	require.Equal(t, report.SQLNotConfigured, tg["sql"].(map[string]any)["state"], r.stdout)
	require.Contains(t, r.stderr, "the SQL phase is skipped")
}

const guidePassword = "guide-Pa55"

// TestGuideApplyCommands runs `outpost migrate apply --yes` as each
// deployment pattern of the user guide writes it, through the binary,
// against a password-protected Redis holding a legacy keyspace: the
// environment only (the SSH host, `kubectl run`, the Kubernetes init
// container's envFrom, the CI step's --env-file), a .env file in the
// working directory (Docker Compose's env_file: Outpost reads ./.env), the
// port-forwarding example (REDIS_PORT given), the guide's YAML shape with
// --config, and the guide's environment block with REDIS_CLUSTER_ENABLED
// against a cluster. No POSTGRES_URL anywhere: each exits 0 with every key
// migrated and the SQL phase visibly skipped.
//
// The guide's hosts (redis.internal, host.docker.internal) and its default
// port are the test server's loopback address and port: the only change.
func TestGuideApplyCommands(t *testing.T) {
	apply := []string{"migrate", "apply", "--yes"}
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string, host string, port int) (map[string]string, []string)
	}{
		{"ssh host, kubectl run, init container, CI --env-file: environment only", func(t *testing.T, dir, host string, port int) (map[string]string, []string) {
			// -e REDIS_HOST=redis.internal -e REDIS_PASSWORD=... (the port: the server's)
			return map[string]string{"REDIS_HOST": host, "REDIS_PASSWORD": guidePassword, "REDIS_PORT": itoa(port)}, apply
		}},
		{"port forwarding: REDIS_HOST and REDIS_PORT", func(t *testing.T, dir, host string, port int) (map[string]string, []string) {
			return map[string]string{"REDIS_HOST": host, "REDIS_PORT": itoa(port), "REDIS_PASSWORD": guidePassword}, apply
		}},
		{"docker compose env_file: .env in the working directory", func(t *testing.T, dir, host string, port int) (map[string]string, []string) {
			writeIn(t, dir, ".env", "REDIS_HOST="+host+"\nREDIS_PORT="+itoa(port)+"\nREDIS_PASSWORD="+guidePassword+"\n")
			return nil, apply
		}},
		{"the guide's environment block", func(t *testing.T, dir, host string, port int) (map[string]string, []string) {
			return map[string]string{"REDIS_HOST": host, "REDIS_PORT": itoa(port), "REDIS_PASSWORD": guidePassword, "REDIS_DATABASE": "0"}, apply
		}},
		{"the guide's configuration file with --config", func(t *testing.T, dir, host string, port int) (map[string]string, []string) {
			p := writeIn(t, dir, "outpost.yaml", "redis:\n  host: "+host+"\n  port: "+itoa(port)+"\n  password: "+guidePassword+"\n  cluster_enabled: false\n")
			return nil, append([]string{"--config", p}, apply...)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := servertest.Redis(t, servertest.WithPassword(guidePassword))
			client := srv.Client(t)
			o := seedTenants(t, client, 30)
			dir := t.TempDir()
			envs, args := c.setup(t, dir, srv.Host, srv.Port)
			r := runIn(t, dir, envs, "", args...)
			require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
			require.Equal(t, "applied", r.rep["outcome"])
			requireSQLSkipped(t, r)
			requireMigrated(t, client, o)
		})
	}
	t.Run("the guide's environment block on a cluster", func(t *testing.T) {
		cl := servertest.RedisCluster(t, servertest.WithPassword(guidePassword))
		client := cl.Client(t)
		o := seedTenants(t, client, 30)
		envs := map[string]string{"REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0]), "REDIS_PASSWORD": guidePassword,
			"REDIS_DATABASE": "0", "REDIS_CLUSTER_ENABLED": "true"}
		r := runIn(t, t.TempDir(), envs, "", apply...)
		require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
		require.Equal(t, "cluster", targetsOf(r)["redis"].(map[string]any)["mode"])
		requireSQLSkipped(t, r)
		requireMigrated(t, client, o)

		// As in Outpost, the database means nothing on a cluster: a
		// warning, and database 0.
		envs["REDIS_DATABASE"] = "2"
		r = runIn(t, t.TempDir(), envs, "", "migrate", "verify")
		require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stderr, "a Redis Cluster has only database 0")
		require.EqualValues(t, 0, targetsOf(r)["redis"].(map[string]any)["database"])
	})
}

// TestGuideManualSteps follows the guide's manual migration and its
// troubleshooting, command by command, through the binary with the
// environment only: --version, plan, apply at a terminal (-it, answering
// y), verify, status, unlock --yes. Each exits 0; apply migrates every key.
func TestGuideManualSteps(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithPassword(guidePassword))
	client := srv.Client(t)
	o := seedTenants(t, client, 30)
	envs := map[string]string{"REDIS_HOST": srv.Host, "REDIS_PORT": itoa(srv.Port), "REDIS_PASSWORD": guidePassword}
	dir := t.TempDir()

	out, err := exec.Command(binary(t), "--version").Output()
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(out), "\n"), "the version alone: %q", out)

	plan := runIn(t, dir, envs, "", "migrate", "plan")
	require.Equal(t, 0, plan.code, plan.stdout)
	require.Equal(t, "pending", plan.rep["outcome"])
	requireSQLSkipped(t, plan)

	applyAtATerminal(t, dir, envs)
	requireMigrated(t, client, o)

	for _, args := range [][]string{{"migrate", "verify"}, {"migrate", "status"}, {"migrate", "unlock", "--yes"}} {
		r := runIn(t, dir, envs, "", args...)
		require.Equal(t, 0, r.code, "%v: %s\n%s", args, r.stdout, r.stderr)
	}
	requireMigrated(t, client, o)
}

// applyAtATerminal runs `outpost migrate apply` on a pseudo-terminal
// (util-linux script(1), as `docker run -it` gives one) and answers y.
func applyAtATerminal(t *testing.T, dir string, envs map[string]string) {
	t.Helper()
	script, err := exec.LookPath("script")
	require.NoError(t, err, "script(1) from util-linux gives the binary a terminal")
	cmd := exec.Command(script, "-qec", binary(t)+" migrate apply --output json", "/dev/null")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TERM=dumb"}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader("y\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "Apply 3 pending migrations to redis")
	line := lastLine(strings.ReplaceAll(string(out), "\r", ""))
	r := &result{code: 0, stdout: line}
	checkReport(t, r)
	require.Equal(t, "applied", r.rep["outcome"])
}

func writeIn(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}
