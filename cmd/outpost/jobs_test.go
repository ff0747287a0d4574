package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/nomadrun"
	"github.com/outpost-migrate/outpost/jobs/nomadrun/nomadtest"
	"github.com/outpost-migrate/outpost/jobs/nomadspecs"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
)

// jobsStores starts a real Redis holding v0 Outpost data (seed.Write) and a
// fresh PostgreSQL database, and returns the tool's environment for both.
func jobsStores(t *testing.T) (map[string]string, *servertest.RedisServer) {
	t.Helper()
	srv := servertest.Redis(t)
	o := seed.DefaultOptions()
	o.Tenants = 40
	o.UnrelatedKeys = 10
	_, err := seed.Write(context.Background(), srv.Client(t), o)
	require.NoError(t, err)
	envs := redisEnv(srv)
	envs["POSTGRES_URL"] = servertest.Postgres(t).URL
	return envs, srv
}

// jobsTaskRun is one run of a task by the fake Nomad.
type jobsTaskRun struct {
	args   []string
	code   int
	stdout string
}

// jobsTask runs a Nomad task the way a Nomad client would run the image
// (entrypoint `outpost`): the task's args, with the job's meta interpolated,
// through the real command in-process, with envs as its environment (what
// the recipes' Nomad Variables template provides). Each run is recorded.
func jobsTask(t *testing.T, envs map[string]string) (nomadtest.Task, func() []jobsTaskRun) {
	var (
		mu   sync.Mutex
		runs []jobsTaskRun
	)
	task := func(j *api.Job, task *api.Task) (int, string, string) {
		args, err := nomadspecs.Args(task)
		if err != nil {
			t.Errorf("task args: %v", err)
			return 1, "", err.Error()
		}
		args = nomadtest.Interpolate(j, args)
		r := runMain(envs, env{args: args})
		mu.Lock()
		runs = append(runs, jobsTaskRun{args: args, code: r.code, stdout: r.stdout})
		mu.Unlock()
		return r.code, r.stdout, r.stderr
	}
	return task, func() []jobsTaskRun {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(runs)
	}
}

