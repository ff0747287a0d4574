package nomadspecs

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/nomad/api"
)

func mustJob(t *testing.T, name string) *api.Job {
	t.Helper()
	b, err := JSON(name)
	if err != nil {
		t.Fatal(err)
	}
	job, err := Decode(b)
	if err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return job
}

func TestEmbeddedMatchesFiles(t *testing.T) {
	want := []string{MigrateApply, MigrateParam, OutpostService}
	if got := Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, n := range want {
		for _, ext := range []string{".json", ".nomad.hcl"} {
			emb, _ := fs.ReadFile(FS(), n+ext)
			disk, err := os.ReadFile(n + ext)
			if err != nil || string(emb) != string(disk) {
				t.Errorf("%s%s: embedded copy differs from the file (err %v)", n, ext, err)
			}
		}
	}
	if _, err := JSON("nope"); err == nil {
		t.Error("JSON(nope) found something")
	}
}

// Every JSON job spec decodes strictly into api.Job.
func TestJSONDecodesStrictly(t *testing.T) {
	files, _ := filepath.Glob("*.json")
	if len(files) != 3 {
		t.Fatalf("want 3 JSON job specs, found %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		job, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if job.ID == nil || job.Name == nil || *job.ID != *job.Name {
			t.Errorf("%s: ID and Name must be set and equal", f)
		}
		// The document is the {"Job": {...}} shape `nomad job run -output` prints.
		var top map[string]json.RawMessage
		_ = json.Unmarshal(b, &top)
		if len(top) != 1 || top["Job"] == nil {
			t.Errorf("%s: want exactly one top-level key \"Job\"", f)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := map[string]string{
		"unknown job field":     `{"Job": {"ID": "x", "Typo": 1}}`,
		"unknown wrapper field": `{"Job": {"ID": "x"}, "Extra": true}`,
		"unknown task field":    `{"Job": {"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Args": []}]}]}}`,
		"wrong type":            `{"Job": {"ID": 5}}`,
		"trailing data":         `{"Job": {"ID": "x"}} {}`,
		"null job":              `{"Job": null}`,
		"not an object":         `[1]`,
		"bare unknown field":    `{"ID": "x", "Nope": 1}`,
	}
	for name, doc := range cases {
		if _, err := Decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded %s", name, doc)
		}
	}
	job, err := Decode([]byte(`{"ID": "bare", "Type": "batch"}`))
	if err != nil || *job.ID != "bare" {
		t.Errorf("a bare api.Job should decode: %v", err)
	}
}

// Every HCL file parses (syntax only; evaluating a jobspec needs Nomad).
func TestHCLParses(t *testing.T) {
	files, _ := filepath.Glob("*.hcl")
	if len(files) < 4 {
		t.Fatalf("want the 3 job files and the ACL policy, found %v", files)
	}
	p := hclparse.NewParser()
	for _, f := range files {
		if _, diags := p.ParseHCLFile(f); diags.HasErrors() {
			t.Errorf("%s: %s", f, diags.Error())
		}
	}
}

// The HCL files and their JSON twins say the same thing.
func TestTwinsAgree(t *testing.T) {
	for _, n := range Names() {
		t.Run(n, func(t *testing.T) {
			src, err := HCL(n)
			if err != nil {
				t.Fatal(err)
			}
			fromHCL, err := factsFromHCL(n+".nomad.hcl", src)
			if err != nil {
				t.Fatal(err)
			}
			fromJSON := factsFromJob(mustJob(t, n))
			if !reflect.DeepEqual(fromHCL, fromJSON) {
				h, _ := json.MarshalIndent(fromHCL, "", "  ")
				j, _ := json.MarshalIndent(fromJSON, "", "  ")
				t.Fatalf("%s.nomad.hcl and %s.json disagree\nHCL:  %s\nJSON: %s", n, n, h, j)
			}
			// Sanity: the extraction did see the interesting parts.
			if len(fromHCL.Groups) == 0 || len(fromHCL.Groups[0].Tasks) == 0 || len(fromHCL.Groups[0].Tasks[0].Args) == 0 {
				t.Fatalf("extracted nothing: %+v", fromHCL)
			}
		})
	}
}

// The comparison is not vacuous: a change on one side is seen.
func TestTwinsDisagreementIsDetected(t *testing.T) {
	src, _ := HCL(MigrateApply)
	for _, mut := range []struct{ from, to string }{
		{`attempts = 0`, `attempts = 1`},
		{`"--yes", "--wait-for"`, `"--wait-for"`},
		{`kill_timeout = "90s"`, `kill_timeout = "5s"`},
		{`type        = "batch"`, `type        = "service"`},
		{`group "migrate"`, `group "other"`},
		{`default     = "outpost-migrate:latest"`, `default     = "outpost-migrate:v1"`},
		{`"--wait-for", "2m"`, `"--wait-for", "5m"`},
		{`"--max-runtime", "1h"`, `"--max-runtime", "2h"`},
		{`{{ $k }}={{ $v }}`, `{{ $k }}: {{ $v }}`},
	} {
		changed := strings.Replace(string(src), mut.from, mut.to, 1)
		if changed == string(src) {
			t.Fatalf("mutation %q not applied", mut.from)
		}
		f, err := factsFromHCL("mutated.hcl", []byte(changed))
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(f, factsFromJob(mustJob(t, MigrateApply))) {
			t.Errorf("mutation %q -> %q went unnoticed", mut.from, mut.to)
		}
	}
}

func TestBatchJobsFollowTheRules(t *testing.T) {
	wantArgs := map[string][]string{
		MigrateApply: {"migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "1h", "--output", "json"},
		MigrateParam: {"migrate", MetaCommand, "--yes", "--wait-for", "2m", "--lock-timeout", "${NOMAD_META_lock_timeout}", "--max-runtime", "${NOMAD_META_max_runtime}", "--output", "json"},
	}
	for name, args := range wantArgs {
		job := mustJob(t, name)
		warnings, err := CheckBatch(job)
		if err != nil || len(warnings) > 0 {
			t.Errorf("%s: %v %v", name, err, warnings)
		}
		g, task, err := MigrationTask(job, "")
		if err != nil {
			t.Fatal(err)
		}
		if *g.RestartPolicy.Attempts != 0 || *g.ReschedulePolicy.Attempts != 0 || *g.ReschedulePolicy.Unlimited {
			t.Errorf("%s: restart/reschedule not 0", name)
		}
		if got, _ := Args(task); !reflect.DeepEqual(got, args) {
			t.Errorf("%s: args %q, want %q", name, got, args)
		}
		if task.Driver != "docker" || task.Config["image"] != "outpost-migrate:latest" {
			t.Errorf("%s: driver %q image %v", name, task.Driver, task.Config["image"])
		}
		if *task.KillTimeout < MinKillTimeout || task.KillSignal != "SIGTERM" {
			t.Errorf("%s: kill_timeout %v kill_signal %q", name, *task.KillTimeout, task.KillSignal)
		}
		checkTemplate(t, name, task)
	}

	param := mustJob(t, MigrateParam)
	if !param.IsParameterized() || !reflect.DeepEqual(param.ParameterizedJob.MetaRequired, []string{"command"}) ||
		param.ParameterizedJob.Payload != "forbidden" {
		t.Errorf("migrate-param: parameterized %+v", param.ParameterizedJob)
	}
	for _, k := range []string{"lock_timeout", "max_runtime"} {
		if param.Meta[k] == "" || !slices.Contains(param.ParameterizedJob.MetaOptional, k) {
			t.Errorf("migrate-param: %s must be optional meta with a default", k)
		}
	}
	if mustJob(t, MigrateApply).IsParameterized() {
		t.Error("migrate-apply must not be parameterized")
	}
}

func checkTemplate(t *testing.T, name string, task *api.Task) {
	t.Helper()
	if len(task.Templates) != 1 {
		t.Fatalf("%s/%s: want one template", name, task.Name)
	}
	tp := task.Templates[0]
	if *tp.DestPath != "secrets/outpost.env" || !*tp.Envvars || !strings.Contains(*tp.EmbeddedTmpl, `nomadVar "nomad/jobs/outpost"`) {
		t.Errorf("%s/%s: template %s %v %q", name, task.Name, *tp.DestPath, *tp.Envvars, *tp.EmbeddedTmpl)
	}
}

func TestServiceJobRunsMigrationAsPrestart(t *testing.T) {
	job := mustJob(t, OutpostService)
	if *job.Type != "service" || len(job.TaskGroups) != 1 {
		t.Fatalf("type %s groups %d", *job.Type, len(job.TaskGroups))
	}
	g := job.TaskGroups[0]
	if len(g.Tasks) != 2 {
		t.Fatalf("want migrate and serve tasks, got %d", len(g.Tasks))
	}
	migrate, serve := g.Tasks[0], g.Tasks[1]
	if migrate.Lifecycle == nil || migrate.Lifecycle.Hook != api.TaskLifecycleHookPrestart || migrate.Lifecycle.Sidecar {
		t.Errorf("migrate task lifecycle %+v, want prestart, not sidecar", migrate.Lifecycle)
	}
	if args, _ := Args(migrate); !reflect.DeepEqual(args, []string{"migrate", "apply", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "20m", "--output", "json"}) {
		t.Errorf("migrate args %q", args)
	}
	if migrate.RestartPolicy == nil || *migrate.RestartPolicy.Attempts != 0 {
		t.Error("the prestart migration must not be restarted in place")
	}
	if *migrate.KillTimeout != 90*time.Second || migrate.KillSignal != "SIGTERM" {
		t.Errorf("kill %v %s", *migrate.KillTimeout, migrate.KillSignal)
	}
	if serve.Lifecycle != nil {
		t.Error("serve must be the main task")
	}
	if args, _ := Args(serve); !reflect.DeepEqual(args, []string{"serve"}) {
		t.Errorf("serve args %q", args)
	}
	// Two images: the migration from outpost-migrate, the server from
	// Outpost's own image (this tool's has no `serve`).
	if migrate.Config["image"] != "outpost-migrate:latest" || !strings.HasPrefix(serve.Config["image"].(string), "hookdeck/outpost:") {
		t.Errorf("images: migrate %v, serve %v", migrate.Config["image"], serve.Config["image"])
	}
	checkTemplate(t, OutpostService, migrate)
	checkTemplate(t, OutpostService, serve)
	if _, err := CheckBatch(job); err == nil {
		t.Error("CheckBatch accepted a service job")
	}
}

func TestCheckBatchRejects(t *testing.T) {
	mutate := func(f func(j *api.Job)) *api.Job {
		j := mustJob(t, MigrateApply)
		f(j)
		return j
	}
	task := func(j *api.Job) *api.Task { return j.TaskGroups[0].Tasks[0] }
	two, one := 2, 1
	yes := true
	cases := map[string]*api.Job{
		"service type":         mutate(func(j *api.Job) { s := "service"; j.Type = &s }),
		"no restart block":     mutate(func(j *api.Job) { j.TaskGroups[0].RestartPolicy = nil }),
		"restart attempts":     mutate(func(j *api.Job) { j.TaskGroups[0].RestartPolicy.Attempts = &two }),
		"task restart":         mutate(func(j *api.Job) { task(j).RestartPolicy = &api.RestartPolicy{Attempts: &one} }),
		"no reschedule":        mutate(func(j *api.Job) { j.TaskGroups[0].ReschedulePolicy = nil }),
		"reschedule attempts":  mutate(func(j *api.Job) { j.TaskGroups[0].ReschedulePolicy.Attempts = &one }),
		"reschedule unlimited": mutate(func(j *api.Job) { j.TaskGroups[0].ReschedulePolicy.Unlimited = &yes }),
		"count 2":              mutate(func(j *api.Job) { j.TaskGroups[0].Count = &two }),
		"apply without --yes":  mutate(func(j *api.Job) { task(j).Config["args"] = []any{"migrate", "apply"} }),
		"not migrate":          mutate(func(j *api.Job) { task(j).Config["args"] = []any{"serve"} }),
		"unknown command":      mutate(func(j *api.Job) { task(j).Config["args"] = []any{"migrate", "explode"} }),
		"meta without param":   mutate(func(j *api.Job) { task(j).Config["args"] = []any{"migrate", MetaCommand, "--yes"} }),
		"no ID":                mutate(func(j *api.Job) { j.ID = nil }),
	}
	for name, j := range cases {
		if _, err := CheckBatch(j); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Soft advice.
	j := mutate(func(j *api.Job) { d := 5 * time.Second; task(j).KillTimeout = &d; task(j).KillSignal = "SIGKILL" })
	if w, err := CheckBatch(j); err != nil || len(w) != 2 {
		t.Errorf("want 2 warnings, got %v %v", w, err)
	}
	// plan needs no --yes.
	j = mutate(func(j *api.Job) { task(j).Config["args"] = []any{"migrate", "plan"} })
	if _, err := CheckBatch(j); err != nil {
		t.Errorf("plan without --yes: %v", err)
	}
	// A job-level reschedule policy counts.
	j = mutate(func(j *api.Job) {
		j.Reschedule = j.TaskGroups[0].ReschedulePolicy
		j.TaskGroups[0].ReschedulePolicy = nil
	})
	if _, err := CheckBatch(j); err != nil {
		t.Errorf("job-level reschedule: %v", err)
	}
}

func TestCheckDispatchMeta(t *testing.T) {
	param := mustJob(t, MigrateParam)
	for _, c := range DispatchCommands {
		if err := CheckDispatchMeta(param, map[string]string{"command": c}); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	bad := []map[string]string{
		nil,
		{"command": "cleanup"},
		{"command": "apply", "colour": "red"},
		{"lock_timeout": "1m"},
	}
	for _, m := range bad {
		if err := CheckDispatchMeta(param, m); err == nil {
			t.Errorf("accepted %v", m)
		}
	}
	if err := CheckDispatchMeta(param, map[string]string{"command": "apply", "lock_timeout": "30m"}); err != nil {
		t.Error(err)
	}
	apply := mustJob(t, MigrateApply)
	if err := CheckDispatchMeta(apply, map[string]string{"command": "plan"}); err == nil {
		t.Error("meta accepted for a job that is not parameterized")
	}
	if err := CheckDispatchMeta(apply, nil); err != nil {
		t.Error(err)
	}
}

func TestMigrationTask(t *testing.T) {
	svc := mustJob(t, OutpostService)
	_, task, err := MigrationTask(svc, "")
	if err != nil || task.Name != "migrate" {
		t.Fatalf("%v %v", task, err)
	}
	if _, task, err = MigrationTask(svc, "serve"); err != nil || task.Name != "serve" {
		t.Fatalf("%v %v", task, err)
	}
	if _, _, err = MigrationTask(svc, "nope"); err == nil {
		t.Fatal("found a task that is not there")
	}
}
