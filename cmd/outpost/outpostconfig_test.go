package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// outpostExample is Outpost's own .outpost.yaml.example (hookdeck/outpost,
// copied unchanged into testdata) with its Redis port pointed at port.
func outpostExample(t *testing.T, port int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "outpost.yaml.example"))
	require.NoError(t, err)
	const line = "port: 6379 # Default Redis port"
	require.Contains(t, string(b), line)
	return strings.Replace(string(b), line, "port: "+itoa(port), 1)
}

// outpostDotenv is the same configuration as a .env file, with some of
// Outpost's other variables.
func outpostDotenv(port int) string {
	return "REDIS_HOST=127.0.0.1\nREDIS_PORT=" + itoa(port) + "\nREDIS_PASSWORD=\nAPI_KEY=secret-api-key\nAES_ENCRYPTION_SECRET=0123456789abcdef\nRABBITMQ_SERVER_URL=amqp://guest:guest@localhost:5672\n"
}

// TestOutpostConfigAtEachDefaultPath puts Outpost's example configuration
// at each path of Outpost's search (the absolute ones under a test root),
// alone, and runs the binary with no --config and no CONFIG: it finds the
// file, names it in the report and the text output, reads it, and reaches
// the Redis it names. The example's other sections are accepted quietly:
// no warning, one debug line with -v.
func TestOutpostConfigAtEachDefaultPath(t *testing.T) {
	srv := servertest.Redis(t)
	client := srv.Client(t)
	o := seedTenants(t, client, 10)
	for i, rel := range config.SearchPaths("/") {
		t.Run(rel, func(t *testing.T) {
			wd, root := t.TempDir(), t.TempDir()
			path := config.SearchPaths(root)[i]
			if !filepath.IsAbs(rel) {
				path = filepath.Join(wd, rel)
			}
			body := outpostExample(t, srv.Port)
			if strings.HasSuffix(rel, ".env") {
				body = outpostDotenv(srv.Port)
			}
			writeIn(t, "/", path, body)
			envs := map[string]string{"OUTPOST_TEST_CONFIG_ROOT": root}
			args := []string{"migrate", "status", "-v"}
			if i == 0 {
				args = []string{"migrate", "apply", "--yes", "-v"}
			}
			r := runIn(t, wd, envs, "", args...)
			require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
			tg := targetsOf(r)
			want := path
			if !filepath.IsAbs(rel) {
				want = rel
			}
			require.Equal(t, want, tg["config_file"])
			require.Equal(t, srv.Addr, tg["redis"].(map[string]any)["addr"])
			requireSQLSkipped(t, r)
			require.NotRegexp(t, `(?m)^.*WARN.*(service|mqs|aes_encryption_secret|topics|portal|destinations|api_key)`, r.stderr, "Outpost's other settings are accepted quietly")
			if !strings.HasSuffix(rel, ".env") {
				require.Equal(t, 1, strings.Count(r.stderr, "not read by the migration tool"), r.stderr)
				require.Contains(t, r.stderr, "mqs, aes_encryption_secret, topics")
			}
			text := runInRaw(t, wd, envs, "", "migrate", "status", "--output", "text")
			require.Equal(t, 0, text.code, text.stderr)
			require.Contains(t, text.stdout, "config    "+want)
			require.Contains(t, text.stdout, "sql       skipped: no log store is configured")
		})
	}
	requireMigrated(t, client, o)
}

// TestConfigSearchOrder: with a file at every path but ./.env, the
// second in Outpost's order (.outpost.yaml) wins over all that follow it;
// --config or CONFIG replaces the search.
func TestConfigSearchOrder(t *testing.T) {
	srv := servertest.Redis(t)
	wd, root := t.TempDir(), t.TempDir()
	for i, p := range config.SearchPaths(root) {
		if !filepath.IsAbs(config.SearchPaths("/")[i]) {
			p = filepath.Join(wd, p)
		}
		// Only the one that should win points at the server.
		port := 1
		if i == 1 {
			port = srv.Port
		}
		body := outpostExample(t, port)
		if strings.HasSuffix(p, ".env") {
			if i == 0 {
				continue // ./.env would win: the test is that .outpost.yaml beats the rest
			}
			body = outpostDotenv(port)
		}
		writeIn(t, "/", p, body)
	}
	envs := map[string]string{"OUTPOST_TEST_CONFIG_ROOT": root}
	r := runIn(t, wd, envs, "", "migrate", "status")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, ".outpost.yaml", targetsOf(r)["config_file"])

	named := writeIn(t, t.TempDir(), "named.yaml", "redis:\n  port: "+itoa(srv.Port)+"\n")
	for _, e := range []map[string]string{{"CONFIG": named}, {}} {
		args := []string{"migrate", "status"}
		if len(e) == 0 {
			args = append([]string{"--config", named}, args...)
		}
		e["OUTPOST_TEST_CONFIG_ROOT"] = root
		r := runIn(t, wd, e, "", args...)
		require.Equal(t, 0, r.code, r.stdout)
		require.Equal(t, named, targetsOf(r)["config_file"])
	}
}

