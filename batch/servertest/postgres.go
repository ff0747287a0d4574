package servertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	pgReadyTimeout = 30 * time.Second
	pgStopGrace    = 15 * time.Second
	pgDirPrefix    = "outpost-servertest-pg-"
	// PGSuperuser is the superuser role of the shared server; it connects
	// without a password (trust) over TCP from 127.0.0.1 and the socket.
	PGSuperuser = "postgres"
)

// pgHBA lets the superuser in by trust and every other role by
// scram-sha-256 over TCP; the unix socket (in a private directory) trusts
// everyone.
const pgHBA = `# written by servertest
local   all   all                 trust
host    all   postgres  127.0.0.1/32  trust
host    all   postgres  ::1/128       trust
host    all   all       127.0.0.1/32  scram-sha-256
host    all   all       ::1/128       scram-sha-256
`

// PGDatabase is a fresh database on the shared PostgreSQL server, dropped
// at the end of the test that asked for it.
type PGDatabase struct {
	URL       string // postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable
	Name      string
	Host      string // 127.0.0.1
	Port      int
	User      string // the superuser, PGSuperuser
	AdminURL  string // same server, database "postgres", as the superuser
	SocketDir string // directory of the server's unix socket
	LogFile   string // the server's log
}

type pgServer struct {
	dir     string // removed when the server stops
	dataDir string
	logFile string
	port    int
	proc    *process
	cred    *syscall.Credential
}

var (
	pgMu       sync.Mutex
	pgShared   *pgServer
	pgStartErr error
	pgDBSeq    atomic.Int64
)

// Main runs the tests, stops the servers shared by the test binary and
// exits with the tests' code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { servertest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared PostgreSQL server, if running, and removes
// its files. Main calls it; a later Postgres call starts a new server.
func StopShared() {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgShared != nil {
		pgShared.stop()
		pgShared = nil
	}
	pgStartErr = nil
}

func (s *pgServer) stop() {
	if s.proc != nil {
		// SIGINT is PostgreSQL's fast shutdown: clients are disconnected.
		s.proc.stop(syscall.SIGINT, pgStopGrace)
	}
	_ = os.RemoveAll(s.dir)
}

// Postgres starts the binary's shared PostgreSQL server on first use and
// creates a fresh database for this test, dropped WITH (FORCE) at cleanup.
func Postgres(t testing.TB) *PGDatabase {
	t.Helper()
	srv, err := sharedPG()
	if err != nil {
		t.Fatalf("%v", err)
	}
	name := pgDBName(t.Name())
	db := &PGDatabase{
		Name:      name,
		Host:      "127.0.0.1",
		Port:      srv.port,
		User:      PGSuperuser,
		SocketDir: srv.dir,
		LogFile:   srv.logFile,
	}
	db.URL = pgURL(db.Host, db.Port, PGSuperuser, "", name)
	db.AdminURL = pgURL(db.Host, db.Port, PGSuperuser, "", "postgres")
	if err := db.adminExec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("servertest: create database %s: %v\nlog %s:\n%s", name, err, srv.logFile, logTail(srv.logFile, 20))
	}
	t.Cleanup(func() {
		if err := db.adminExec("DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
			t.Errorf("servertest: drop database %s: %v", name, err)
		}
	})
	return db
}

