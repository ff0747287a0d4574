package config_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/report"
)

// TestTableIsOneDefinition: every row names a distinct key, environment
// variable and flag, and every derived view (env names, flags, the .env
// and YAML readers, the secret list) agrees with the table.
func TestTableIsOneDefinition(t *testing.T) {
	keys, envs, flags := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range config.Table {
		require.False(t, keys[s.Key] || envs[s.Env] || flags[s.Flag], "duplicate in row %s", s.Key)
		keys[s.Key], envs[s.Env], flags[s.Flag] = true, true, true
		require.Equal(t, s.Env, config.EnvNames[s.Key])
		require.NotEmpty(t, s.Help, s.Key)
		if s.Kind == config.KindBool {
			require.Empty(t, s.Placeholder, "a bool flag takes no value: %s", s.Key)
		}
		require.Equal(t, strings.HasPrefix(s.Env, "REDIS_") || s.Key == config.KeyDeploymentID, s.Store() == "redis", s.Key)
	}
	require.Len(t, config.EnvNames, len(config.Table))
	require.Equal(t, []string{"REDIS_PASSWORD", "POSTGRES_URL", "CLICKHOUSE_PASSWORD"}, config.SecretEnvs())
	require.Equal(t, []string{"--redis-password", "--postgres-url", "--clickhouse-password"}, config.SecretFlags())

	// Each row is read from its env name, its .env name, its YAML path and
	// its flag.
	for _, s := range config.Table {
		val := sampleValue(t, s.Kind)
		got := config.FromEnv(func(k string) (string, bool) { return val, k == s.Env })
		require.Equal(t, config.Settings{s.Key: val}, got, s.Key)

		p := writeFile(t, "x.env", s.Env+"="+val+"\n")
		fromDotenv, _, err := config.ReadFile(p)
		require.NoError(t, err)
		require.Equal(t, config.Settings{s.Key: val}, fromDotenv, s.Key)

		yml := s.Key + ": " + val + "\n"
		if sec, name, ok := strings.Cut(s.Key, "."); ok {
			yml = sec + ":\n  " + name + ": " + val + "\n"
		}
		fromYAML, ignored, err := config.ReadFile(writeFile(t, "x.yaml", yml))
		require.NoError(t, err)
		require.Empty(t, ignored)
		require.Equal(t, config.Settings{s.Key: val}, fromYAML, s.Key)

		app := kingpin.New("t", "")
		f := config.RegisterFlags(app)
		arg := "--" + s.Flag + "=" + val
		if s.Kind == config.KindBool {
			arg = "--" + s.Flag
		}
		_, err = app.Parse([]string{arg})
		require.NoError(t, err, s.Flag)
		require.Equal(t, config.Settings{s.Key: val}, f.Settings(), s.Flag)
		require.True(t, f.IsSet(s.Key))

		c, err := config.Load(nil, config.Settings{s.Key: val}, "")
		require.NoError(t, err, s.Key)
		require.Equal(t, "environment", c.Sources[s.Key])
	}
}

// sampleValue is a valid value of each kind.
func sampleValue(t *testing.T, k config.Kind) string {
	switch k {
	case config.KindHost:
		return "redis.internal"
	case config.KindPort:
		return "7000"
	case config.KindNumber:
		return "0"
	case config.KindBool:
		return "true"
	case config.KindFile:
		return writeFile(t, "ca.pem", "x")
	case config.KindPostgresURL:
		return "postgres://u@db:5432/outpost"
	case config.KindAddr:
		return "ch:9000"
	}
	return "value-1"
}

// TestDotenvByName: as in Outpost, a name ending in .env in any case is a
// .env file (and, this tool's addition, one starting with .env).
func TestDotenvByName(t *testing.T) {
	for _, name := range []string{"PROD.ENV", "x.env", ".env.production", ".env"} {
		s, _, err := config.ReadFile(writeFile(t, name, "REDIS_HOST=h\n"))
		require.NoError(t, err, name)
		require.Equal(t, config.Settings{config.KeyRedisHost: "h"}, s, name)
	}
}

