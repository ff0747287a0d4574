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
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/report"
)

// The contract's exit codes (shared/spec/contract.md, "Exit codes").
var (
	contractNonRetryable = []int{3, 4, 64, 65, 70, 77, 78}
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
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		BackoffLimit     *int `yaml:"backoffLimit"`
		PodFailurePolicy *struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"podFailurePolicy"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// load parses every document of a YAML file, strictly.
func load(t *testing.T, name string) []manifest {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
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
	if !strings.HasPrefix(c.Image, "hookdeck/outpost") {
		t.Errorf("%s: image %q", where, c.Image)
	}
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

func TestEveryManifestParses(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) != 2 {
		t.Fatalf("want job.yaml and deployment-initcontainer.yaml, found %v", files)
	}
	for _, f := range files {
		for _, m := range load(t, f) {
			if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
				t.Errorf("%s: apiVersion/kind/name missing", f)
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
	srv := pod.Containers[0]
	if !reflect.DeepEqual(srv.argv(), []string{"outpost", "serve"}) {
		t.Errorf("server runs %q", srv.argv())
	}
	if srv.Image != pod.InitContainers[0].Image {
		t.Error("migration and server must use the same image")
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
		"-- migrate apply --yes",
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
