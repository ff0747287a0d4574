package main

// Issue #10, secrets: a recognisable password, given every way the tool
// accepts one, never appears in stdout, stderr or the termination log, in
// success and in every failure we can provoke; and the secure transports
// work against real servers: Redis TLS with certificate verification (and
// its explicit opt-out), Redis ACL users, PostgreSQL sslmode.

import (
	"context"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
)

const (
	// secRedis is the Redis password.
	secRedis = "S3cr3t-Pa55-xyzzy"
	// secPG is the PostgreSQL password: characters that URL encoding
	// changes, so that an encoded copy would be a different string.
	secPG = "S3cr3t-Pa55-xyzzy/+:@?&= %"
	// secCore is in both and in every encoding of either.
	secCore = "xyzzy"
)

// secForms are the spellings of the secrets that must never be printed.
func secForms() []string {
	var out []string
	for _, s := range []string{secRedis, secPG} {
		out = append(out, s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("u", s).String(),
			base64.StdEncoding.EncodeToString([]byte(s)))
	}
	return append(out, secCore)
}

// secRequireClean asserts no secret in any of texts.
func secRequireClean(t *testing.T, what string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		for _, f := range secForms() {
			require.NotContains(t, text, f, "%s: a secret in %s:\n%s", what, name, text)
		}
	}
}

// secRun runs in-process with a termination log and checks every output.
func secRun(t *testing.T, envs map[string]string, args ...string) *result {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "termination-log")
	r := runMain(envs, env{args: args, terminationLog: logPath})
	tl, _ := os.ReadFile(logPath)
	secRequireClean(t, strings.Join(args, " "), map[string]string{"stdout": r.stdout, "stderr": r.stderr, "termination log": string(tl)})
	if !strings.Contains(strings.Join(args, " "), "--output text") && !strings.Contains(strings.Join(args, " "), "--help") {
		checkReport(t, r)
	}
	return r
}

// secPGURL is the role's URL with the PostgreSQL secret as its password and
// the given sslmode query.
func secPGURL(t *testing.T, roleURL, query string) string {
	u, err := url.Parse(roleURL)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), secPG)
	u.RawQuery = query
	return u.String()
}

