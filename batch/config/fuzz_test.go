package config_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/report"
)

// fuzzSecret is planted in fuzzed PostgreSQL URLs: whatever is wrong with
// the URL, no error message may quote it.
const fuzzSecret = "S3cr3t-Pa55-xyzzy"

// checkConfig asserts Load's contract for any input: a Config that keeps
// the invariants, or a CONFIG_INVALID error naming a setting; never both,
// never neither, never a panic.
func checkConfig(t *testing.T, c *config.Config, err error) {
	t.Helper()
	if err != nil {
		if c != nil {
			t.Fatalf("both a config and an error: %v", err)
		}
		if code := report.CodeOf(err); code != report.CodeConfig {
			t.Fatalf("error of code %s, want %s: %v", code, report.CodeConfig, err)
		}
		if report.DetailsOf(err)["setting"] == nil {
			t.Fatalf("error names no setting: %v", err)
		}
		for _, form := range []string{fuzzSecret, url.QueryEscape(fuzzSecret), url.PathEscape(fuzzSecret)} {
			if strings.Contains(err.Error(), form) {
				t.Fatalf("error quotes the secret: %v", err)
			}
		}
		return
	}
	if c == nil {
		t.Fatal("neither a config nor an error")
	}
	r := c.Redis
	if r.Host == "" || strings.ContainsAny(r.Host, " /") {
		t.Fatalf("accepted host %q", r.Host)
	}
	if r.Port < 1 || r.Port > 65535 {
		t.Fatalf("accepted port %d", r.Port)
	}
	if r.Database < 0 || r.Cluster && r.Database != 0 {
		t.Fatalf("accepted database %d (cluster %v)", r.Database, r.Cluster)
	}
	if strings.ContainsAny(c.DeploymentID, " {}\t\n") {
		t.Fatalf("accepted deployment id %q", c.DeploymentID)
	}
	if c.PostgresURL != "" && !strings.HasPrefix(c.PostgresURL, "postgres://") && !strings.HasPrefix(c.PostgresURL, "postgresql://") {
		t.Fatalf("accepted postgres URL %q", c.PostgresURL)
	}
}

// FuzzReadYAML feeds arbitrary bytes as a YAML config file through
// ReadFile and Load.
func FuzzReadYAML(f *testing.F) {
	for _, s := range []string{
		// The storage spec's example, verbatim.
		"deployment_id: \"\"\npostgres: postgres://user:pass@host:5432/db?sslmode=disable\nredis:\n  host: localhost\n  port: 6379\n  username: \"\"\n  password: \"\"\n  database: 0\n  tls_enabled: false\n  cluster_enabled: false\n",
		"redis:\n  host: [oops\n",
		"redis:\n  port: {a: 1}\n",
		"redis:\n  hots: x\n",
		"redis:\n  cluster_enabled: true\n  database: 3\n",
		"redis: localhost\n",
		"- a\n- b\n",
		"log_level: debug\nredis:\n  tls_enabled: yes\n  tls_ca_file: /nonexistent\n",
		"redis: &r\n  host: h\nother: *r\n",
		"redis:\n  port: !!binary AAAA\n",
		"redis:\n  port: 0x10\n  database: 007\n",
		"---\n---\n",
		"deployment_id: \"a b\"\n",
		"postgres: postgres://u:" + fuzzSecret + "@h:99999/db\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "outpost.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, _, err := config.ReadFile(p)
		if err != nil {
			if code := report.CodeOf(err); code != report.CodeConfig {
				t.Fatalf("ReadFile: error of code %s: %v", code, err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadFile: error does not name the file: %v", err)
			}
		} else if s == nil {
			t.Fatal("ReadFile: nil settings without an error")
		}
		c, err := config.Load(nil, nil, p)
		checkConfig(t, c, err)
	})
}

// FuzzReadDotenv is FuzzReadYAML for .env files.
func FuzzReadDotenv(f *testing.F) {
	for _, s := range []string{
		"REDIS_HOST=h\nREDIS_PORT=6379\n",
		"export REDIS_PASSWORD=\"a b#c\"\n",
		"REDIS_PORT='unterminated\n",
		"REDIS_CLUSTER_ENABLED=1\nREDIS_DATABASE=2\n",
		"POSTGRES_URL=postgres://u:" + fuzzSecret + "@/db\n",
		"=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), ".env")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(nil, nil, p)
		checkConfig(t, c, err)
	})
}

// FuzzLoadSettings fuzzes the values of every setting as environment
// variables (flags and file values take the same path through Load). The
// PostgreSQL URL is built around a recognisable password.
func FuzzLoadSettings(f *testing.F) {
	f.Add("localhost", "6379", "0", "false", "false", "false", "", "postgres://u:", "@h:5432/db?sslmode=require")
	f.Add("redis.internal", "70000", "2", "true", "yes", "0", "prod", "postgres://u:", "@/db")
	f.Add("h", "abc", "-1", "maybe", "on", "off", "a{b}", "mysql://", "@h/db")
	f.Add("", "0", "x", "1", "TRUE", "no", " ", "postgresql://u:", "@h:99999/")
	f.Add("a b", " 6379 ", "00", "", "", "", "dep", "postgres://", "@[::1]:5432/db")
	f.Fuzz(func(t *testing.T, host, port, db, tls, cluster, skip, dep, pgBefore, pgAfter string) {
		env := config.Settings{
			config.KeyRedisHost:    host,
			config.KeyRedisPort:    port,
			config.KeyRedisDB:      db,
			config.KeyRedisTLS:     tls,
			config.KeyRedisCluster: cluster,
			config.KeyRedisTLSSkip: skip,
			config.KeyDeploymentID: dep,
			config.KeyPostgres:     pgBefore + fuzzSecret + pgAfter,
		}
		c, err := config.Load(nil, env, "")
		checkConfig(t, c, err)
	})
}
