// Package compose holds the Docker Compose recipe; its test checks the
// dependency chain the guide relies on.
package compose

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/jobs/internal/recipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	recipetest.Cleanup()
	os.Exit(code)
}

// TestComposeCommentsReadTheReport: the comment's way of reading the report
// takes Compose's log prefix off (without it the last line is not JSON).
func TestComposeCommentsReadTheReport(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "docker compose logs") && !strings.Contains(line, "--no-log-prefix") {
			t.Errorf("%q: without --no-log-prefix every line starts with the service name", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(string(b), "docker compose logs --no-log-prefix outpost-migrate | tail -n 1") {
		t.Error("the comment does not show how to read the report")
	}
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type service struct {
	Image string `yaml:"image"`
	Build *struct {
		Context string `yaml:"context"`
	} `yaml:"build"`
	Command     []string              `yaml:"command"`
	EnvFile     string                `yaml:"env_file"`
	Restart     string                `yaml:"restart"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeFile struct {
	Services map[string]service `yaml:"services"`
}

func load(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDependencyChain(t *testing.T) {
	c := load(t)
	migrate, ok := c.Services["outpost-migrate"]
	if !ok {
		t.Fatal("no outpost-migrate service")
	}
	server, ok := c.Services["outpost"]
	if !ok {
		t.Fatal("no outpost service")
	}

	// The migration: migrate apply --yes (the image's entrypoint is outpost),
	// never restarted, after healthy stores.
	if len(migrate.Command) < 3 || !reflect.DeepEqual(migrate.Command[:3], []string{"migrate", "apply", "--yes"}) {
		t.Errorf("outpost-migrate runs %q", migrate.Command)
	}
	if migrate.Restart != "no" {
		t.Errorf("outpost-migrate restart %q, want \"no\"", migrate.Restart)
	}
	if migrate.StopGracePeriod == "" {
		t.Error("outpost-migrate needs a stop_grace_period to release the lock")
	}
	for _, store := range []string{"redis", "postgres"} {
		if migrate.DependsOn[store].Condition != "service_healthy" {
			t.Errorf("outpost-migrate must wait for %s to be healthy", store)
		}
		if s, ok := c.Services[store]; !ok || s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s needs a healthcheck", store)
		}
	}

	// The server: serve, only after the migration completed successfully.
	if !reflect.DeepEqual(server.Command, []string{"serve"}) {
		t.Errorf("outpost runs %q", server.Command)
	}
	if server.DependsOn["outpost-migrate"].Condition != "service_completed_successfully" {
		t.Errorf("outpost must depend on outpost-migrate with service_completed_successfully, got %+v", server.DependsOn)
	}
	// Two images: the migration from outpost-migrate (built here from the
	// repository's Dockerfile unless a pushed tag is given), the server from
	// Outpost's own image, which has `serve`.
	if migrate.Image != "${OUTPOST_MIGRATE_IMAGE:-outpost-migrate:latest}" || migrate.Build == nil || migrate.Build.Context != "../.." {
		t.Errorf("outpost-migrate: image %q build %+v", migrate.Image, migrate.Build)
	} else if _, err := os.Stat(filepath.Join(migrate.Build.Context, "Dockerfile")); err != nil {
		t.Errorf("outpost-migrate's build context has no Dockerfile: %v", err)
	}
	if !strings.HasPrefix(server.Image, "${OUTPOST_IMAGE:-hookdeck/outpost:v") {
		t.Errorf("outpost: image %q, want Outpost's own, pinned", server.Image)
	}
	recipetest.CheckParses(t, "outpost-migrate", migrate.Command)
	if server.EnvFile != ".env" || migrate.EnvFile != ".env" {
		t.Error("both services read .env, as in the guide")
	}
}

func TestEnvExampleConfiguresBothStores(t *testing.T) {
	f, err := os.Open(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		keys[k] = v
	}
	if keys["REDIS_HOST"] != "redis" || !strings.Contains(keys["POSTGRES_URL"], "@postgres:") {
		t.Errorf("settings %v must point at the compose services", keys)
	}
}
