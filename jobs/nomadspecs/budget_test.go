package nomadspecs

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	recipetest.Cleanup()
	os.Exit(code)
}

// metaRef is a Nomad interpolation of dispatch meta in a task's args.
var metaRef = regexp.MustCompile(`\$\{NOMAD_META_([a-z_]+)\}`)

// commandLines returns what each recipe's migration task runs: one for a
// plain job, one per dispatch command (with the job's meta defaults) for the
// parameterized one.
func commandLines(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range Names() {
		job := mustJob(t, name)
		_, task, err := MigrationTask(job, "")
		if err != nil {
			t.Fatal(err)
		}
		args, _ := Args(task)
		if !job.IsParameterized() {
			out[name] = args
			continue
		}
		for _, c := range DispatchCommands {
			meta := map[string]string{"command": c}
			for k, v := range job.Meta {
				meta[k] = v
			}
			line := make([]string, len(args))
			for i, a := range args {
				line[i] = metaRef.ReplaceAllStringFunc(a, func(m string) string {
					v, ok := meta[metaRef.FindStringSubmatch(m)[1]]
					if !ok {
						t.Fatalf("%s: %s has no default", name, m)
					}
					return v
				})
			}
			out[name+" command="+c] = line
		}
	}
	return out
}

// TestNomadRecipesParseWithTheRealBinary: every command line a Nomad recipe
// runs carries --wait-for and parses with the real binary's flags.
func TestNomadRecipesParseWithTheRealBinary(t *testing.T) {
	lines := commandLines(t)
	if len(lines) != 2+len(DispatchCommands) {
		t.Fatalf("found %d command lines", len(lines))
	}
	for name, argv := range lines {
		recipetest.CheckParses(t, name, argv)
	}
}

// killTimeout is the grace Nomad gives a stopping task.
func killTimeout(task *api.Task) time.Duration {
	if task.KillTimeout == nil {
		return 5 * time.Second // Nomad's default
	}
	return *task.KillTimeout
}

// TestNomadDeadlinesFitTheBudget: each recipe's deadline exceeds the
// longest run its command line allows, and not by more than a quarter of an
// hour (a deadline far above it is not "fitted"): the service job's
// healthy_deadline, and for the batch jobs the `outpost jobs nomad run
// --timeout` their comments recommend (Nomad has no deadline for a batch
// task).
func TestNomadDeadlinesFitTheBudget(t *testing.T) {
	lines := commandLines(t)
	fits := func(name string, deadline time.Duration, b recipetest.Budget) {
		t.Helper()
		if deadline < b.Total() || deadline > b.Total()+15*time.Minute {
			t.Errorf("%s: deadline %s does not fit %s", name, deadline, b)
		}
	}
	for name, argv := range lines {
		job := mustJob(t, strings.Fields(name)[0])
		_, task, _ := MigrationTask(job, "")
		b, err := recipetest.BudgetOf(argv, killTimeout(task))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if *job.Type == "service" {
			u := job.TaskGroups[0].Update
			if u == nil || u.HealthyDeadline == nil || u.ProgressDeadline == nil {
				t.Fatalf("%s: no update block with healthy_deadline and progress_deadline (Nomad's defaults, 5m and 10m, cut a migration short)", name)
			}
			fits(name+" healthy_deadline", *u.HealthyDeadline, b)
			if *u.ProgressDeadline <= *u.HealthyDeadline {
				t.Errorf("%s: progress_deadline %s must exceed healthy_deadline %s", name, *u.ProgressDeadline, *u.HealthyDeadline)
			}
			continue
		}
		src, _ := HCL(strings.Fields(name)[0])
		m := regexp.MustCompile(`outpost jobs nomad run [^\n]*--timeout (\S+)`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("%s: the comment recommends no `outpost jobs nomad run --timeout`", name)
		}
		d, err := time.ParseDuration(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		fits(name+" --timeout", d, b)
	}
}
