package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/report"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// configErr asserts err is a CONFIG_INVALID error naming setting and
// containing every fragment, and returns its message.
func configErr(t *testing.T, err error, setting string, fragments ...string) string {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, report.CodeConfig, report.CodeOf(err), "%v", err)
	if setting != "" {
		require.Equal(t, setting, report.DetailsOf(err)["setting"], "%v", err)
	}
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
	return err.Error()
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(nil, nil, "")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6379", c.Redis.Addr(), "Outpost's default")
	require.Equal(t, "outpost", c.ClickHouse.Database, "Outpost's default")
	require.Equal(t, "", c.Prefix())
	require.False(t, c.Redis.TLS || c.Redis.Cluster || c.Redis.TLSInsecure || c.Redis.HostOverride)
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "outpost.yaml", `
deployment_id: dep1
postgres: postgres://u:p@db:5432/outpost?sslmode=require
redis:
  host: file-host
  port: 1111
  database: 1
  tls_enabled: true
`)
	env := config.Settings{config.KeyRedisPort: "2222", config.KeyRedisHost: "env-host"}
	flags := config.Settings{config.KeyRedisHost: "flag-host"}
	c, err := config.Load(flags, env, file)
	require.NoError(t, err)
	require.Equal(t, "flag-host:2222", c.Redis.Addr())
	require.Equal(t, 1, c.Redis.Database)
	require.True(t, c.Redis.TLS)
	require.Equal(t, "dep1:", c.Prefix())
	require.Equal(t, "flag", c.Sources[config.KeyRedisHost])
	require.Equal(t, "environment", c.Sources[config.KeyRedisPort])
	require.Equal(t, "file "+file, c.Sources[config.KeyRedisDB])
}

func TestFromEnvUsesOutpostNames(t *testing.T) {
	envs := map[string]string{"REDIS_HOST": "h", "REDIS_PORT": "7000", "REDIS_CLUSTER_ENABLED": "true", "POSTGRES_URL": "postgres://h/db", "UNRELATED": "x"}
	s := config.FromEnv(func(k string) (string, bool) { v, ok := envs[k]; return v, ok })
	require.Equal(t, config.Settings{config.KeyRedisHost: "h", config.KeyRedisPort: "7000", config.KeyRedisCluster: "true", config.KeyPostgres: "postgres://h/db"}, s)
}

