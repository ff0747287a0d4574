// Package compose holds the Docker Compose recipe; its test checks the
// dependency chain the guide relies on.
package compose

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type dependency struct {
	Condition string `yaml:"condition"`
}

type service struct {
	Image       string                `yaml:"image"`
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
	if server.Image != migrate.Image || !strings.Contains(migrate.Image, "hookdeck/outpost") {
		t.Errorf("images %q and %q", migrate.Image, server.Image)
	}
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