func pgURL(host string, port int, user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(host, strconv.Itoa(port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// pgDBName makes a unique, valid database name from a test name.
func pgDBName(testName string) string {
	base := nonIdent.ReplaceAllString(strings.ToLower(testName), "_")
	base = strings.Trim(base, "_")
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("t_%s_%d", base, pgDBSeq.Add(1))
}

func pgExec(url string, sqls ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

func (d *PGDatabase) adminExec(sqls ...string) error { return pgExec(d.AdminURL, sqls...) }

// Connect opens a pgx connection to the database as the superuser, closed
// at cleanup.
func (d *PGDatabase) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		t.Fatalf("servertest: connect %s: %v", d.URL, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// URLFor returns the URL of the database for another role.
func (d *PGDatabase) URLFor(user, password string) string {
	return pgURL(d.Host, d.Port, user, password, d.Name)
}

// CreateRole creates a LOGIN role with a password (stored as SCRAM-SHA-256,
// checked with scram-sha-256 over TCP), grants it all privileges on the
// database and its public schema, and returns its URL for this database.
// Roles are global to the shared server: the name must be unique among
// the binary's running tests. The role is dropped at cleanup.
func (d *PGDatabase) CreateRole(t testing.TB, name, password string) string {
	t.Helper()
	role := pgx.Identifier{name}.Sanitize()
	lit := "'" + strings.ReplaceAll(password, "'", "''") + "'"
	if err := d.adminExec(
		"CREATE ROLE "+role+" LOGIN PASSWORD "+lit,
		"GRANT ALL ON DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" TO "+role,
	); err != nil {
		t.Fatalf("servertest: create role %s: %v", name, err)
	}
	t.Cleanup(func() {
		// DROP OWNED also revokes the role's privileges, including the
		// grant on the database.
		_ = pgExec(d.URL, "DROP OWNED BY "+role)
		if err := d.adminExec("DROP ROLE IF EXISTS " + role); err != nil {
			t.Errorf("servertest: drop role %s: %v", name, err)
		}
	})
	if err := pgExec(d.URL, "GRANT ALL ON SCHEMA public TO "+role); err != nil {
		t.Fatalf("servertest: grant schema public to %s: %v", name, err)
	}
	return d.URLFor(name, password)
}

// ---- the shared server ----

func sharedPG() (*pgServer, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgStartErr != nil {
		return nil, pgStartErr
	}
	if pgShared != nil {
		if pgShared.proc.exited() {
			return nil, fmt.Errorf("servertest: the shared PostgreSQL server died (%v); log %s:\n%s",
				pgShared.proc.err, pgShared.logFile, logTail(pgShared.logFile, 30))
		}
		return pgShared, nil
	}
	s, err := startPG()
	if err != nil {
		pgStartErr = err
		return nil, err
	}
	pgShared = s
	return s, nil
}

// pgCredential picks the unprivileged user PostgreSQL runs as when we are
// root (it refuses to run as root): postgres if it exists, else nobody.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, errors.New("servertest: running as root and neither user postgres nor nobody exists to run PostgreSQL (useradd --system postgres)")
}

// tempBase is os.TempDir, or /tmp when another user could not reach it.
func tempBase(cred *syscall.Credential) string {
	base := os.TempDir()
	if cred == nil {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// cleanStale removes server directories left by test binaries that died
// without running Main (their servers were killed with them).
func cleanStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, pgDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			if st, serr := os.Stat(d); serr == nil && time.Since(st.ModTime()) > 10*time.Minute {
				_ = os.RemoveAll(d)
			}
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !processAlive(pid) {
			if !postmasterAlive(filepath.Join(d, "data")) {
				_ = os.RemoveAll(d)
			}
		}
	}
}

func postmasterAlive(dataDir string) bool {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return err == nil && processAlive(pid)
}

// processAlive tells whether pid runs; a zombie (dead, not yet reaped)
// does not count.
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(pid, 0)
	}
	// The state follows the command name in parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

func startPG() (*pgServer, error) {
	initdb, err := FindBinary("initdb")
	if err != nil {
		return nil, err
	}
	// Use the postgres of the same installation as initdb.
	postgres := ""
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		if p := filepath.Join(filepath.Dir(real), "postgres"); fileExists(p) {
			postgres = p
		}
	}
	if postgres == "" {
		if postgres, err = FindBinary("postgres"); err != nil {
			return nil, err
		}
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	base := tempBase(cred)
	cleanStale(base)
	dir, err := os.MkdirTemp(base, pgDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("servertest: %w", err)
	}
	s := &pgServer{dir: dir, dataDir: filepath.Join(dir, "data"), logFile: filepath.Join(dir, "postgres.log"), cred: cred}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("servertest: %w", err)
		}
	}

	if err := s.initdb(initdb); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		err = s.startServer(postgres)
		if err == nil {
			ok = true
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return nil, err
		}
	}
}

// initdb creates the server's data directory with the superuser and the
// pg_hba.conf of the tests.
func (s *pgServer) initdb(initdb string) error {
	initLog := filepath.Join(s.dir, "initdb.log")
	p, err := startProcess(initdb, []string{
		"-D", s.dataDir, "-U", PGSuperuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync",
	}, s.dir, initLog, cleanEnv(), s.cred)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.stop(syscall.SIGKILL, 0)
	}
	if p.err != nil || !p.exited() {
		return fmt.Errorf("servertest: %s failed (%v); output:\n%s", initdb, p.err, logTail(initLog, 30))
	}
	hba := filepath.Join(s.dataDir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(pgHBA), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		_ = os.Chown(hba, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (s *pgServer) startServer(postgres string) error {
	var off int64
	if st, err := os.Stat(s.logFile); err == nil {
		off = st.Size()
	}
	args := []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
		"-c", "password_encryption=scram-sha-256",
		"-c", "logging_collector=off",
	}
	p, err := startProcess(postgres, args, s.dir, s.logFile, cleanEnv(), s.cred)
	if err != nil {
		return err
	}
	s.proc = p
	admin := pgURL("127.0.0.1", s.port, PGSuperuser, "", "postgres")
	deadline := time.Now().Add(pgReadyTimeout)
	var last error
	for {
		if p.exited() {
			out := logSince(s.logFile, off)
			if strings.Contains(out, "could not bind") || strings.Contains(out, "already in use") {
				return fmt.Errorf("servertest: postgres port %d: %w; log %s:\n%s", s.port, errAddrInUse, s.logFile, logTail(s.logFile, 10))
			}
			return fmt.Errorf("servertest: postgres exited during startup (%v); log %s:\n%s", p.err, s.logFile, logTail(s.logFile, 30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, admin)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			p.stop(syscall.SIGKILL, 0)
			return fmt.Errorf("servertest: postgres not ready after %v (last error: %v); log %s:\n%s",
				pgReadyTimeout, last, s.logFile, logTail(s.logFile, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