// TestClickHouseAddrChoosesClickHouse: with CLICKHOUSE_ADDR (and no
// POSTGRES_URL) the SQL phase is ClickHouse's, as Outpost chooses: an
// unreachable ClickHouse is exit 69 before anything is migrated, never a
// silently skipped log store. (The ClickHouse phase itself:
// clickhouse_test.go.)
func TestClickHouseAddrChoosesClickHouse(t *testing.T) {
	srv := servertest.Redis(t)
	client := srv.Client(t)
	seedTenants(t, client, 10)
	before, err := client.DBSize(context.Background()).Result()
	require.NoError(t, err)
	envs := redisEnv(srv)
	envs["CLICKHOUSE_ADDR"] = closedAddr(t)
	r := runIn(t, t.TempDir(), envs, "", "migrate", "apply", "--yes")
	require.Equal(t, 69, r.code, "%s\n%s", r.stdout, r.stderr)
	sql := targetsOf(r)["sql"].(map[string]any)
	require.Equal(t, report.SQLConfigured, sql["state"])
	require.Equal(t, report.StoreClickHouse, sql["store"])
	require.Contains(t, r.rep["msg"], "ClickHouse")
	after, err := client.DBSize(context.Background()).Result()
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing migrated when the log store is unreachable")
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestDevClusterHostOverride: a cluster whose nodes announce a host name
// the tool cannot resolve (cluster-announce-hostname with
// cluster-preferred-endpoint-type hostname, as behind Docker). Without
// REDIS_DEV_CLUSTER_HOST_OVERRIDE the run cannot reach the nodes; with it
// (environment or redis.dev_cluster_host_override) every node is dialled
// at REDIS_HOST with its announced port, and apply migrates every key.
//
// The name has a label over 63 characters, which Go's resolver refuses
// before any query (GODEBUG=netdns=go keeps the lookup in Go): nothing
// leaves the loopback interface.
func TestDevClusterHostOverride(t *testing.T) {
	unreachable := strings.Repeat("n", 64) + ".invalid"
	cl := servertest.RedisCluster(t,
		servertest.WithConfig("cluster-announce-hostname", unreachable),
		servertest.WithConfig("cluster-preferred-endpoint-type", "hostname"))
	// The test's own client needs the override too (its own code, not the
	// tool's), and Go's resolver for the same reason as the binary.
	net.DefaultResolver.PreferGo = true
	opts := cl.Options()
	opts.NewClient = func(o *redis.Options) *redis.Client {
		_, port, err := net.SplitHostPort(o.Addr)
		require.NoError(t, err)
		o.Addr = net.JoinHostPort(cl.Host, port)
		return redis.NewClient(o)
	}
	client := redis.NewClusterClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	o := seedTenants(t, client, 30)
	envs := map[string]string{"REDIS_HOST": cl.Host, "REDIS_PORT": itoa(cl.Ports[0]), "REDIS_CLUSTER_ENABLED": "true", "GODEBUG": "netdns=go"}
	dir := t.TempDir()

	r := runIn(t, dir, envs, "", "migrate", "apply", "--yes")
	require.Equal(t, 69, r.code, "%s\n%s", r.stdout, r.stderr)
	require.Contains(t, r.rep["error"].(map[string]any)["message"], unreachable)

	envs["REDIS_DEV_CLUSTER_HOST_OVERRIDE"] = "true"
	r = runIn(t, dir, envs, "", "migrate", "apply", "--yes")
	require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
	require.Equal(t, "applied", r.rep["outcome"])
	requireMigrated(t, client, o)

	delete(envs, "REDIS_DEV_CLUSTER_HOST_OVERRIDE")
	p := writeIn(t, dir, "outpost.yaml", "redis:\n  cluster_enabled: true\n  dev_cluster_host_override: true\n")
	r = runIn(t, dir, envs, "", "--config", p, "migrate", "verify")
	require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
}

// TestSavedPlanAcrossConfigFiles: a plan made with the settings in one file
// applies with the same settings from another (a .env in CI, Outpost's
// mounted config in the cluster): the config file names no store.
func TestSavedPlanAcrossConfigFiles(t *testing.T) {
	srv := servertest.Redis(t)
	client := srv.Client(t)
	o := seedTenants(t, client, 10)
	dir := t.TempDir()
	yml := writeIn(t, dir, "outpost.yaml", outpostExample(t, srv.Port))
	env := writeIn(t, dir, "ci.env", outpostDotenv(srv.Port))
	plan := filepath.Join(dir, "plan.json")
	r := run(t, nil, "--config", env, "migrate", "plan", "--out", plan)
	require.Equal(t, 0, r.code, r.stdout)
	r = run(t, map[string]string{"CONFIG": yml}, "migrate", "apply", "--yes", "--plan", plan)
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, yml, targetsOf(r)["config_file"])
	requireMigrated(t, client, o)
}