// TestBadValues is the table of wrong values: each is CONFIG_INVALID and
// names the setting and the source it came from.
func TestBadValues(t *testing.T) {
	cases := []struct {
		name    string
		env     config.Settings
		setting string
		msg     string
	}{
		{"port zero", config.Settings{config.KeyRedisPort: "0"}, config.KeyRedisPort, `"0" is not a port number (1-65535)`},
		{"port too big", config.Settings{config.KeyRedisPort: "70000"}, config.KeyRedisPort, `"70000" is not a port number`},
		{"port word", config.Settings{config.KeyRedisPort: "abc"}, config.KeyRedisPort, `"abc" is not a port number`},
		{"port negative", config.Settings{config.KeyRedisPort: "-1"}, config.KeyRedisPort, "not a port number"},
		{"empty host", config.Settings{config.KeyRedisHost: "  "}, config.KeyRedisHost, "is empty"},
		{"host with a path", config.Settings{config.KeyRedisHost: "redis://h/0"}, config.KeyRedisHost, "not a host name"},
		{"database word", config.Settings{config.KeyRedisDB: "zero"}, config.KeyRedisDB, "not a database number"},
		{"database negative", config.Settings{config.KeyRedisDB: "-2"}, config.KeyRedisDB, "not a database number"},
		{"tls not a bool", config.Settings{config.KeyRedisTLS: "maybe"}, config.KeyRedisTLS, `"maybe" is not a boolean`},
		{"cluster not a bool", config.Settings{config.KeyRedisCluster: "2"}, config.KeyRedisCluster, "not a boolean"},
		{"skip verify not a bool", config.Settings{config.KeyRedisTLSSkip: "y"}, config.KeyRedisTLSSkip, "not a boolean"},
		{"missing CA file", config.Settings{config.KeyRedisTLSCA: "/nonexistent/ca.pem"}, config.KeyRedisTLSCA, "cannot read the CA file"},
		{"deployment id with a brace", config.Settings{config.KeyDeploymentID: "a{b}"}, config.KeyDeploymentID, "spaces or braces"},
		{"postgres scheme", config.Settings{config.KeyPostgres: "mysql://u@h/db"}, config.KeyPostgres, "postgres:// or postgresql://"},
		{"postgres no host", config.Settings{config.KeyPostgres: "postgres:///db"}, config.KeyPostgres, "has no host"},
		{"postgres no database", config.Settings{config.KeyPostgres: "postgres://h:5432/"}, config.KeyPostgres, "names no database"},
		{"postgres port", config.Settings{config.KeyPostgres: "postgres://h:99999/db"}, config.KeyPostgres, `port "99999"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Load(nil, c.env, "")
			msg := configErr(t, err, c.setting, c.msg, "from environment")
			// The message names the environment variable and the flag too.
			if env, ok := config.EnvNames[c.setting]; ok {
				require.Contains(t, msg, env)
			}
			require.Equal(t, "environment", report.DetailsOf(err)["source"])
		})
	}
}

// TestClusterIgnoresTheDatabase: as in Outpost, REDIS_DATABASE means
// nothing in cluster mode (a cluster has only database 0): 0 is used and a
// warning says so.
func TestClusterIgnoresTheDatabase(t *testing.T) {
	c, err := config.Load(nil, config.Settings{config.KeyRedisCluster: "true", config.KeyRedisDB: "2"}, "")
	require.NoError(t, err)
	require.Equal(t, 0, c.Redis.Database)
	require.Len(t, c.Warnings, 1)
	require.Contains(t, c.Warnings[0], "REDIS_DATABASE")
	require.Contains(t, c.Warnings[0], "only database 0")
	c, err = config.Load(nil, config.Settings{config.KeyRedisDB: "2"}, "")
	require.NoError(t, err)
	require.Equal(t, 2, c.Redis.Database)
	require.Empty(t, c.Warnings)
}

func TestPostgresURLErrorsDoNotQuoteTheURL(t *testing.T) {
	const pw = "S3cr3t-Pa55-xyzzy"
	for _, v := range []string{
		"postgres://u:" + pw + "@h:5432/",
		"postgres://u:" + pw + "@/db",
		"postgres://u:" + pw + "@h:99999/db",
		"postgres://u:" + pw + "@h:5432/db\x7f",
		"postgres://u:" + pw + "@[::1/db",
		"mysql://u:" + pw + "@h/db",
	} {
		_, err := config.Load(nil, config.Settings{config.KeyPostgres: v}, "")
		msg := configErr(t, err, config.KeyPostgres)
		require.NotContains(t, msg, pw, v)
	}
}

func TestYAMLFile(t *testing.T) {
	p := writeFile(t, "outpost.yaml", `
# an Outpost config file carries much more than this tool reads
log_level: debug
deployment_id: prod
postgres: "postgres://outpost:pw@db:5432/outpost?sslmode=verify-full"
redis:
  host: redis.internal
  port: 6380
  username: outpost
  password: "p:w#1"
  database: 0
  tls_enabled: yes
  tls_insecure_skip_verify: false
  cluster_enabled: true
`)
	c, err := config.Load(nil, nil, p)
	require.NoError(t, err)
	require.Equal(t, "redis.internal:6380", c.Redis.Addr())
	require.Equal(t, "outpost", c.Redis.Username)
	require.Equal(t, "p:w#1", c.Redis.Password)
	require.True(t, c.Redis.TLS)
	require.True(t, c.Redis.Cluster)
	require.Equal(t, "prod:", c.Prefix())
	require.Equal(t, []string{"log_level"}, c.Ignored)

	// An empty file is no settings, not an error.
	c, err = config.Load(nil, nil, writeFile(t, "empty.yaml", ""))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6379", c.Redis.Addr())
}

// TestBadFiles: each broken file is CONFIG_INVALID with the file and, for
// YAML, the line.
func TestBadFiles(t *testing.T) {
	cases := []struct {
		name, file, body, setting string
		fragments                 []string
	}{
		{"yaml syntax", "a.yaml", "redis:\n  host: [oops\n", "config", []string{"not valid YAML", "line"}},
		{"yaml tab indent", "b.yaml", "redis:\n\thost: x\n", "config", []string{"not valid YAML", "line 2"}},
		{"yaml top level list", "c.yaml", "- a\n- b\n", "config", []string{"line 1", "top level must be a mapping"}},
		{"yaml top level scalar", "d.yaml", "just words\n", "config", []string{"top level must be a mapping"}},
		{"yaml redis not a mapping", "e.yaml", "redis: localhost\n", "redis", []string{"line 1", "redis must be a mapping"}},
		{"yaml unknown redis setting", "f.yaml", "redis:\n  host: h\n  passwrod: x\n", "redis.passwrod", []string{"line 3", "unknown setting redis.passwrod",
			"the settings under redis: are cluster_enabled, database, dev_cluster_host_override, host, password, port, tls_ca_file, tls_enabled, tls_insecure_skip_verify, username"}},
		{"yaml port is a mapping", "g.yaml", "redis:\n  port: {a: 1}\n", config.KeyRedisPort, []string{"line 2", "expected a single value, got a mapping"}},
		{"yaml host is a list", "h.yaml", "redis:\n  host: [a, b]\n", config.KeyRedisHost, []string{"line 2", "got a list"}},
		{"yaml clickhouse not a mapping", "m.yaml", "clickhouse: ch:9000\n", "clickhouse", []string{"line 1", "clickhouse must be a mapping"}},
		{"yaml clickhouse addr without port", "n.yaml", "clickhouse:\n  addr: ch\n", config.KeyClickHouseAddr, []string{`"ch" is not host:port`, "CLICKHOUSE_ADDR"}},
		{"yaml deployment_id is a list", "o.yaml", "deployment_id: [a]\n", config.KeyDeploymentID, []string{"line 1", "got a list"}},
		{"yaml port is a word", "i.yaml", "redis:\n  port: six\n", config.KeyRedisPort, []string{`"six" is not a port number`, "from file"}},
		{"yaml database is a float", "j.yaml", "redis:\n  database: 1.5\n", config.KeyRedisDB, []string{`"1.5" is not a database number`}},
		{"yaml tls is a word", "l.yaml", "redis:\n  tls_enabled: sometimes\n", config.KeyRedisTLS, []string{"not a boolean"}},
		{"dotenv unterminated quote", "prod.env", "REDIS_HOST=h\nREDIS_PORT='6379\n", "config", []string{"not a valid .env file"}},
		{"dotenv wrong type", ".env", "REDIS_PORT=sixty\n", config.KeyRedisPort, []string{`"sixty" is not a port number`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, c.file, c.body)
			_, err := config.Load(nil, nil, p)
			msg := configErr(t, err, c.setting, c.fragments...)
			require.Contains(t, msg, p, "the message names the file")
		})
	}
	_, err := config.Load(nil, nil, "/nonexistent/outpost.yaml")
	configErr(t, err, "config", "cannot read config file /nonexistent/outpost.yaml")
}

func TestDotenvReadsOnlyOutpostNames(t *testing.T) {
	p := writeFile(t, ".env.production", "# comment\nexport REDIS_HOST=r\nREDIS_PASSWORD=\"a b#c\"\nOTHER=1\nPOSTGRES_URL=postgres://u:p@h/db\n")
	s, warnings, err := config.ReadFile(p)
	require.NoError(t, err)
	require.Empty(t, warnings)
	require.Equal(t, config.Settings{config.KeyRedisHost: "r", config.KeyRedisPass: "a b#c", config.KeyPostgres: "postgres://u:p@h/db"}, s)
}

func TestScopeNames(t *testing.T) {
	require.Equal(t, []string{"sql", "redis"}, config.Scope{SQL: true, Redis: true}.Names())
	require.Equal(t, []string{"redis"}, config.Scope{Redis: true}.Names())
	require.True(t, strings.HasPrefix(config.DialTimeout.String(), "5s"))
}

// TestDotenvErrorsNameTheLineNotTheText: godotenv quotes the text around a
// syntax error, which may be a password (found by FuzzReadDotenv, kept in
// testdata/fuzz); the message gives the line instead.
func TestDotenvErrorsNameTheLineNotTheText(t *testing.T) {
	const pw = "S3cr3t-Pa55-xyzzy"
	cases := []struct {
		body string
		line string
	}{
		{"REDIS_HOST=h\nREDIS_PASSWORD='" + pw + "\n", "line 2: a quoted value is not terminated"},
		{"REDIS_HOST=h\n\nREDIS_PASSWORD " + pw + "\n", "line 3: unexpected character"},
		{pw + "\n", "line 1: unexpected character"},
		{"A=\"multi\nline\"\nREDIS_PASSWORD=" + pw + "\nbad line\n", "line 4: unexpected character"},
	}
	for _, c := range cases {
		p := writeFile(t, "prod.env", c.body)
		_, err := config.Load(nil, nil, p)
		msg := configErr(t, err, "config", "not a valid .env file", c.line)
		require.NotContains(t, msg, pw)
	}
}
