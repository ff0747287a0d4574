package main

// Issue #10, bad input: every wrong setting, flag, address, credential and
// TLS mistake through the real command line, each with its exact exit code,
// error.code and a message that names the problem (the line of a file, the
// setting and where it came from, the address, the missing permission).
// Nothing is written to a store by a run that fails this way.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

// badCase is one bad input and what the tool must answer.
type badCase struct {
	name    string
	envs    map[string]string
	args    []string
	code    int
	errCode string
	// msg are fragments of error.message, in any order.
	msg []string
	// setting is error.details.setting, when the error is about one.
	setting string
}

// badMerge returns a copy of base with extra's entries over it.
func badMerge(base map[string]string, extra ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		out[extra[i]] = extra[i+1]
	}
	return out
}

func badFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// badCheck runs one case in-process and asserts the answer.
func badCheck(t *testing.T, c badCase) *result {
	t.Helper()
	args := append([]string{"--output", "json"}, c.args...)
	r := run(t, c.envs, args...)
	require.Equal(t, c.code, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Equal(t, c.errCode, errorCode(r), r.stdout)
	require.Equal(t, true, r.rep["failed"])
	require.Equal(t, false, r.rep["changed"])
	require.NotEmpty(t, r.rep["outcome"])
	e := r.rep["error"].(map[string]any)
	for _, f := range c.msg {
		require.Contains(t, e["message"], f, r.stdout)
	}
	retryable := c.code == 69 || c.code == 75
	require.Equal(t, retryable, e["retryable"], "retryable for exit %d", c.code)
	if c.setting != "" {
		d, _ := e["details"].(map[string]any)
		require.NotNil(t, d, r.stdout)
		require.Equal(t, c.setting, d["setting"], r.stdout)
	}
	return r
}

// TestBadConfigAndFlags: files, settings and flags, no server needed.
func TestBadConfigAndFlags(t *testing.T) {
	dir := t.TempDir()
	status := []string{"migrate", "status", "--redis-only"}
	with := func(pre []string, post ...string) []string {
		return append(append(append([]string{}, pre...), status...), post...)
	}
	cases := []badCase{
		{name: "malformed YAML", args: with([]string{"--config", badFile(t, dir, "bad.yaml", "redis:\n  host: h\n  port: [6379\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"bad.yaml is not valid YAML", "line 2"}, setting: "config"},
		{name: "YAML top level is a list", args: with([]string{"--config", badFile(t, dir, "list.yaml", "- redis\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"line 1", "top level must be a mapping"}, setting: "config"},
		{name: "malformed .env", args: with([]string{"--config", badFile(t, dir, "prod.env", "REDIS_HOST=h\nREDIS_PORT='6379\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"prod.env is not a valid .env file", "line 2", "not terminated"}, setting: "config"},
		{name: "YAML wrong type: mapping for a port", args: with([]string{"--config", badFile(t, dir, "type.yaml", "redis:\n  port: {a: 1}\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"line 2", "expected a single value, got a mapping"}, setting: "redis.port"},
		{name: "YAML wrong type: word for a port", args: with([]string{"--config", badFile(t, dir, "word.yaml", "redis:\n  port: six\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"six" is not a port number`, "from file", "word.yaml"}, setting: "redis.port"},
		{name: "YAML wrong type: list for a bool", args: with([]string{"--config", badFile(t, dir, "bool.yaml", "redis:\n  tls_enabled: [yes]\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"line 2", "got a list"}, setting: "redis.tls_enabled"},
		{name: "unknown setting under redis", args: with([]string{"--config", badFile(t, dir, "unk.yaml", "redis:\n  host: h\n  pasword: x\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"line 3", "unknown setting redis.pasword"}, setting: "redis.pasword"},
		{name: "config file missing", args: with([]string{"--config", filepath.Join(dir, "nope.yaml")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"cannot read config file", "nope.yaml"}, setting: "config"},
		{name: "CONFIG names a missing file", envs: map[string]string{"CONFIG": filepath.Join(dir, "gone.yaml")}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"gone.yaml"}, setting: "config"},
		{name: "port 0 (flag)", args: with([]string{"--redis-port", "0"}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"0" is not a port number (1-65535)`, "from flag", "--redis-port"}, setting: "redis.port"},
		{name: "port 70000 (env)", envs: map[string]string{"REDIS_PORT": "70000"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"70000" is not a port number`, "from environment", "REDIS_PORT"}, setting: "redis.port"},
		{name: "port abc (file)", args: with([]string{"--config", badFile(t, dir, "port.yaml", "redis:\n  port: abc\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"abc" is not a port number`, "from file"}, setting: "redis.port"},
		{name: "database not a number", envs: map[string]string{"REDIS_DATABASE": "one"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"one" is not a database number`}, setting: "redis.database"},
		{name: "boolean that is not", envs: map[string]string{"REDIS_TLS_ENABLED": "sometimes"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"sometimes" is not a boolean`, "REDIS_TLS_ENABLED"}, setting: "redis.tls_enabled"},
		{name: "host with a scheme", envs: map[string]string{"REDIS_HOST": "redis://h:6379"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"is not a host name or address"}, setting: "redis.host"},
		{name: "CA file missing", envs: map[string]string{"REDIS_TLS_ENABLED": "true", "REDIS_TLS_CA_FILE": filepath.Join(dir, "ca.pem")}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"cannot read the CA file"}, setting: "redis.tls_ca_file"},
		{name: "CA file not PEM", envs: map[string]string{"REDIS_TLS_ENABLED": "true", "REDIS_TLS_CA_FILE": badFile(t, dir, "notpem.crt", "hello")}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"holds no PEM certificate"}, setting: "redis.tls_ca_file"},
		{name: "deployment id with braces", envs: map[string]string{"DEPLOYMENT_ID": "a{b}"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"must not contain spaces or braces"}, setting: "deployment_id"},
		{name: "--sql-only without a log store", args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"no log store is configured", "POSTGRES_URL"}, setting: "postgres"},
		{name: "ClickHouse protocol unknown", envs: map[string]string{"CLICKHOUSE_ADDR": "127.0.0.1:9000", "CLICKHOUSE_PROTOCOL": "grpc"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"neither native nor http"}, setting: "clickhouse.protocol"},
		{name: "force without a log store", args: []string{"migrate", "force", "3", "--yes"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"no log store is configured"}, setting: "postgres"},
		{name: "host with a port", envs: map[string]string{"REDIS_HOST": "127.0.0.1:6379"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"includes a port", "REDIS_PORT"}, setting: "redis.host"},
		{name: "host and port in brackets", envs: map[string]string{"REDIS_HOST": "[::1]:6379"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"includes a port", "REDIS_HOST=::1 and REDIS_PORT=6379"}, setting: "redis.host"},
		{name: "--config and CONFIG disagree", envs: map[string]string{"CONFIG": badFile(t, dir, "a.yaml", "")}, args: with([]string{"--config", badFile(t, dir, "b.yaml", "")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"name different config files"}, setting: "config"},
		{name: "unknown setting under clickhouse", args: with([]string{"--config", badFile(t, dir, "ch.yaml", "clickhouse:\n  adr: x\n")}),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"line 2", "unknown setting clickhouse.adr", "addr, database, password, protocol, tls_enabled, username"}, setting: "clickhouse.adr"},
		{name: "PostgreSQL URL of another scheme", envs: map[string]string{"POSTGRES_URL": "mysql://u@h/db"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"must be a postgres:// or postgresql:// URL"}, setting: "postgres"},
		{name: "PostgreSQL URL without a database", envs: map[string]string{"POSTGRES_URL": "postgres://u@h:5432/"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"names no database"}, setting: "postgres"},
		{name: "PostgreSQL sslmode unknown", envs: map[string]string{"POSTGRES_URL": "postgres://u@127.0.0.1:1/db?sslmode=sometimes"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"sslmode is invalid"}},

		{name: "unknown flag", args: with(nil, "--bogus"),
			code: 64, errCode: "USAGE", msg: []string{"unknown long flag '--bogus'"}},
		{name: "unknown command", args: []string{"migrate", "frobnicate"},
			code: 64, errCode: "USAGE", msg: []string{"frobnicate"}},
		{name: "flag value of the wrong type", args: []string{"migrate", "apply", "--yes", "--redis-only", "--lock-timeout", "soon"},
			code: 64, errCode: "USAGE", msg: []string{`--lock-timeout: "soon" is not a duration; use e.g. 30s, 10m`}},
		{name: "enum flag out of range", args: with([]string{"--log-format", "xml"}),
			code: 64, errCode: "USAGE", msg: []string{"must be one of text,json", "'xml'"}},
		{name: "exclusive scopes", args: []string{"migrate", "plan", "--sql-only", "--redis-only"},
			code: 64, errCode: "USAGE", msg: []string{"--sql-only and --redis-only exclude each other"}},
		{name: "negative sample", args: []string{"migrate", "verify", "--redis-only", "--sample", "-3"},
			code: 64, errCode: "USAGE", msg: []string{"--sample"}},
		{name: "tuning out of range: --window", args: []string{"migrate", "apply", "--yes", "--redis-only", "--window", "0"},
			code: 64, errCode: "USAGE", msg: []string{"--window 1..16"}},
		{name: "tuning out of range: --scan-count", args: []string{"migrate", "apply", "--yes", "--redis-only", "--scan-count", "0"},
			code: 64, errCode: "USAGE", msg: []string{"--scan-count must be 1..100000"}},
		{name: "tuning out of range: --parallel", args: []string{"migrate", "verify", "--redis-only", "--parallel", "65"},
			code: 64, errCode: "USAGE", msg: []string{"--parallel 1..64"}},
		{name: "apply without --yes and no terminal", args: []string{"migrate", "apply", "--redis-only"},
			code: 64, errCode: "CONFIRMATION_REQUIRED", msg: []string{"needs --yes", "nothing was changed"}},
		{name: "force without a version", args: []string{"migrate", "force"},
			code: 64, errCode: "USAGE", msg: []string{"version"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			badCheck(t, c)
		})
	}
}

// TestBadStores: addresses, credentials, permissions and TLS against real
// servers.
func TestBadStores(t *testing.T) {
	const pw = "right-Pa55"
	plain := servertest.Redis(t)
	locked := servertest.Redis(t, servertest.WithPassword(pw))
	tlsSrv := servertest.Redis(t, servertest.WithTLS())
	noEval := servertest.Redis(t, servertest.WithACLUser("noeval", pw, "~*", "&*", "+@all", "-eval", "-evalsha"))
	// Allowed the keys of deployment "cache" only: its entities and the
	// tool's own keys, hash-tagged on the lock's name ({cache:.outpost:...}).
	noKeys := servertest.Redis(t, servertest.WithACLUser("nokeys", pw, "~cache:*", "~{cache:*", "&*", "+@all"))
	closed := servertest.Redis(t)
	closedPort := closed.Port
	closed.Stop(t)
	pg := servertest.Postgres(t)
	roleURL := pg.CreateRole(t, "badinput_role", pw)
	otherCA, err := servertest.WriteTLSFiles(t.TempDir())
	require.NoError(t, err)

	// A legacy record on the servers that refuse: it must be untouched.
	ctx := context.Background()
	for _, s := range []*servertest.RedisServer{locked, noEval} {
		require.NoError(t, s.Client(t).HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	}

	local := func(port int, kv ...string) map[string]string {
		return badMerge(map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(port)}, kv...)
	}
	status := []string{"migrate", "status", "--redis-only"}
	apply := []string{"migrate", "apply", "--yes", "--redis-only"}
	sqlStatus := []string{"migrate", "status", "--sql-only"}
	cases := []badCase{
		{name: "unreachable: closed port", envs: local(closedPort), args: status,
			code: 69, errCode: "STORE_UNREACHABLE", msg: []string{"127.0.0.1:" + itoa(closedPort), "connection refused"}},
		{name: "unreachable: unknown host", envs: map[string]string{"REDIS_HOST": "outpost-redis.invalid"}, args: status,
			code: 69, errCode: "STORE_UNREACHABLE", msg: []string{"outpost-redis.invalid:6379"}},
		{name: "wrong password", envs: local(locked.Port, "REDIS_PASSWORD", "wrong-Pa55"), args: apply,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"WRONGPASS"}},
		{name: "no password", envs: local(locked.Port), args: apply,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"NOAUTH"}},
		{name: "ACL user without EVALSHA", envs: local(noEval.Port, "REDIS_USERNAME", "noeval", "REDIS_PASSWORD", pw), args: apply,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"NOPERM", "evalsha"}},
		{name: "ACL user without access to the keys", envs: local(noKeys.Port, "REDIS_USERNAME", "nokeys", "REDIS_PASSWORD", pw), args: status,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"NOPERM", "keys"}},
		{name: "TLS server, TLS off", envs: local(tlsSrv.Port), args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"speaks TLS but TLS is off", "REDIS_TLS_ENABLED=true"}, setting: "redis.tls_enabled"},
		{name: "TLS without the CA", envs: local(tlsSrv.Port), args: append([]string{"--redis-tls"}, status...),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"certificate did not verify", "x509", "--redis-tls-ca-file"}, setting: "redis.tls_ca_file"},
		{name: "TLS with another CA", envs: local(tlsSrv.Port, "REDIS_TLS_ENABLED", "true", "REDIS_TLS_CA_FILE", otherCA.CAFile), args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"certificate did not verify"}, setting: "redis.tls_ca_file"},
		{name: "TLS to a plaintext server", envs: local(plain.Port, "REDIS_TLS_ENABLED", "true", "REDIS_TLS_INSECURE_SKIP_VERIFY", "true"), args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"does not speak TLS but TLS is on"}, setting: "redis.tls_enabled"},
		{name: "cluster mode on a standalone server", envs: local(plain.Port, "REDIS_CLUSTER_ENABLED", "true"), args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"REDIS_CLUSTER_ENABLED is set but", "is not a cluster"}, setting: "redis.cluster_enabled"},
		{name: "PostgreSQL unreachable", envs: map[string]string{"POSTGRES_URL": "postgres://outpost@127.0.0.1:" + itoa(closedPort) + "/outpost?sslmode=disable"}, args: sqlStatus,
			code: 69, errCode: "STORE_UNREACHABLE", msg: []string{"127.0.0.1:" + itoa(closedPort), "connection refused"}},
		{name: "PostgreSQL wrong password", envs: map[string]string{"POSTGRES_URL": strings.Replace(roleURL, pw, "wrong-Pa55", 1)}, args: sqlStatus,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"password authentication failed", "badinput_role"}},
		{name: "PostgreSQL database missing", envs: map[string]string{"POSTGRES_URL": strings.Replace(roleURL, "/"+pg.Name, "/no_such_db", 1)}, args: sqlStatus,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`database "no_such_db" does not exist`}},
		{name: "PostgreSQL sslmode=require without TLS on the server", envs: map[string]string{"POSTGRES_URL": strings.Replace(roleURL, "sslmode=disable", "sslmode=require", 1)}, args: sqlStatus,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"check sslmode", "server refused TLS"}, setting: "postgres"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			badCheck(t, c)
		})
	}
	// The refused runs wrote nothing: not the lock, not a copy, not state.
	t.Cleanup(func() {
		for _, s := range []*servertest.RedisServer{locked, noEval} {
			keys, err := s.Client(t).Keys(ctx, "*").Result()
			require.NoError(t, err)
			require.Equal(t, []string{"tenant:t1"}, keys, "a refused run changed the keyspace")
		}
	})

	// The least a Redis ACL user needs (the README lists it): the whole
	// cycle works, and without INFO, apply is refused (77).
	t.Run("least privilege", func(t *testing.T) {
		rules := []string{"~tenant:*", "~outpost:*", "~.outpost:*", "~{.outpost:*", "-@all",
			"+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction", "+info", "+ping", "+time"}
		srv := servertest.Redis(t, servertest.WithACLUser("migrator", pw, rules...))
		// The data, with Outpost's other keys the migrator has no access
		// to, is written and checked as the (passwordless) default user.
		admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer admin.Close()
		o := seed.DefaultOptions()
		o.Tenants = 200
		_, err := seed.Write(ctx, admin, o)
		require.NoError(t, err)
		envs := local(srv.Port, "REDIS_USERNAME", "migrator", "REDIS_PASSWORD", pw)
		for _, args := range [][]string{status, apply, {"migrate", "verify", "--redis-only"}, {"migrate", "cleanup", "--yes", "--redis-only"}, {"migrate", "unlock", "--yes"}} {
			r := run(t, envs, args...)
			require.Equal(t, 0, r.code, "%v: %s", args, r.stdout)
		}
		diffs, _, err := seedtest.Check(ctx, admin, o, seedtest.ExpectAfterCleanup)
		require.NoError(t, err)
		require.Empty(t, diffs)

		noInfo := servertest.Redis(t, servertest.WithACLUser("migrator", pw, append(rules, "-info")...))
		badCheck(t, badCase{envs: local(noInfo.Port, "REDIS_USERNAME", "migrator", "REDIS_PASSWORD", pw), args: apply,
			code: 77, errCode: "PERMISSION_DENIED", msg: []string{"NOPERM", "'info'"}})
	})

	// The same stores, set right, work: the failures above are the input's.
	t.Run("controls", func(t *testing.T) {
		for _, c := range []struct {
			envs map[string]string
			args []string
		}{
			{local(locked.Port, "REDIS_PASSWORD", pw), status},
			{local(noKeys.Port, "REDIS_USERNAME", "nokeys", "REDIS_PASSWORD", pw, "DEPLOYMENT_ID", "cache"), status},
			{local(tlsSrv.Port, "REDIS_TLS_ENABLED", "true", "REDIS_TLS_CA_FILE", tlsSrv.CAFile), status},
			{map[string]string{"POSTGRES_URL": roleURL}, sqlStatus},
		} {
			r := run(t, c.envs, c.args...)
			require.Equal(t, 0, r.code, r.stdout)
		}
	})
}

// TestBadInputWaitFor: --wait-for retries an unreachable store, says so on
// stderr (one JSON event per line with --log-format json), and still exits
// 69 when the store never comes; a configuration error is not retried.
func TestBadInputWaitFor(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	port := srv.Port
	srv.Stop(t)
	envs := map[string]string{"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(port)}

	start := time.Now()
	r := badCheck(t, badCase{envs: envs, args: []string{"--wait-for", "1s", "migrate", "status", "--redis-only"},
		code: 69, errCode: "STORE_UNREACHABLE", msg: []string{"connection refused"}})
	require.GreaterOrEqual(t, time.Since(start), time.Second, "--wait-for 1s waited less than a second")
	require.Equal(t, "unreachable", r.rep["outcome"])

	// Through the real binary: every stderr line is a JSON event (go-redis'
	// own logger must not interleave its lines), and the retries are there.
	r = startProc(t, envs, "--wait-for", "3s", "--log-format", "json", "migrate", "status", "--redis-only").wait(t)
	require.Equal(t, 69, r.code)
	retries := 0
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "a stderr line is not JSON: %q", sc.Text())
		if strings.Contains(ev["msg"].(string), "not reachable yet") {
			retries++
		}
	}
	require.Positive(t, retries, "no retry was announced: %s", r.stderr)

	// A server that comes up during the wait is used.
	go func() {
		time.Sleep(time.Second)
		srv.Start(t)
	}()
	r = run(t, envs, "--wait-for", "30s", "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
}
