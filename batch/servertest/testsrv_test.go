package servertest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func TestMain(m *testing.M) { servertest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func runID(t *testing.T, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(ctxT(t), "server").Result()
	if err != nil {
		t.Fatalf("INFO server: %v", err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "run_id:"); ok {
			return v
		}
	}
	t.Fatalf("no run_id in INFO server:\n%s", info)
	return ""
}

func processGone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

func TestFindBinary(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"redis-server", "redis-cli", "initdb", "postgres"} {
		if p, err := servertest.FindBinary(name); err != nil || p == "" {
			t.Errorf("FindBinary(%q) = %q, %v", name, p, err)
		}
	}
	_, err := servertest.FindBinary("no-such-server-binary")
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("FindBinary of a missing binary: err = %v", err)
	}
}

func TestRedisStandalone(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t)
	if s.Host != "127.0.0.1" || s.Port == 0 || s.Addr != fmt.Sprintf("127.0.0.1:%d", s.Port) {
		t.Fatalf("bad address: host %q port %d addr %q", s.Host, s.Port, s.Addr)
	}
	ctx := ctxT(t)
	c := s.Client(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	// No persistence by default.
	cfg, err := c.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if cfg["save"] != "" || cfg["appendonly"] != "no" {
		t.Fatalf("persistence on: save=%q appendonly=%q", cfg["save"], cfg["appendonly"])
	}
	if s.URL() != fmt.Sprintf("redis://%s/0", s.Addr) {
		t.Fatalf("URL = %s", s.URL())
	}
}

func TestRedisRestartStopStart(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t)
	ctx := ctxT(t)
	c := s.Client(t)
	port := s.Port
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	id1, pid1 := runID(t, c), s.PID()

	s.Restart(t)
	if s.Port != port {
		t.Fatalf("port changed %d -> %d", port, s.Port)
	}
	id2 := runID(t, c) // the same client reconnects to the same address
	if id1 == id2 {
		t.Fatalf("run_id unchanged after Restart: %s", id1)
	}
	if !processGone(pid1) {
		t.Fatalf("old redis-server pid %d still running", pid1)
	}
	// Without persistence a restart starts empty.
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart without persistence = %d, %v; want 0", n, err)
	}

	pid2 := s.PID()
	s.Stop(t)
	s.Stop(t) // idempotent
	if s.Running() || !processGone(pid2) {
		t.Fatalf("server still running after Stop")
	}
	short := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer short.Close()
	if err := short.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING succeeded on a stopped server")
	}
	s.Start(t)
	if got := runID(t, c); got == id2 || got == id1 {
		t.Fatalf("run_id not new after Start: %s", got)
	}
}

func TestRedisPersistence(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t, servertest.WithPersistence())
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "kept", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	id := runID(t, c)
	s.Restart(t)
	if runID(t, c) == id {
		t.Fatalf("run_id unchanged")
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "kept" {
		t.Fatalf("GET after restart with persistence = %q, %v", got, err)
	}
	s.Stop(t)
	s.Start(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "kept" {
		t.Fatalf("GET after Stop/Start with persistence = %q, %v", got, err)
	}
}

func isAuthErr(err error) bool {
	return err != nil && (strings.HasPrefix(err.Error(), "WRONGPASS") || strings.HasPrefix(err.Error(), "NOAUTH"))
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t, servertest.WithPassword("s3cret pw"))
	ctx := ctxT(t)
	if s.Password != "s3cret pw" || s.Username != "" {
		t.Fatalf("credentials: %q %q", s.Username, s.Password)
	}
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	for name, pw := range map[string]string{"wrong": "nope", "none": ""} {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: pw, MaxRetries: -1})
		err := c.Ping(ctx).Err()
		c.Close()
		if !isAuthErr(err) {
			t.Errorf("%s password: PING err = %v, want an auth error", name, err)
		}
	}
}