// TestSecretsNeverPrinted: success paths of every command in every output
// and log format, then every failure, with the secrets given by
// environment, flag, YAML and .env.
func TestSecretsNeverPrinted(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithPassword(secRedis))
	o := seed.DefaultOptions()
	o.Tenants = 200
	_, err := seed.Write(ctx, srv.Client(t), o)
	require.NoError(t, err)
	pg := servertest.Postgres(t)
	pgURL := secPGURL(t, pg.CreateRole(t, "secrets_role", secPG), "sslmode=disable")

	dir := t.TempDir()
	yamlFile := badFile(t, dir, "outpost.yaml", "postgres: \""+pgURL+"\"\nredis:\n  host: 127.0.0.1\n  port: "+itoa(srv.Port)+"\n  password: \""+secRedis+"\"\n")
	envFile := badFile(t, dir, "prod.env", "REDIS_HOST=127.0.0.1\nREDIS_PORT="+itoa(srv.Port)+"\nREDIS_PASSWORD="+secRedis+"\nPOSTGRES_URL='"+pgURL+"'\n")
	viaEnv := badMerge(redisEnv(srv), "REDIS_PASSWORD", secRedis, "POSTGRES_URL", pgURL)
	viaFlags := []string{"--redis-host", "127.0.0.1", "--redis-port", itoa(srv.Port), "--redis-password", secRedis, "--postgres-url", pgURL}
	ways := []struct {
		name string
		envs map[string]string
		args []string
	}{
		{"env", viaEnv, nil},
		{"flags", nil, viaFlags},
		{"flags=", nil, []string{"--redis-host=127.0.0.1", "--redis-port=" + itoa(srv.Port), "--redis-password=" + secRedis, "--postgres-url=" + pgURL}},
		{"yaml", nil, []string{"--config", yamlFile}},
		{"dotenv", map[string]string{"CONFIG": envFile}, nil},
	}

	t.Run("success", func(t *testing.T) {
		formats := [][]string{
			{"--output", "json", "--log-format", "json", "-v"},
			{"--output", "text", "--log-format", "text", "-v"},
		}
		commands := [][]string{
			{"migrate", "list"},
			{"migrate", "plan"},
			{"migrate", "status"},
			{"migrate", "apply", "--yes"},
			{"migrate", "verify"},
			{"migrate", "status", "--detailed-exitcode"},
			{"migrate", "cleanup", "--yes"},
			{"migrate", "unlock", "--yes"},
		}
		for i, w := range ways {
			for _, cmd := range commands {
				f := formats[i%len(formats)]
				args := append(append(append([]string{}, w.args...), f...), cmd...)
				r := secRun(t, w.envs, args...)
				require.Equal(t, 0, r.code, "%s %v:\n%s\n%s", w.name, cmd, r.stdout, r.stderr)
			}
		}
		secRun(t, viaEnv, "--help")
		secRun(t, viaEnv, "migrate", "apply", "--help")
	})

	t.Run("failures", func(t *testing.T) {
		other := servertest.Redis(t, servertest.WithPassword("another-password"))
		closed := servertest.Redis(t)
		closedPort := closed.Port
		closed.Stop(t)
		closedPG := secPGURL(t, "postgres://u@127.0.0.1:"+itoa(closedPort)+"/db", "sslmode=disable")
		wrongPG := strings.Replace(pgURL, "secrets_role", "no_such_role", 1)
		badYAML := badFile(t, dir, "bad.yaml", "redis:\n  password: \""+secRedis+"\"\n  port: [1\n")
		badEnv := badFile(t, dir, "bad.env", "REDIS_PASSWORD='"+secRedis+"\n")
		badEnv2 := badFile(t, dir, "bad2.env", "REDIS_PASSWORD="+secRedis+"\n"+secRedis+" oops\n")
		require.NoError(t, srv.Client(t).Set(ctx, ".outpost:migration_lock", "3f1c6a0e-outpost-token", time.Minute).Err())
		t.Cleanup(func() { srv.Client(t).Del(ctx, ".outpost:migration_lock") })

		cases := []struct {
			name string
			envs map[string]string
			args []string
			code int
		}{
			{"wrong redis password (env)", badMerge(redisEnv(other), "REDIS_PASSWORD", secRedis), []string{"migrate", "apply", "--yes", "--redis-only"}, 77},
			{"wrong redis password (flag)", redisEnv(other), []string{"--redis-password", secRedis, "migrate", "status", "--redis-only"}, 77},
			{"wrong redis password (ACL user)", badMerge(redisEnv(other), "REDIS_USERNAME", "outpost", "REDIS_PASSWORD", secRedis), []string{"migrate", "status", "--redis-only"}, 77},
			{"redis unreachable", badMerge(redisEnv(closed), "REDIS_PASSWORD", secRedis), []string{"--wait-for", "1s", "migrate", "status", "--redis-only"}, 69},
			{"postgres unreachable", map[string]string{"POSTGRES_URL": closedPG}, []string{"migrate", "status", "--sql-only"}, 69},
			{"postgres wrong user", map[string]string{"POSTGRES_URL": wrongPG}, []string{"migrate", "apply", "--yes", "--sql-only"}, 77},
			{"postgres sslmode=require without TLS", map[string]string{"POSTGRES_URL": strings.Replace(pgURL, "sslmode=disable", "sslmode=require", 1)}, []string{"migrate", "status", "--sql-only"}, 78},
			{"postgres URL invalid port", map[string]string{"POSTGRES_URL": strings.Replace(pgURL, itoa(pg.Port), "99999", 1)}, []string{"migrate", "status", "--sql-only"}, 78},
			{"postgres URL unparsable", map[string]string{"POSTGRES_URL": strings.Replace(pgURL, "@127.0.0.1", "@[127.0.0.1", 1)}, []string{"migrate", "status", "--sql-only"}, 78},
			{"postgres URL in a flag, bad", nil, []string{"--postgres-url", "mysql://u:" + url.QueryEscape(secPG) + "@h/db", "migrate", "status", "--sql-only"}, 78},
			{"bad port beside the password", badMerge(viaEnv, "REDIS_PORT", "abc"), []string{"migrate", "status"}, 78},
			{"malformed YAML holding the password", nil, []string{"--config", badYAML, "migrate", "status", "--redis-only"}, 78},
			{"malformed .env holding the password", nil, []string{"--config", badEnv, "migrate", "status", "--redis-only"}, 78},
			{"malformed .env quoting the password", nil, []string{"--config", badEnv2, "migrate", "status", "--redis-only"}, 78},
			{"usage error", viaEnv, append(append([]string{}, viaFlags...), "migrate", "status", "--bogus"), 64},
			{"usage error in the password flag", nil, []string{"--redis-password", secRedis, "--redis-passwrd=" + secRedis, "migrate", "status"}, 64},
			{"apply without --yes", viaEnv, []string{"migrate", "apply"}, 64},
			{"lock held", viaEnv, []string{"migrate", "apply", "--yes", "--lock-timeout", "0s"}, 75},
			{"text output", badMerge(redisEnv(other), "REDIS_PASSWORD", secRedis), []string{"--output", "text", "migrate", "status", "--redis-only"}, 77},
		}
		for _, c := range cases {
			for _, lf := range []string{"json", "text"} {
				r := secRun(t, c.envs, append([]string{"--log-format", lf, "-v"}, c.args...)...)
				require.Equal(t, c.code, r.code, "%s:\n%s\n%s", c.name, r.stdout, r.stderr)
			}
		}
	})

	t.Run("binary", func(t *testing.T) {
		// A real process: anything a library writes to the process's own
		// stderr is caught too.
		for _, c := range []struct {
			password, pgURL string
			args            []string
			code            int
		}{
			{secRedis, pgURL, []string{"--log-format", "json", "migrate", "status"}, 0},
			{"wrong-" + secRedis, pgURL, []string{"--log-format", "json", "migrate", "apply", "--yes"}, 77},
			{secRedis, closedPGURL(pgURL), []string{"--wait-for", "1s", "migrate", "status"}, 69},
		} {
			r := startProc(t, map[string]string{
				"REDIS_HOST": "127.0.0.1", "REDIS_PORT": itoa(srv.Port), "REDIS_PASSWORD": c.password, "POSTGRES_URL": c.pgURL,
			}, c.args...).exit(t, 0)
			secRequireClean(t, strings.Join(c.args, " "), map[string]string{"stdout": r.stdout, "stderr": r.stderr})
			checkReport(t, r)
			require.Equal(t, c.code, r.code, r.stdout)
		}
	})
}

