// Package kubernetes holds the Kubernetes recipes; its test parses every
// manifest and checks the rules a migration pod must follow.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) {
	code := m.Run()
	recipetest.Cleanup()
	os.Exit(code)
}

// The contract's exit codes (shared/spec/contract.md, "Exit codes"), plus 74
// (IOERR: the report could not be written), which this tool adds.
var (
	contractNonRetryable = []int{3, 4, 64, 65, 70, 74, 77, 78}
	contractRetryable    = []int{1, 69, 75, 130, 143}
)

type container struct {
	Name                     string   `yaml:"name"`
	Image                    string   `yaml:"image"`
	Command                  []string `yaml:"command"`
	Args                     []string `yaml:"args"`
	TerminationMessagePolicy string   `yaml:"terminationMessagePolicy"`
	EnvFrom                  []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
}

// argv is what runs: command (or the image's entrypoint, outpost) + args.
func (c container) argv() []string {
	cmd := c.Command
	if len(cmd) == 0 {
		cmd = []string{"outpost"}
	}
	return append(slices.Clone(cmd), c.Args...)
}

type podSpec struct {
	RestartPolicy                 string `yaml:"restartPolicy"`
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               *struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
}

type rule struct {
	Action      string `yaml:"action"`
	OnExitCodes *struct {
		ContainerName string `yaml:"containerName"`
		Operator      string `yaml:"operator"`
		Values        []int  `yaml:"values"`
	} `yaml:"onExitCodes"`
	OnPodConditions []struct {
		Type string `yaml:"type"`
	} `yaml:"onPodConditions"`
}

type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name         string `yaml:"name"`
		GenerateName string `yaml:"generateName"`
	} `yaml:"metadata"`
	Spec struct {
		BackoffLimit            *int `yaml:"backoffLimit"`
		ActiveDeadlineSeconds   *int `yaml:"activeDeadlineSeconds"`
		ProgressDeadlineSeconds *int `yaml:"progressDeadlineSeconds"`
		TTLSecondsAfterFinished *int `yaml:"ttlSecondsAfterFinished"`
		PodFailurePolicy        *struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"podFailurePolicy"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// The variables the manifests take (envsubst fills them in, as their
// comments show), with the values the tests give them.
var manifestVars = map[string]string{
	"OUTPOST_MIGRATE_IMAGE": "registry.example.com/outpost-migrate:v0.1.0",
	"OUTPOST_IMAGE":         "hookdeck/outpost:v0.17.0",
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand does what `envsubst '$OUTPOST_MIGRATE_IMAGE $OUTPOST_IMAGE'`
// does to a manifest (comments aside, where shell lines mention other
// variables); a ${VAR} outside a comment that it does not fill is an error.
func expand(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		lines[i] = varRef.ReplaceAllStringFunc(line, func(m string) string {
			v := varRef.FindStringSubmatch(m)[1]
			val, ok := manifestVars[v]
			if !ok {
				t.Errorf("%s:%d: unknown variable ${%s}", name, i+1, v)
			}
			return val
		})
	}
	return []byte(strings.Join(lines, "\n"))
}

// load parses every document of a YAML file, strictly, with its variables
// filled in.
func load(t *testing.T, name string) []manifest {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b = expand(t, name, b)
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var m manifest
		if err := node.Decode(&m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, m)
	}
	return out
}

func sorted(v []int) []int {
	v = slices.Clone(v)
	slices.Sort(v)
	return slices.Compact(v)
}

// nonRetryableFromReport derives the non-retryable exit codes from the one
// table in package report.
func nonRetryableFromReport() (non, retry []int) {
	for _, c := range report.Codes() {
		if report.Retryable(c) {
			retry = append(retry, report.ExitCode(c))
		} else {
			non = append(non, report.ExitCode(c))
		}
	}
	return sorted(non), sorted(retry)
}

func checkMigrationContainer(t *testing.T, where string, c container) {
	t.Helper()
	argv := c.argv()
	if len(argv) < 4 || argv[0] != "outpost" || !reflect.DeepEqual(argv[1:4], []string{"migrate", "apply", "--yes"}) {
		t.Errorf("%s: runs %q, want outpost migrate apply --yes ...", where, argv)
	}
	// The outpost-migrate image, pinned by the variable; never Outpost's
	// own image (it has no such tool), never a floating tag.
	if c.Image != manifestVars["OUTPOST_MIGRATE_IMAGE"] {
		t.Errorf("%s: image %q, want ${OUTPOST_MIGRATE_IMAGE}", where, c.Image)
	}
	recipetest.CheckParses(t, where, argv[1:])
	if c.TerminationMessagePolicy != "FallbackToLogsOnError" {
		t.Errorf("%s: terminationMessagePolicy %q", where, c.TerminationMessagePolicy)
	}
	if len(c.EnvFrom) == 0 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "outpost-config" {
		t.Errorf("%s: settings must come from the outpost-config Secret", where)
	}
	if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
}

