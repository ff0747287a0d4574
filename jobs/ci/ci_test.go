// Package ci holds the CI recipes: outpost-migrate-gate.sh (plan
// --detailed-exitcode, then apply only when migrations are pending) and the
// GitHub Actions and GitLab CI examples that run it. The tests lint the
// GitHub workflow with actionlint, check both examples' deadlines and
// artifacts, and run the gate script with /bin/sh against the real binary
// and real Redis and PostgreSQL servers.
package ci

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rhysd/actionlint"
	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	servertest.StopShared()
	recipetest.Cleanup()
	os.Exit(code)
}

const gateScript = "outpost-migrate-gate.sh"

// gateDefaults reads the script's defaults: OUTPOST_X=${OUTPOST_X:-v}.
func gateDefaults(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(gateScript)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`\$\{(OUTPOST_[A-Z_]+):-([^}]*)\}`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// ciBudget is the longest a pipeline's gate can run with these settings:
// plan (2 × wait-for, it takes no lock and has no max-runtime) and then
// apply (recipetest.Budget, with grace for the CI's stop).
func ciBudget(t *testing.T, settings map[string]string, grace time.Duration) time.Duration {
	t.Helper()
	argv := []string{"migrate", "apply", "--wait-for", settings["OUTPOST_WAIT_FOR"],
		"--lock-timeout", settings["OUTPOST_LOCK_TIMEOUT"], "--max-runtime", settings["OUTPOST_MAX_RUNTIME"]}
	b, err := recipetest.BudgetOf(argv, grace)
	if err != nil {
		t.Fatal(err)
	}
	return 2*b.WaitFor + b.Total()
}

// checkFits: the CI job's timeout exceeds the gate's longest run and is
// fitted to it (not more than a quarter of an hour above).
func checkFits(t *testing.T, where string, timeout time.Duration, settings map[string]string) {
	t.Helper()
	// A cancelled GitHub step gets SIGINT, then SIGTERM 7.5 s later, then
	// is killed 2.5 s after that; GitLab is no more patient. 90 s is the
	// grace the other recipes give, and more than enough here.
	budget := ciBudget(t, settings, 90*time.Second)
	if timeout < budget || timeout > budget+15*time.Minute {
		t.Errorf("%s: timeout %s does not fit the gate's longest run %s", where, timeout, budget)
	}
}

// TestGitHubWorkflowLints runs actionlint (as a library) on the example:
// no error. Then it checks what the example must do: run the gate script
// with the bounds in its env, keep the reports whatever happened, and a job
// timeout fitted to those bounds.
func TestGitHubWorkflowLints(t *testing.T) {
	const path = "github-actions.yml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("actionlint: %s:%d:%d: %s [%s]", path, e.Line, e.Column, e.Message, e.Kind)
	}
	// The linter is not blind: a broken workflow is reported.
	broken := strings.Replace(string(b), "timeout-minutes: 60", "timeout-minutes: soon", 1)
	broken = strings.Replace(broken, "if: always()", "if: ${{ always( }}", 1)
	if errs, _ := l.Lint(path, []byte(broken), nil); len(errs) < 2 {
		t.Errorf("actionlint found %d errors in a broken workflow", len(errs))
	}

	wf, perrs := actionlint.Parse(b)
	if len(perrs) > 0 {
		t.Fatal(perrs[0])
	}
	job := wf.Jobs["migrate"]
	if job == nil || job.TimeoutMinutes == nil {
		t.Fatal("no job migrate with timeout-minutes")
	}
	env := map[string]string{}
	for _, v := range job.Env.Vars {
		env[v.Name.Value] = v.Value.Value
	}
	checkFits(t, "timeout-minutes", time.Duration(job.TimeoutMinutes.Value*float64(time.Minute)), env)
	if !strings.Contains(env["OUTPOST"], "outpost-migrate:v") || strings.Contains(env["OUTPOST"], "hookdeck/outpost") {
		t.Errorf("OUTPOST %q: run the pinned outpost-migrate image", env["OUTPOST"])
	}
	var gate, upload bool
	for _, s := range job.Steps {
		switch e := s.Exec.(type) {
		case *actionlint.ExecRun:
			gate = gate || strings.TrimSpace(e.Run.Value) == "sh jobs/ci/"+gateScript
		case *actionlint.ExecAction:
			if strings.HasPrefix(e.Uses.Value, "actions/upload-artifact@") {
				upload = s.If != nil && s.If.Value == "always()" && e.Inputs["path"].Value.Value == env["OUTPOST_REPORT_DIR"]+"/"
			}
		}
	}
	if !gate || !upload {
		t.Errorf("the job must run the gate script (%v) and upload %s/ whatever happened (%v)", gate, env["OUTPOST_REPORT_DIR"], upload)
	}
}

// TestGitLabExample: the job runs the gate script, keeps the reports
// whatever happened, runs one at a time, with a timeout fitted to its
// bounds.
func TestGitLabExample(t *testing.T) {
	b, err := os.ReadFile("gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]struct {
		Stage         string            `yaml:"stage"`
		ResourceGroup string            `yaml:"resource_group"`
		Timeout       string            `yaml:"timeout"`
		Variables     map[string]string `yaml:"variables"`
		BeforeScript  []string          `yaml:"before_script"`
		Script        []string          `yaml:"script"`
		Artifacts     struct {
			When  string   `yaml:"when"`
			Paths []string `yaml:"paths"`
		} `yaml:"artifacts"`
	}
	var stages struct {
		Stages []string `yaml:"stages"`
	}
	if err := yaml.Unmarshal(b, &stages); err != nil {
		t.Fatal(err)
	}
	trimmed := regexp.MustCompile(`(?m)^stages:\n(  - .*\n)+`).ReplaceAll(b, nil)
	if err := yaml.Unmarshal(trimmed, &doc); err != nil {
		t.Fatal(err)
	}
	j, ok := doc["outpost-migrate"]
	if !ok || len(stages.Stages) != 1 || j.Stage != stages.Stages[0] {
		t.Fatalf("no job outpost-migrate in a declared stage: %v %+v", stages, j)
	}
	if len(j.Script) != 1 || j.Script[0] != "sh jobs/ci/"+gateScript {
		t.Errorf("script %q", j.Script)
	}
	if j.Artifacts.When != "always" || len(j.Artifacts.Paths) != 1 || j.Artifacts.Paths[0] != j.Variables["OUTPOST_REPORT_DIR"]+"/" {
		t.Errorf("artifacts %+v: keep %s/ whatever happened", j.Artifacts, j.Variables["OUTPOST_REPORT_DIR"])
	}
	if j.ResourceGroup == "" {
		t.Error("no resource_group: two pipelines would migrate at once")
	}
	timeout, err := time.ParseDuration(j.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	checkFits(t, "timeout", timeout, j.Variables)
	if len(j.BeforeScript) != 1 || !strings.Contains(j.BeforeScript[0], "@${OUTPOST_MIGRATE_VERSION}") {
		t.Errorf("before_script %q must install the pinned release", j.BeforeScript)
	}
}

// TestGateScriptDefaultsFit: with no settings the gate's bounds fit the
// examples' 60-minute timeouts too.
func TestGateScriptDefaultsFit(t *testing.T) {
	d := gateDefaults(t)
	for _, k := range []string{"OUTPOST_WAIT_FOR", "OUTPOST_LOCK_TIMEOUT", "OUTPOST_MAX_RUNTIME"} {
		if d[k] == "" {
			t.Fatalf("the script has no default for %s: %v", k, d)
		}
	}
	checkFits(t, "the gate's defaults, against 60m", 60*time.Minute, d)
}