func TestAddr(t *testing.T) {
	for _, ok := range []string{"ch:9000", "[::1]:9000", "http://ch:8123", "https://ch:8443/"} {
		_, err := config.Load(nil, config.Settings{config.KeyClickHouseAddr: ok}, "")
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"ch", ":9000", "ch:0", "http://ch", "ch:port"} {
		_, err := config.Load(nil, config.Settings{config.KeyClickHouseAddr: bad}, "")
		configErr(t, err, config.KeyClickHouseAddr, "CLICKHOUSE_ADDR", "--clickhouse-addr")
	}
}

func TestSecretsOfAFile(t *testing.T) {
	s := config.Settings{config.KeyRedisPass: "a", config.KeyRedisHost: "h", config.KeyClickHousePass: "b", config.KeyPostgres: "postgres://u:c@h/db"}
	got := config.Secrets(s)
	sort.Strings(got)
	require.Equal(t, []string{"a", "b", "postgres://u:c@h/db"}, got)
	c, err := config.Load(nil, s, "")
	require.NoError(t, err)
	got = c.Secrets()
	sort.Strings(got)
	require.Equal(t, []string{"a", "b", "postgres://u:c@h/db"}, got)
}

// TestHostWithAPort: Outpost writes host + ":" + port, so a host that
// carries a port is a broken address there too: 78 naming REDIS_HOST and
// the split, not a connection attempt (69). An IPv6 address is a host,
// with or without brackets.
func TestHostWithAPort(t *testing.T) {
	for v, why := range map[string]string{
		"127.0.0.1:6379": "set REDIS_HOST=127.0.0.1 and REDIS_PORT=6379",
		"redis:6379":     "set REDIS_HOST=redis and REDIS_PORT=6379",
		"[::1]:6379":     "set REDIS_HOST=::1 and REDIS_PORT=6379",
		"[nope]":         "is not a host name or address",
		"user@h":         "is not a host name or address",
	} {
		_, err := config.Load(nil, config.Settings{config.KeyRedisHost: v}, "")
		configErr(t, err, config.KeyRedisHost, why, "REDIS_HOST", "--redis-host")
	}
	for _, v := range []string{"::1", "[::1]"} {
		c, err := config.Load(nil, config.Settings{config.KeyRedisHost: v}, "")
		require.NoError(t, err)
		require.Equal(t, "[::1]:6379", c.Redis.Addr(), v)
	}
}

// TestEmptyValueSetsNothing: as in Outpost, REDIS_PORT= (present, empty)
// leaves the file's value or the default.
func TestEmptyValueSetsNothing(t *testing.T) {
	p := writeFile(t, "o.yaml", "redis:\n  port: 7001\n  password: \"\"\nclickhouse:\n  addr: \"\"\n")
	c, err := config.Load(config.Settings{config.KeyRedisHost: ""}, config.Settings{config.KeyRedisPort: ""}, p)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7001", c.Redis.Addr())
	require.Equal(t, "", c.ClickHouse.Addr)
	require.Equal(t, "", c.LogStore())
}

// TestOutpostExampleConfig reads Outpost's own .outpost.yaml.example (a
// copy in testdata): every section is accepted, the stores' settings are
// read, the rest is listed as ignored.
func TestOutpostExampleConfig(t *testing.T) {
	c, err := config.Load(nil, nil, filepath.Join("testdata", "outpost.yaml.example"))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6379", c.Redis.Addr())
	require.Equal(t, "outpost", c.ClickHouse.Database)
	require.Equal(t, "", c.LogStore(), "its clickhouse addr is empty: no log store")
	require.Equal(t, "file testdata/outpost.yaml.example", c.Sources[config.KeyRedisPort])
	for _, k := range []string{"service", "mqs", "aes_encryption_secret", "topics", "portal", "destinations", "api_port"} {
		require.Contains(t, c.Ignored, k)
	}
	require.NotContains(t, c.Ignored, "redis")
	require.NotContains(t, c.Ignored, "clickhouse")
}

