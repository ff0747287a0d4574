package helm

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
)

// TestHelmChartDefaults renders the chart with its default values, as a
// fresh install and as an upgrade.
func TestHelmChartDefaults(t *testing.T) {
	for _, upgrade := range []bool{false, true} {
		rel := render(t, "prod", upgrade, nil)
		if strings.TrimSpace(rel.Manifest) != "" {
			t.Errorf("everything must be a hook; the release also has:\n%s", rel.Manifest)
		}
		if len(rel.Hooks) != 1 {
			t.Errorf("with no outpost.config, want the Job alone, got %d hooks", len(rel.Hooks))
		}
		h, job := jobOf(t, rel)
		checkHook(t, h)
		checkPolicy(t, job)
		c := container(t, job)
		if job.Name != "prod-outpost-migrate" {
			t.Errorf("Job name %q", job.Name)
		}
		// The image is outpost-migrate at the chart's appVersion: pinned.
		if c.Image != "outpost-migrate:"+loadChart(t).Metadata.AppVersion || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("image %q", c.Image)
		}
		want := []string{"migrate", "apply", "--yes", "--wait-for", "120s", "--lock-timeout", "600s", "--max-runtime", "1800s", "--output", "json"}
		if !reflect.DeepEqual(c.Args, want) || len(c.Command) != 0 {
			t.Errorf("command %q args %q, want args %q", c.Command, c.Args, want)
		}
		if b := checkDeadline(t, job, c); b.Total().Seconds() != 3330 {
			t.Errorf("default deadline %s", b)
		}
		recipetest.CheckParses(t, "helm default", c.Args)
		// No config given: the ConfigMap Outpost's chart made for this
		// release (its outpost.fullname), as Outpost's pods mount it.
		if cm := configVolume(t, job, c); cm != "prod-outpost" {
			t.Errorf("mounts ConfigMap %q, want Outpost's chart's prod-outpost", cm)
		}
		if len(c.EnvFrom) != 0 || len(c.Env) != 1 {
			t.Errorf("env %+v envFrom %+v", c.Env, c.EnvFrom)
		}
		sc := job.Spec.Template.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 {
			t.Errorf("pod securityContext %+v", sc)
		}
		if c.SecurityContext == nil || *c.SecurityContext.AllowPrivilegeEscalation || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("container securityContext %+v", c.SecurityContext)
		}
		if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			t.Errorf("terminationMessagePolicy %q", c.TerminationMessagePolicy)
		}
		if c.Resources.Limits.Memory().String() != "512Mi" {
			t.Errorf("resources %+v", c.Resources)
		}
	}
	// Outpost's chart names its ConfigMap after the release alone when the
	// release's name contains "outpost".
	_, job := jobOf(t, render(t, "outpost", true, nil))
	if cm := configVolume(t, job, container(t, job)); cm != "outpost" {
		t.Errorf("release outpost: mounts %q, want outpost", cm)
	}
}

// customValues sets every value a user would: image, config, env and
// envFrom in Outpost's chart's shape, resources, the bounds, extra flags.
func customValues(redisHost string, redisPort int, pgURL string) map[string]any {
	return map[string]any{
		"image": map[string]any{"repository": "registry.example.com/outpost-migrate", "tag": "v0.2.0", "pullPolicy": "Always"},
		"outpost": map[string]any{
			"config": map[string]any{
				"redis":    map[string]any{"host": redisHost, "port": redisPort},
				"postgres": pgURL,
			},
			"env": []any{
				map[string]any{"name": "DEPLOYMENT_ID", "value": ""},
				map[string]any{"name": "REDIS_PASSWORD", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "outpost-secrets", "key": "redis-password", "optional": true}}},
			},
			"envFrom": []any{map[string]any{"secretRef": map[string]any{"name": "outpost-secrets"}}},
		},
		"migrate": map[string]any{
			"waitForSeconds": 30, "lockTimeoutSeconds": 60, "maxRuntimeSeconds": 600,
			"terminationGracePeriodSeconds": 45, "extraArgs": []any{"--parallel", "2"},
		},
		"resources":    map[string]any{"requests": map[string]any{"cpu": "250m", "memory": "256Mi"}, "limits": map[string]any{"memory": "1Gi"}},
		"nodeSelector": map[string]any{"pool": "jobs"},
	}
}