// TestJobsNomadRunRelaysTheReport runs `outpost jobs nomad run` through the
// CLI against the fake Nomad, whose task runs the real migration on real
// stores: the task's report is printed byte for byte and its exit code is
// the command's, for a successful apply (0), a rerun with nothing to do (0)
// and an apply that finds Outpost's lock held (75).
func TestJobsNomadRunRelaysTheReport(t *testing.T) {
	envs, srv := jobsStores(t)
	task, runs := jobsTask(t, envs)
	fake := nomadtest.New(t, nomadtest.Exec(task))
	nomad := []string{"jobs", "nomad", "run", "--addr", fake.URL(), "--timeout", "2m"}

	r := run(t, nil, append(nomad, "--job", "migrate-apply")...)
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Len(t, runs(), 1)
	first := runs()[0]
	require.Equal(t, []string{"migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "1h", "--output", "json"}, first.args)
	require.Equal(t, 0, first.code)
	require.Equal(t, lastLine(first.stdout), lastLine(r.stdout), "the task's report is relayed byte for byte")
	require.Equal(t, report.KindApply, r.rep["kind"])
	require.Equal(t, report.OutcomeApplied, r.rep["outcome"])
	require.Equal(t, true, r.rep["changed"])
	require.Contains(t, r.stderr, "registered job outpost-migrate")
	reg := fake.Registered()
	require.Len(t, reg, 1)
	require.NotEmpty(t, reg[0].Meta[nomadrun.RunIDMeta])

	// The rerun registers a new version, so Nomad places a new allocation
	// whose report says there was nothing to do.
	r = run(t, nil, append(nomad, "--job", "migrate-apply")...)
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Len(t, runs(), 2)
	require.Equal(t, lastLine(runs()[1].stdout), lastLine(r.stdout))
	require.Equal(t, report.OutcomeUpToDate, r.rep["outcome"])
	require.Equal(t, false, r.rep["changed"])

	// Outpost's own migrator holds the lock (SET NX EX with a bare token).
	// migrate-apply would wait 10 minutes for it; the parameterized job
	// takes the wait as meta, so the task gives up after a second with 75.
	c := srv.Client(t)
	key := lock.Key("")
	require.NoError(t, c.SetNX(context.Background(), key, "0f1e2d3c4b5a69788796a5b4c3d2e1f0", time.Minute).Err())
	r = run(t, nil, append(nomad, "--job", "migrate-param", "--meta", "command=apply", "--meta", "lock_timeout=1s")...)
	require.Equal(t, 75, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Len(t, runs(), 3)
	third := runs()[2]
	require.Equal(t, []string{"migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "1s", "--max-runtime", "1h", "--output", "json"}, third.args)
	require.Equal(t, 75, third.code)
	require.Equal(t, lastLine(third.stdout), lastLine(r.stdout))
	require.Equal(t, report.KindApply, r.rep["kind"])
	require.Equal(t, "LOCK_HELD", errorCode(r))
	require.Equal(t, true, r.rep["error"].(map[string]any)["retryable"])
	require.Equal(t, true, r.rep["lock"].(map[string]any)["foreign"])
	d := fake.Dispatches()
	require.Len(t, d, 1)
	require.Equal(t, map[string]string{"command": "apply", "lock_timeout": "1s"}, d[0].Meta)
	held, err := c.Get(context.Background(), key).Result()
	require.NoError(t, err)
	require.Equal(t, "0f1e2d3c4b5a69788796a5b4c3d2e1f0", held, "the foreign lock must be left alone")
}

// TestJobsNomadRunOwnReport: when there is no task report to relay (Nomad
// down), the command prints its own JobRunReport with the runner's code.
func TestJobsNomadRunOwnReport(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	r := run(t, nil, "jobs", "nomad", "run", "--addr", addr, "--timeout", "30s")
	require.Equal(t, 69, r.code)
	require.Equal(t, report.KindJobRun, r.rep["kind"])
	require.Equal(t, "STORE_UNREACHABLE", errorCode(r))

	r = run(t, nil, "jobs", "nomad", "run", "--addr", addr, "--job", "migrate-param", "--meta", "command=drop")
	require.Equal(t, 64, r.code)
	require.Equal(t, "USAGE", errorCode(r))
}

// jobsRunLogged is run() with a termination log, as main() sets it from
// OUTPOST_TERMINATION_LOG or /dev/termination-log.
func jobsRunLogged(t *testing.T, logPath string, envs map[string]string, args ...string) *result {
	t.Helper()
	r := runMain(envs, env{args: args, terminationLog: logPath})
	checkReport(t, r)
	return r
}

// jobsSummary is the line the termination log must hold for r's report.
func jobsSummary(t *testing.T, r *result) string {
	t.Helper()
	var rep report.Report
	require.NoError(t, json.Unmarshal([]byte(lastLine(r.stdout)), &rep))
	return batch.Describe(&rep) + "\n"
}

// TestJobsTerminationLog: Kubernetes shows /dev/termination-log under
// "Message" in `kubectl describe pod`; every command writes its one-line
// summary there, failing or not.
func TestJobsTerminationLog(t *testing.T) {
	srv := servertest.Redis(t)
	logPath := filepath.Join(t.TempDir(), "termination-log")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(l.Addr().(*net.TCPAddr).Port)}
	require.NoError(t, l.Close())
	r := jobsRunLogged(t, logPath, closed, "migrate", "apply", "--redis-only", "--yes", "--output", "json")
	require.Equal(t, 69, r.code)
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Equal(t, jobsSummary(t, r), string(b))
	require.Contains(t, string(b), "outpost migrate apply: unreachable (exit 69)")
	require.Contains(t, string(b), "[STORE_UNREACHABLE]")

	// A succeeding command replaces the summary.
	r = jobsRunLogged(t, logPath, redisEnv(srv), "migrate", "status", "--redis-only", "--output", "json")
	require.Equal(t, 0, r.code)
	b, err = os.ReadFile(logPath)
	require.NoError(t, err)
	require.Equal(t, jobsSummary(t, r), string(b))
	require.Contains(t, string(b), "(exit 0)")
	require.Equal(t, 1, strings.Count(string(b), "\n"), "one line")

	// main() takes the path from OUTPOST_TERMINATION_LOG.
	require.Equal(t, "/x/y", terminationLogPath(func(k string) (string, bool) {
		return map[string]string{"OUTPOST_TERMINATION_LOG": "/x/y"}[k], k == "OUTPOST_TERMINATION_LOG"
	}))
	binLog := filepath.Join(t.TempDir(), "termination-log")
	cmd := exec.Command(binary(t), "migrate", "plan", "--redis-only", "--output", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_HOST=" + srv.Host, "REDIS_PORT=" + itoa(srv.Port), "OUTPOST_TERMINATION_LOG=" + binLog}
	out, err := cmd.Output()
	require.NoError(t, err)
	b, err = os.ReadFile(binLog)
	require.NoError(t, err)
	require.Equal(t, jobsSummary(t, &result{stdout: string(out)}), string(b))
}

// jobsRecipe is one command line that a shipped recipe runs.
type jobsRecipe struct {
	name string
	args []string
}

// jobsRecipes lists the `outpost` argument lists that the shipped recipes
// run: every embedded Nomad job (the parameterized one with each dispatch
// command and its default lock_timeout), the Kubernetes Job and init
// container, and the Compose migration service.
func jobsRecipes(t *testing.T) []jobsRecipe {
	t.Helper()
	var out []jobsRecipe
	for _, name := range nomadspecs.Names() {
		b, err := nomadspecs.JSON(name)
		require.NoError(t, err)
		job, err := nomadspecs.Decode(b)
		require.NoError(t, err, name)
		_, task, err := nomadspecs.MigrationTask(job, "")
		require.NoError(t, err, name)
		args, err := nomadspecs.Args(task)
		require.NoError(t, err, name)
		if !job.IsParameterized() {
			out = append(out, jobsRecipe{"nomad/" + name, args})
			continue
		}
		require.Contains(t, args, nomadspecs.MetaCommand, name)
		for _, c := range nomadspecs.DispatchCommands {
			child := &api.Job{Meta: maps.Clone(job.Meta)}
			if child.Meta == nil {
				child.Meta = map[string]string{}
			}
			child.Meta["command"] = c
			out = append(out, jobsRecipe{"nomad/" + name + " command=" + c, nomadtest.Interpolate(child, args)})
		}
	}

	// Kubernetes and Compose: the container's args (or its command, minus
	// the `outpost` entrypoint).
	type container struct {
		Name    string   `yaml:"name"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
	}
	var k8s struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers     []container `yaml:"containers"`
					InitContainers []container `yaml:"initContainers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	for _, f := range []string{"job.yaml", "deployment-initcontainer.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "jobs", "kubernetes", f))
		require.NoError(t, err)
		k8s.Spec.Template.Spec.Containers, k8s.Spec.Template.Spec.InitContainers = nil, nil
		require.NoError(t, yaml.Unmarshal(b, &k8s), f)
		for _, c := range append(k8s.Spec.Template.Spec.InitContainers, k8s.Spec.Template.Spec.Containers...) {
			argv := append(slices.Clone(c.Command), c.Args...)
			if len(argv) > 0 && argv[0] == "outpost" {
				argv = argv[1:]
			}
			if len(argv) > 0 && argv[0] == "migrate" {
				out = append(out, jobsRecipe{"kubernetes/" + f + " " + c.Name, argv})
			}
		}
	}
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "jobs", "compose", "docker-compose.yml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &compose))
	for name, s := range compose.Services {
		if len(s.Command) > 0 && s.Command[0] == "migrate" {
			out = append(out, jobsRecipe{"compose/" + name, s.Command})
		}
	}
	return out
}

// TestRecipeArgsParse runs every recipe's command line through the CLI
// against real stores (both, as the recipes are shipped): none is a usage
// error, and on healthy stores every one succeeds.
func TestRecipeArgsParse(t *testing.T) {
	recipes := jobsRecipes(t)
	var names []string
	for _, r := range recipes {
		names = append(names, r.name)
	}
	// Every kind of recipe was found, and every dispatch command.
	for _, want := range []string{"nomad/migrate-apply", "nomad/outpost-service", "kubernetes/job.yaml migrate", "kubernetes/deployment-initcontainer.yaml migrate", "compose/outpost-migrate"} {
		require.Contains(t, names, want)
	}
	for _, c := range nomadspecs.DispatchCommands {
		require.Contains(t, names, "nomad/migrate-param command="+c)
	}

	envs, _ := jobsStores(t)
	for _, rc := range recipes {
		r := run(t, envs, rc.args...)
		require.NotEqual(t, report.ExitUsage, r.code, "%s: %s\n%s", rc.name, strings.Join(rc.args, " "), r.stdout)
		require.Equal(t, 0, r.code, "%s: %s: %v", rc.name, strings.Join(rc.args, " "), r.rep["msg"])
		require.Equal(t, rc.args[1], r.rep["command"], rc.name)
	}
}

// TestRecipeFlagsOnEveryMigrateCommand: the flags the recipes pass to any
// command (--yes, --lock-timeout, --output json, --max-runtime) belong to
// `migrate`, so every migrate subcommand accepts them, before or after its
// own arguments.
func TestRecipeFlagsOnEveryMigrateCommand(t *testing.T) {
	envs, _ := jobsStores(t)
	flags := []string{"--yes", "--lock-timeout", "5s", "--output", "json", "--max-runtime", "10m"}
	for _, args := range [][]string{
		{"migrate", "list"},
		{"migrate", "plan"},
		{"migrate", "apply"},
		{"migrate", "verify"},
		{"migrate", "status"},
		{"migrate", "cleanup"},
		{"migrate", "unlock"},
		{"migrate", "schema", "progress"},
		{"migrate", "force", "10"},
	} {
		for _, argv := range [][]string{
			append(slices.Clone(args), flags...),
			append(append([]string{"migrate"}, flags...), args[1:]...),
		} {
			r := run(t, envs, argv...)
			require.NotEqual(t, report.ExitUsage, r.code, "%s: %v", strings.Join(argv, " "), r.rep["msg"])
			require.Equal(t, args[1], r.rep["command"], fmt.Sprint(argv))
		}
	}
}