func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t, servertest.WithACLUser("app", "apppw", "~*", "+@all", "-flushall"))
	ctx := ctxT(t)
	if s.Username != "app" || s.Password != "apppw" {
		t.Fatalf("credentials: %q %q", s.Username, s.Password)
	}
	c := s.Client(t)
	if who, err := c.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "app" {
		t.Fatalf("ACL WHOAMI = %q, %v", who, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET as app: %v", err)
	}
	if err := c.FlushAll(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("FLUSHALL as app: err = %v, want NOPERM", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: s.Addr, Username: "app", Password: "wrong", MaxRetries: -1})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); !isAuthErr(err) {
		t.Fatalf("wrong ACL password: err = %v, want WRONGPASS", err)
	}
	// The user is in the config file, so it survives a restart.
	s.Restart(t)
	if who, err := c.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "app" {
		t.Fatalf("ACL WHOAMI after restart = %q, %v", who, err)
	}
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	s := servertest.Redis(t, servertest.WithTLS())
	ctx := ctxT(t)
	if !s.TLS || s.CAFile == "" || s.CertFile == "" || s.KeyFile == "" {
		t.Fatalf("TLS fields not set: %+v", s)
	}
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET over TLS = %q, %v", got, err)
	}
	// Plain TCP to the TLS port fails.
	plain := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING without TLS succeeded on a TLS-only server")
	}
	// TLS without our CA fails verification.
	noCA := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}})
	defer noCA.Close()
	if err := noCA.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("PING with TLS but without the CA: err = %v, want a certificate error", err)
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS after restart: %v", err)
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cl := servertest.RedisCluster(t)
	t.Logf("cluster up in %v: %v", time.Since(start), cl.Addrs)
	if len(cl.Addrs) != 3 || len(cl.Ports) != 3 || cl.Host != "127.0.0.1" {
		t.Fatalf("bad cluster: %+v", cl)
	}
	ctx := ctxT(t)
	c := cl.Client(t)
	for i := 0; i < 300; i++ {
		if err := c.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key:%d: %v", i, err)
		}
	}
	var mu sync.Mutex
	sizes := map[string]int64{}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		sizes[m.Options().Addr] = n
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	var total int64
	for _, a := range cl.Addrs {
		if sizes[a] <= 0 {
			t.Errorf("master %s holds %d keys, want > 0 (sizes %v)", a, sizes[a], sizes)
		}
		total += sizes[a]
	}
	if len(sizes) != 3 || total != 300 {
		t.Fatalf("sizes %v (total %d), want 3 masters holding 300 keys", sizes, total)
	}
}

func TestPostgresDatabasesAreDistinct(t *testing.T) {
	t.Parallel()
	a, b := servertest.Postgres(t), servertest.Postgres(t)
	if a.Name == b.Name || a.URL == b.URL {
		t.Fatalf("same database twice: %s %s", a.URL, b.URL)
	}
	if a.Port != b.Port {
		t.Fatalf("databases on different servers: %d %d", a.Port, b.Port)
	}
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", a.Port, a.Name)
	if a.URL != want {
		t.Fatalf("URL = %s, want %s", a.URL, want)
	}
	ctx := ctxT(t)
	ca, cb := a.Connect(t), b.Connect(t)
	var name string
	if err := ca.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil || name != a.Name {
		t.Fatalf("current_database = %q, %v; want %s", name, err, a.Name)
	}
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of a visible in b: n=%d err=%v", n, err)
	}
	var super bool
	if err := ca.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Fatalf("URL user is not a superuser: %v %v", super, err)
	}
	for _, setting := range []string{"fsync", "full_page_writes", "synchronous_commit"} {
		var v string
		if err := ca.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&v); err != nil || v != "off" {
			t.Errorf("%s = %q, %v; want off", setting, v, err)
		}
	}
}

func TestPostgresDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	var db *servertest.PGDatabase
	t.Run("inner", func(t *testing.T) { db = servertest.Postgres(t) })
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, db.AdminURL)
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db.Name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s still exists after its test ended (n=%d, err=%v)", db.Name, n, err)
	}
}

func TestPostgresRole(t *testing.T) {
	t.Parallel()
	db := servertest.Postgres(t)
	url := db.CreateRole(t, "migrator_role", "pa'ss word")
	ctx := ctxT(t)

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect as role over TCP (%s): %v", url, err)
	}
	defer conn.Close(context.Background())
	var user, addr string
	if err := conn.QueryRow(ctx, "SELECT current_user, host(inet_server_addr())").Scan(&user, &addr); err != nil {
		t.Fatalf("query as role: %v", err)
	}
	if user != "migrator_role" || addr != "127.0.0.1" {
		t.Fatalf("connected as %q via %q", user, addr)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE owned_by_role (id int)"); err != nil {
		t.Fatalf("role cannot create a table in public: %v", err)
	}
	var stored string
	if err := db.Connect(t).QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'migrator_role'").Scan(&stored); err != nil || !strings.HasPrefix(stored, "SCRAM-SHA-256$") {
		t.Fatalf("stored password %q, %v; want SCRAM-SHA-256", stored, err)
	}

	_, err = pgx.Connect(ctx, db.URLFor("migrator_role", "wrong"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: err = %v, want SQLSTATE 28P01 (invalid_password)", err)
	}
	// No password at all is refused too (only the superuser is trusted).
	_, err = pgx.Connect(ctx, db.URLFor("migrator_role", ""))
	if err == nil {
		t.Fatalf("role connected without a password")
	}
}
