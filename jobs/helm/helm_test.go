// Package helm holds the Helm chart outpost-migrate (a pre-install,
// pre-upgrade hook Job). Its tests render the chart with Helm's own Go
// packages, as `helm template` does, check what Helm makes of it (hooks,
// their events, weights and delete policies), decode every object strictly
// into Kubernetes' API types, run helm's linter, and run the rendered Job's
// command line and config with the real binary.
package helm

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
	"github.com/outpost-migrate/outpost/report"
)

const chartDir = "outpost-migrate"

func TestMain(m *testing.M) {
	code := m.Run()
	servertest.StopShared()
	recipetest.Cleanup()
	os.Exit(code)
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render does what `helm template RELEASE jobs/helm/outpost-migrate
// --namespace outpost [--is-upgrade] -f vals` does, through Helm's install
// action in client-only mode, and returns the release: its hooks as Helm
// classified them and its other manifests.
func render(t *testing.T, releaseName string, upgrade bool, vals map[string]any) *release.Release {
	t.Helper()
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly, inst.DryRun, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace, inst.IsUpgrade = releaseName, "outpost", upgrade
	rel, err := inst.Run(loadChart(t), vals)
	if err != nil {
		t.Fatalf("render %s: %v", releaseName, err)
	}
	return rel
}

// hookOf returns the one hook of kind.
func hookOf(t *testing.T, rel *release.Release, kind string) *release.Hook {
	t.Helper()
	var found []*release.Hook
	for _, h := range rel.Hooks {
		if h.Kind == kind {
			found = append(found, h)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s hook, got %d", kind, len(found))
	}
	return found[0]
}

// jobOf decodes the hook Job strictly into batch/v1 Job: a field Kubernetes
// does not know is an error.
func jobOf(t *testing.T, rel *release.Release) (*release.Hook, *batchv1.Job) {
	t.Helper()
	h := hookOf(t, rel, "Job")
	var job batchv1.Job
	if err := yaml.UnmarshalStrict([]byte(h.Manifest), &job); err != nil {
		t.Fatalf("the Job does not decode strictly: %v\n%s", err, h.Manifest)
	}
	return h, &job
}

func configMapOf(t *testing.T, rel *release.Release) (*release.Hook, *corev1.ConfigMap) {
	t.Helper()
	h := hookOf(t, rel, "ConfigMap")
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(h.Manifest), &cm); err != nil {
		t.Fatalf("the ConfigMap does not decode strictly: %v\n%s", err, h.Manifest)
	}
	return h, &cm
}

// checkHook: created before install and before upgrade; the last run's
// object is deleted when the next one is created, so the Job is rerunnable
// and its logs are kept until then.
func checkHook(t *testing.T, h *release.Hook) {
	t.Helper()
	events := slices.Clone(h.Events)
	slices.Sort(events)
	if !reflect.DeepEqual(events, []release.HookEvent{release.HookPreInstall, release.HookPreUpgrade}) {
		t.Errorf("%s hook events %v, want pre-install and pre-upgrade", h.Kind, h.Events)
	}
	if !reflect.DeepEqual(h.DeletePolicies, []release.HookDeletePolicy{release.HookBeforeHookCreation}) {
		t.Errorf("%s hook delete policies %v, want before-hook-creation only", h.Kind, h.DeletePolicies)
	}
}

// container returns the Job's one container, named migrate (the name the
// podFailurePolicy's rules name).
func container(t *testing.T, job *batchv1.Job) corev1.Container {
	t.Helper()
	cs := job.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "migrate" {
		t.Fatalf("want one container called migrate, got %+v", cs)
	}
	return cs[0]
}

// kubernetesJobPolicy is the podFailurePolicy of jobs/kubernetes/job.yaml,
// decoded strictly into the API type.
func kubernetesJobPolicy(t *testing.T) *batchv1.PodFailurePolicy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "kubernetes", "job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.ReplaceAll(string(b), "${OUTPOST_MIGRATE_IMAGE}", "outpost-migrate:test"))
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		t.Fatalf("jobs/kubernetes/job.yaml: %v", err)
	}
	if job.Spec.PodFailurePolicy == nil {
		t.Fatal("jobs/kubernetes/job.yaml has no podFailurePolicy")
	}
	return job.Spec.PodFailurePolicy
}

// checkPolicy: the chart's podFailurePolicy is job.yaml's, and its FailJob
// codes are exactly the report package's non-retryable ones.
func checkPolicy(t *testing.T, job *batchv1.Job) {
	t.Helper()
	got := job.Spec.PodFailurePolicy
	if got == nil || !reflect.DeepEqual(got, kubernetesJobPolicy(t)) {
		t.Fatalf("podFailurePolicy %+v differs from jobs/kubernetes/job.yaml's", got)
	}
	var non, failJob []int32
	for _, c := range report.Codes() {
		if !report.Retryable(c) {
			non = append(non, int32(report.ExitCode(c)))
		}
	}
	for _, r := range got.Rules {
		if r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil {
			failJob = append(failJob, r.OnExitCodes.Values...)
		}
	}
	slices.Sort(non)
	non = slices.Compact(non)
	slices.Sort(failJob)
	if !reflect.DeepEqual(failJob, non) {
		t.Errorf("FailJob codes %v, want the non-retryable %v", failJob, non)
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("a podFailurePolicy needs restartPolicy Never")
	}
}

// checkDeadline: activeDeadlineSeconds is the longest run the command line
// allows plus the grace period, to the second.
func checkDeadline(t *testing.T, job *batchv1.Job, c corev1.Container) recipetest.Budget {
	t.Helper()
	grace := time.Duration(*job.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	b, err := recipetest.BudgetOf(c.Args, grace)
	if err != nil {
		t.Fatal(err)
	}
	if job.Spec.ActiveDeadlineSeconds == nil || time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second != b.Total() {
		t.Errorf("activeDeadlineSeconds %v, want %s", job.Spec.ActiveDeadlineSeconds, b)
	}
	return b
}

// configVolume returns the ConfigMap the Job mounts at /config/outpost,
// and checks that CONFIG points the tool at its config.yaml.
func configVolume(t *testing.T, job *batchv1.Job, c corev1.Container) string {
	t.Helper()
	var vol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/config/outpost" {
			vol = m.Name
		}
	}
	var cm string
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Name == vol && v.ConfigMap != nil {
			cm = v.ConfigMap.Name
		}
	}
	if cm == "" {
		t.Fatalf("no ConfigMap mounted at /config/outpost: %+v", c.VolumeMounts)
	}
	if c.Env[0].Name != "CONFIG" || c.Env[0].Value != "/config/outpost/config.yaml" {
		t.Errorf("env %+v: CONFIG must name /config/outpost/config.yaml", c.Env)
	}
	return cm
}