// checkDeadline: a deadline (seconds) exceeds the longest attempt the
// container's command line allows (recipetest.Budget, with the pod's grace
// period) and is fitted to it: not more than a quarter of an hour above.
func checkDeadline(t *testing.T, where string, seconds int, c container, pod podSpec) {
	t.Helper()
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	b, err := recipetest.BudgetOf(c.argv(), grace)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if d := time.Duration(seconds) * time.Second; d < b.Total() || d > b.Total()+15*time.Minute {
		t.Errorf("%s: %s does not fit %s", where, d, b)
	}
}

func TestEveryManifestParses(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) != 2 {
		t.Fatalf("want job.yaml and deployment-initcontainer.yaml, found %v", files)
	}
	for _, f := range files {
		for _, m := range load(t, f) {
			if m.APIVersion == "" || m.Kind == "" || (m.Metadata.Name == "") == (m.Metadata.GenerateName == "") {
				t.Errorf("%s: apiVersion/kind missing, or not exactly one of name and generateName", f)
			}
		}
	}
}

func TestKubernetesJobRecipe(t *testing.T) {
	ms := load(t, "job.yaml")
	if len(ms) != 1 || ms[0].Kind != "Job" || ms[0].APIVersion != "batch/v1" {
		t.Fatalf("job.yaml: %+v", ms)
	}
	job := ms[0]
	pod := job.Spec.Template.Spec
	// Rerunnable: `kubectl create` of a generateName makes a new Job each
	// time; a fixed name could not run again while the old Job exists.
	if job.Metadata.Name != "" || job.Metadata.GenerateName != "outpost-migrate-" {
		t.Errorf("job.yaml: name %q generateName %q, want only generateName outpost-migrate-", job.Metadata.Name, job.Metadata.GenerateName)
	}
	if job.Spec.TTLSecondsAfterFinished == nil {
		t.Error("job.yaml: finished Jobs must be garbage-collected (ttlSecondsAfterFinished), as every rerun leaves one")
	}
	if pod.RestartPolicy != "Never" {
		t.Fatalf("restartPolicy %q, want Never (podFailurePolicy requires it)", pod.RestartPolicy)
	}
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit < 1 {
		t.Error("backoffLimit must allow retries of retryable failures")
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 30 {
		t.Error("terminationGracePeriodSeconds must leave time to release the lock")
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("the pod must run as a numeric non-root user")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	checkMigrationContainer(t, "job.yaml", c)
	if job.Spec.ActiveDeadlineSeconds == nil {
		t.Fatal("job.yaml: no activeDeadlineSeconds")
	}
	checkDeadline(t, "job.yaml activeDeadlineSeconds", *job.Spec.ActiveDeadlineSeconds, c, pod)

	if job.Spec.PodFailurePolicy == nil {
		t.Fatal("no podFailurePolicy")
	}
	var failJob, count []int
	ignoresDisruption := false
	for i, r := range job.Spec.PodFailurePolicy.Rules {
		if r.OnExitCodes != nil {
			if r.OnExitCodes.ContainerName != c.Name || r.OnExitCodes.Operator != "In" {
				t.Errorf("rule %d: containerName %q operator %q", i, r.OnExitCodes.ContainerName, r.OnExitCodes.Operator)
			}
			if slices.Contains(r.OnExitCodes.Values, 0) {
				t.Errorf("rule %d: 0 cannot be used with In", i)
			}
			switch r.Action {
			case "FailJob":
				failJob = append(failJob, r.OnExitCodes.Values...)
			case "Count":
				count = append(count, r.OnExitCodes.Values...)
			default:
				t.Errorf("rule %d: exit codes with action %s", i, r.Action)
			}
		}
		for _, pc := range r.OnPodConditions {
			if pc.Type == "DisruptionTarget" && r.Action == "Ignore" {
				ignoresDisruption = true
			}
		}
	}
	if !ignoresDisruption {
		t.Error("want an Ignore rule on the DisruptionTarget pod condition")
	}
	failJob, count = sorted(failJob), sorted(count)
	if !reflect.DeepEqual(failJob, contractNonRetryable) {
		t.Errorf("FailJob exit codes %v, want the contract's non-retryable %v", failJob, contractNonRetryable)
	}
	non, retry := nonRetryableFromReport()
	if !reflect.DeepEqual(failJob, non) {
		t.Errorf("FailJob exit codes %v, want the report package's non-retryable %v", failJob, non)
	}
	for _, code := range append(retry, contractRetryable...) {
		if !slices.Contains(count, code) {
			t.Errorf("retryable exit code %d is not in the Count rule %v", code, count)
		}
	}
	for _, code := range count {
		if slices.Contains(failJob, code) {
			t.Errorf("exit code %d is both FailJob and Count", code)
		}
	}
}

func TestDeploymentInitContainer(t *testing.T) {
	ms := load(t, "deployment-initcontainer.yaml")
	if len(ms) != 1 || ms[0].Kind != "Deployment" || ms[0].APIVersion != "apps/v1" {
		t.Fatalf("%+v", ms)
	}
	pod := ms[0].Spec.Template.Spec
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("want one init container and one container")
	}
	checkMigrationContainer(t, "initContainers[0]", pod.InitContainers[0])
	if ms[0].Spec.ProgressDeadlineSeconds == nil {
		t.Fatal("no progressDeadlineSeconds: Kubernetes' default (600s) is shorter than the init container may run")
	}
	checkDeadline(t, "progressDeadlineSeconds", *ms[0].Spec.ProgressDeadlineSeconds, pod.InitContainers[0], pod)
	srv := pod.Containers[0]
	if !reflect.DeepEqual(srv.Args, []string{"serve"}) || len(srv.Command) != 0 {
		t.Errorf("server runs command %q args %q, want args [serve] through Outpost's entrypoint", srv.Command, srv.Args)
	}
	// The server runs Outpost's own image (outpost-migrate has no serve).
	if srv.Image != manifestVars["OUTPOST_IMAGE"] {
		t.Errorf("server image %q, want ${OUTPOST_IMAGE}", srv.Image)
	}
}

func TestKubernetesRecipeReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"kubectl run outpost-migrate --rm -i --restart=Never",
		"-- migrate apply --yes --wait-for",
		"kubectl create -f -",
		"generateName",
		"/dev/termination-log",
		"FallbackToLogsOnError",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	// The exit-code table: each row's codes ("75", "130 / 143") and action.
	// Its FailJob rows are exactly the report package's non-retryable codes
	// (and so job.yaml's FailJob rule, checked in TestJob); every retryable
	// code is in a Count row.
	var failJob, count []int
	for _, line := range strings.Split(s, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 3 {
			continue
		}
		var codes []int
		for _, f := range strings.Split(cells[0], " / ") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				codes = nil
				break
			}
			codes = append(codes, n)
		}
		switch {
		case len(codes) == 0:
		case strings.Contains(cells[2], "FailJob"):
			failJob = append(failJob, codes...)
		case strings.Contains(cells[2], "Count"):
			count = append(count, codes...)
		}
	}
	non, retry := nonRetryableFromReport()
	if got := sorted(failJob); !reflect.DeepEqual(got, non) {
		t.Errorf("README.md's FailJob rows %v, want the report package's non-retryable %v", got, non)
	}
	for _, code := range append(retry, contractRetryable...) {
		if !slices.Contains(count, code) {
			t.Errorf("README.md's table has no Count row for retryable exit code %d", code)
		}
	}
	for _, code := range contractNonRetryable {
		if !strings.Contains(s, "| "+strconv.Itoa(code)+" |") {
			t.Errorf("README.md's table lacks exit code %d", code)
		}
	}
}

// TestKubectlRunLineParses: the README's `kubectl run ... -- migrate ...`
// one-liner carries --wait-for and parses with the real binary.
func TestKubectlRunLineParses(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, line := range strings.Split(string(b), "\n") {
		if _, args, ok := strings.Cut(strings.TrimSpace(line), "-- migrate "); ok && !strings.HasPrefix(line, "`") {
			found++
			recipetest.CheckParses(t, "README.md kubectl run", append([]string{"migrate"}, strings.Fields(args)...))
		}
	}
	if found == 0 {
		t.Fatal("README.md has no `kubectl run ... -- migrate ...` line")
	}
}