// closedPGURL points u at a port nobody listens on.
func closedPGURL(u string) string {
	p, _ := url.Parse(u)
	p.Host = "127.0.0.1:1"
	return p.String()
}

// TestSecretsRedisTLS: a TLS-only server with a password. Verification
// against the CA works, without the CA it fails with 78 and says why, and
// the explicit opt-out works; by flags, environment and file.
func TestSecretsRedisTLS(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithTLS(), servertest.WithPassword(secRedis))
	o := seed.DefaultOptions()
	o.Tenants = 100
	_, err := seed.Write(context.Background(), srv.Client(t), o)
	require.NoError(t, err)
	base := badMerge(redisEnv(srv), "REDIS_PASSWORD", secRedis)
	yamlFile := badFile(t, t.TempDir(), "tls.yaml", "redis:\n  host: localhost\n  port: "+itoa(srv.Port)+"\n  password: "+secRedis+"\n  tls_enabled: true\n  tls_ca_file: "+srv.CAFile+"\n")

	// Verified: flag, then environment (and the host name checked), then
	// the config file. apply and verify do real work over TLS.
	r := secRun(t, base, "--redis-tls", "--redis-tls-ca-file", srv.CAFile, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
	require.Equal(t, true, r.rep["targets"].(map[string]any)["redis"].(map[string]any)["tls"])
	r = secRun(t, badMerge(base, "REDIS_HOST", "localhost", "REDIS_TLS_ENABLED", "true", "REDIS_TLS_CA_FILE", srv.CAFile), "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "verified", r.rep["outcome"])
	r = secRun(t, nil, "--config", yamlFile, "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	diffs, _, err := seedtest.Check(context.Background(), srv.Client(t), o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)

	// Not verified: no CA, so the system roots, which do not know it.
	r = secRun(t, base, "--redis-tls", "migrate", "status", "--redis-only")
	require.Equal(t, 78, r.code, r.stdout)
	require.Equal(t, "CONFIG_INVALID", errorCode(r))
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "certificate did not verify")
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "x509: certificate signed by unknown authority")

	// The explicit opt-out.
	r = secRun(t, base, "--redis-tls", "--redis-tls-insecure-skip-verify", "migrate", "status", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	r = secRun(t, badMerge(base, "REDIS_TLS_ENABLED", "true", "REDIS_TLS_INSECURE_SKIP_VERIFY", "true"), "migrate", "verify", "--redis-only", "--sample", "20")
	require.Equal(t, 0, r.code, r.stdout)
}

// TestSecretsRedisACLUser: an ACL user, by environment and by flag, does
// the whole cycle.
func TestSecretsRedisACLUser(t *testing.T) {
	srv := servertest.Redis(t, servertest.WithACLUser("outpost-migrator", secRedis, "~*", "&*", "+@all", "-flushall", "-flushdb"))
	c := srv.Client(t)
	o := seed.DefaultOptions()
	o.Tenants = 100
	_, err := seed.Write(context.Background(), c, o)
	require.NoError(t, err)

	envs := badMerge(redisEnv(srv), "REDIS_USERNAME", "outpost-migrator", "REDIS_PASSWORD", secRedis)
	r := secRun(t, envs, "migrate", "apply", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "outpost-migrator", r.rep["targets"].(map[string]any)["redis"].(map[string]any)["username"])
	r = secRun(t, redisEnv(srv), "--redis-username", "outpost-migrator", "--redis-password", secRedis, "migrate", "verify", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	r = secRun(t, envs, "migrate", "cleanup", "--yes", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	diffs, _, err := seedtest.Check(context.Background(), c, o, seedtest.ExpectAfterCleanup)
	require.NoError(t, err)
	require.Empty(t, diffs)

	// Another user name with the same password is refused.
	r = secRun(t, badMerge(envs, "REDIS_USERNAME", "outpost"), "migrate", "status", "--redis-only")
	require.Equal(t, 77, r.code, r.stdout)
	require.Contains(t, r.rep["error"].(map[string]any)["message"], "WRONGPASS")
}

// TestSecretsPostgresSSLMode turns TLS on on the test PostgreSQL server
// (ALTER SYSTEM and a reload; off again at the end) and runs the SQL phase
// with each sslmode: require and verify-full with the CA work; verify-full
// with another CA or the system roots fails with 78 naming sslmode.
// sslmode=disable works, and sslmode=require against a server without TLS
// is 78 (both also in TestBadStores and TestSecretsNeverPrinted).
func TestSecretsPostgresSSLMode(t *testing.T) {
	pg := servertest.Postgres(t)
	roleURL := pg.CreateRole(t, "sslmode_role", secPG)
	r := secRun(t, map[string]string{"POSTGRES_URL": secPGURL(t, roleURL, "sslmode=disable")}, "migrate", "status", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)

	files := secEnablePostgresTLS(t, pg)
	other, err := servertest.WriteTLSFiles(t.TempDir())
	require.NoError(t, err)
	cases := []struct {
		query string
		code  int
	}{
		{"sslmode=require", 0},
		{"sslmode=verify-full&sslrootcert=" + url.QueryEscape(files.CAFile), 0},
		{"sslmode=verify-ca&sslrootcert=" + url.QueryEscape(files.CAFile), 0},
		{"sslmode=verify-full&sslrootcert=" + url.QueryEscape(other.CAFile), 78},
		{"sslmode=verify-full", 78},
		{"sslmode=disable", 0},
	}
	for _, c := range cases {
		u := secPGURL(t, roleURL, c.query)
		r := secRun(t, map[string]string{"POSTGRES_URL": u}, "migrate", "status", "--sql-only")
		require.Equal(t, c.code, r.code, "%s: %s", c.query, r.stdout)
		mode, _, _ := strings.Cut(strings.TrimPrefix(c.query, "sslmode="), "&")
		require.Equal(t, mode, r.rep["targets"].(map[string]any)["postgres"].(map[string]any)["sslmode"])
		if c.code != 0 {
			require.Equal(t, "CONFIG_INVALID", errorCode(r))
			require.Contains(t, r.rep["error"].(map[string]any)["message"], "check sslmode")
		}
	}
	// A whole apply over TLS.
	r = secRun(t, map[string]string{"POSTGRES_URL": secPGURL(t, roleURL, "sslmode=verify-full&sslrootcert="+url.QueryEscape(files.CAFile))}, "migrate", "apply", "--yes", "--sql-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.Equal(t, "applied", r.rep["outcome"])
}

// secEnablePostgresTLS gives the shared server a certificate and turns ssl
// on until the test ends. The server runs as an unprivileged user, so the
// files go to a directory it can read, the key owned by that user.
func secEnablePostgresTLS(t *testing.T, pg *servertest.PGDatabase) servertest.TLSFiles {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.AdminURL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	var dataDir string
	require.NoError(t, admin.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir))
	st, err := os.Stat(dataDir)
	require.NoError(t, err)
	owner := st.Sys().(*syscall.Stat_t)

	dir, err := os.MkdirTemp("", "outpost-pg-tls-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	files, err := servertest.WriteTLSFiles(dir)
	require.NoError(t, err)
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(files.KeyFile, int(owner.Uid), int(owner.Gid)))
	}

	set := func(stmts ...string) {
		for _, s := range stmts {
			_, err := admin.Exec(ctx, s)
			require.NoError(t, err, s)
		}
	}
	set("ALTER SYSTEM SET ssl_cert_file = '"+files.CertFile+"'",
		"ALTER SYSTEM SET ssl_key_file = '"+files.KeyFile+"'",
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()")
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, pg.AdminURL)
		if err != nil {
			t.Errorf("turn TLS off again: %v", err)
			return
		}
		defer c.Close(ctx)
		for _, s := range []string{"ALTER SYSTEM RESET ssl", "ALTER SYSTEM RESET ssl_cert_file", "ALTER SYSTEM RESET ssl_key_file", "SELECT pg_reload_conf()"} {
			if _, err := c.Exec(ctx, s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
	// The reload is asynchronous: wait until a new connection gets TLS.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.Connect(ctx, strings.Replace(pg.URL, "sslmode=disable", "sslmode=require", 1))
		if err == nil {
			_ = c.Close(ctx)
			return files
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(pg.LogFile)
			t.Fatalf("PostgreSQL did not turn TLS on: %v\n%s", err, b[max(0, len(b)-2000):])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