// TestHelmChartCustomValues renders the chart with custom values and checks
// that each reaches the Job; outpost.config becomes a ConfigMap hook created
// before the Job (on a first install Outpost's own does not exist yet).
func TestHelmChartCustomValues(t *testing.T) {
	rel := render(t, "prod", false, customValues("redis.internal", 6380, "postgres://outpost@pg.internal:5432/outpost"))
	h, job := jobOf(t, rel)
	checkHook(t, h)
	checkPolicy(t, job)
	c := container(t, job)
	if c.Image != "registry.example.com/outpost-migrate:v0.2.0" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %q %q", c.Image, c.ImagePullPolicy)
	}
	want := []string{"migrate", "apply", "--yes", "--wait-for", "30s", "--lock-timeout", "60s", "--max-runtime", "600s", "--output", "json", "--parallel", "2"}
	if !reflect.DeepEqual(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	if b := checkDeadline(t, job, c); b.Total().Seconds() != 2*30+2*60+600+45 {
		t.Errorf("deadline %s", b)
	}
	recipetest.CheckParses(t, "helm custom", c.Args)

	ch, cm := configMapOf(t, rel)
	checkHook(t, ch)
	if ch.Weight >= h.Weight {
		t.Errorf("the ConfigMap (weight %d) must be created before the Job (weight %d)", ch.Weight, h.Weight)
	}
	if got := configVolume(t, job, c); got != cm.Name || cm.Name != "prod-outpost-migrate-config" {
		t.Errorf("the Job mounts %q, the chart made %q", got, cm.Name)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg) != "map[postgres:postgres://outpost@pg.internal:5432/outpost redis:map[host:redis.internal port:6380]]" {
		t.Errorf("config.yaml %v", cfg)
	}

	if len(c.Env) != 3 || c.Env[1].Name != "DEPLOYMENT_ID" || c.Env[2].ValueFrom == nil || c.Env[2].ValueFrom.SecretKeyRef.Name != "outpost-secrets" {
		t.Errorf("env %+v", c.Env)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "outpost-secrets" {
		t.Errorf("envFrom %+v", c.EnvFrom)
	}
	if c.Resources.Requests.Cpu().Cmp(resource.MustParse("250m")) != 0 || c.Resources.Limits.Memory().String() != "1Gi" {
		t.Errorf("resources %+v", c.Resources)
	}
	if job.Spec.Template.Spec.NodeSelector["pool"] != "jobs" || *job.Spec.Template.Spec.TerminationGracePeriodSeconds != 45 {
		t.Errorf("pod spec %+v", job.Spec.Template.Spec)
	}

	// An existing ConfigMap by name, when the config is not given here.
	_, job = jobOf(t, render(t, "prod", true, map[string]any{"outpost": map[string]any{"configMapName": "my-outpost"}}))
	if got := configVolume(t, job, container(t, job)); got != "my-outpost" {
		t.Errorf("configMapName: mounts %q", got)
	}
}

// TestHelmLint runs helm's linter (what `helm lint` runs) with the default
// and the custom values: no error, no warning.
func TestHelmLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"default": {},
		"custom":  customValues("redis.internal", 6380, "postgres://outpost@pg.internal:5432/outpost"),
	} {
		l := lint.All(chartDir, vals, "outpost", false)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s values: helm lint: %s", name, m)
			} else {
				t.Logf("%s values: helm lint: %s", name, m)
			}
		}
	}
	// The linter is not blind: a broken template is an error.
	dir := t.TempDir()
	if err := copyDir(chartDir, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "broken.yaml"), []byte("{{ .Values.nope.nested }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := lint.All(dir, nil, "outpost", false); l.HighestSeverity < support.ErrorSev {
		t.Errorf("a broken template linted as %d: %v", l.HighestSeverity, l.Messages)
	}
}

func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// TestHelmJobRunsAgainstRealStores renders the chart with outpost.config
// pointing at real Redis and PostgreSQL servers, puts the rendered
// config.yaml where the Job mounts it (a directory standing in for
// /config/outpost) and runs the Job's command line and environment with the
// real binary: the config Outpost's chart takes is one the tool reads, and
// the hook applies every migration.
func TestHelmJobRunsAgainstRealStores(t *testing.T) {
	redis := servertest.Redis(t)
	pg := servertest.Postgres(t)
	rel := render(t, "prod", false, customValues(redis.Host, redis.Port, pg.URL))
	_, job := jobOf(t, rel)
	_, cm := configMapOf(t, rel)
	c := container(t, job)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = strings.Replace(e.Value, "/config/outpost", dir, 1)
		}
	}
	r := recipetest.Run(t, env, c.Args...)
	if r.Code != 0 || r.Report["command"] != "apply" || r.Report["outcome"] != "applied" {
		t.Fatalf("the hook's command: exit %d %v: %v\nstderr: %s", r.Code, r.Report["outcome"], r.Report["msg"], r.Stderr)
	}
	scope := fmt.Sprint(r.Report["targets"].(map[string]any)["scope"])
	if scope != "[sql redis]" {
		t.Fatalf("scope %s: the config did not configure both stores", scope)
	}
	// The next upgrade's hook finds nothing to do.
	if r := recipetest.Run(t, env, c.Args...); r.Code != 0 || r.Report["outcome"] != "up_to_date" {
		t.Fatalf("second run: exit %d %v", r.Code, r.Report["outcome"])
	}
}