func TestYAMLNullsAndAliases(t *testing.T) {
	p := writeFile(t, "a.yaml", "common: &h redis.internal\nredis:\n  host: *h\n  password: ~\npostgres:\n")
	c, err := config.Load(nil, nil, p)
	require.NoError(t, err)
	require.Equal(t, "redis.internal", c.Redis.Host)
	require.Equal(t, "", c.Redis.Password)
	require.Equal(t, "", c.PostgresURL)
}

// TestLocate: Outpost's search order, the conflict rule, and the absolute
// paths under a root a test can move.
func TestLocate(t *testing.T) {
	require.Equal(t, []string{".env", ".outpost.yaml", "config/outpost.yaml", "config/outpost/config.yaml", "config/outpost/.env",
		"/config/outpost.yaml", "/config/outpost/config.yaml", "/config/outpost/.env"}, config.SearchPaths("/"))

	_, err := config.Locate("a.yaml", "b.yaml", true, "/")
	configErr(t, err, "config", "--config a.yaml and CONFIG=b.yaml name different config files")
	p, err := config.Locate("a.yaml", "a.yaml", true, "/")
	require.NoError(t, err)
	require.Equal(t, "a.yaml", p)
	p, err = config.Locate("", "b.yaml", true, "/")
	require.NoError(t, err)
	require.Equal(t, "b.yaml", p)

	wd := t.TempDir()
	root := t.TempDir()
	t.Chdir(wd)
	p, err = config.Locate("", "", true, root)
	require.NoError(t, err)
	require.Equal(t, "", p, "nothing there")
	// Create every path from last to first: each new one wins.
	paths := config.SearchPaths(root)
	for i := len(paths) - 1; i >= 0; i-- {
		require.NoError(t, os.MkdirAll(filepath.Dir(paths[i]), 0o755))
		require.NoError(t, os.WriteFile(paths[i], nil, 0o600))
		p, err = config.Locate("", "", true, root)
		require.NoError(t, err)
		require.Equal(t, paths[i], p)
		if i == 0 {
			p, err = config.Locate("", "", false, root)
			require.NoError(t, err)
			require.Equal(t, "", p, "no search when told not to")
		}
	}
}

// TestResolveScope: Redis always; SQL when a log store is configured,
// skipped with a reason otherwise, an error when it is required.
func TestResolveScope(t *testing.T) {
	both := config.Scope{SQL: true, Redis: true}
	load := func(env config.Settings) *config.Config {
		c, err := config.Load(nil, env, "")
		require.NoError(t, err)
		return c
	}
	none := load(nil)
	sc, sql, err := none.Resolve(both, false)
	require.NoError(t, err)
	require.Equal(t, config.Scope{Redis: true}, sc)
	require.Equal(t, report.SQLNotConfigured, sql.State)
	require.Contains(t, sql.Message, "no log store is configured")
	_, _, err = none.Resolve(config.Scope{SQL: true}, true)
	configErr(t, err, config.KeyPostgres, "no log store is configured", "POSTGRES_URL")
	sc, sql, err = none.Resolve(config.Scope{Redis: true}, false)
	require.NoError(t, err)
	require.Nil(t, sql)
	require.Equal(t, config.Scope{Redis: true}, sc)

	pg := load(config.Settings{config.KeyPostgres: "postgres://u@h/db", config.KeyClickHouseAddr: "ch:9000"})
	sc, sql, err = pg.Resolve(both, false)
	require.NoError(t, err)
	require.Equal(t, both, sc)
	require.Equal(t, &report.SQLTarget{State: report.SQLConfigured, Store: report.StorePostgres}, sql, "PostgreSQL first, as Outpost chooses")

	ch := load(config.Settings{config.KeyClickHouseAddr: "ch:9000"})
	sc, sql, err = ch.Resolve(both, false)
	require.NoError(t, err)
	require.Equal(t, both, sc, "CLICKHOUSE_ADDR without POSTGRES_URL: the SQL phase runs on ClickHouse")
	require.Equal(t, &report.SQLTarget{State: report.SQLConfigured, Store: report.StoreClickHouse}, sql)
	sc, _, err = ch.Resolve(config.Scope{SQL: true}, true)
	require.NoError(t, err)
	require.Equal(t, config.Scope{SQL: true}, sc)
}
