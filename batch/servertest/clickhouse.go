package servertest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The ClickHouse test server is the real ClickHouse engine (libchdb.so, the
// engine as a library, from the npm package chdb and its
// @chdb/lib-linux-x64-gnu) behind clickhouse_http.js, a small endpoint that
// speaks ClickHouse's HTTP interface as clickhouse-go/v2 uses it. Debian's
// clickhouse-server (18.16) is too old for DateTime64 and Bool, which
// Outpost's ClickHouse schema needs.
//
//go:embed clickhouse_http.js
var clickhouseHTTPJS []byte

// ChdbVersion is the chdb npm package .ci/install-deps.sh installs.
const ChdbVersion = "3.4.0"

const chdbHint = "npm install -g chdb@" + ChdbVersion + " (or run .ci/install-deps.sh)"

// ClickHouseServer is a running test endpoint with its own data directory.
type ClickHouseServer struct {
	Host     string
	Port     int
	User     string // "default" unless set
	Password string
	// TLS holds the CA and certificate when the endpoint serves HTTPS.
	TLS     *TLSFiles
	Dir     string
	LogFile string
	proc    *process
}

// ClickHouseOption configures a ClickHouse test server.
type ClickHouseOption func(*ClickHouseServer)

// WithClickHouseUser makes user/password the only account.
func WithClickHouseUser(user, password string) ClickHouseOption {
	return func(s *ClickHouseServer) { s.User, s.Password = user, password }
}

// WithClickHouseTLS serves HTTPS with a throwaway CA (ClickHouseServer.TLS).
func WithClickHouseTLS() ClickHouseOption {
	return func(s *ClickHouseServer) { s.TLS = &TLSFiles{} }
}

// Addr is host:port.
func (s *ClickHouseServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// ClickHouse starts a test server for this test, stopped at cleanup.
func ClickHouse(t testing.TB, opts ...ClickHouseOption) *ClickHouseServer {
	t.Helper()
	s := &ClickHouseServer{Host: "127.0.0.1", User: "default", Dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	s.LogFile = filepath.Join(s.Dir, "clickhouse.log")
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

// chdbNodePath finds the node_modules folder that holds chdb: CHDB_NODE_PATH,
// else npm's global folder.
func chdbNodePath(node string) (string, error) {
	var dirs []string
	if d := os.Getenv("CHDB_NODE_PATH"); d != "" {
		dirs = append(dirs, d)
	}
	if npm, err := exec.LookPath("npm"); err == nil {
		if out, err := exec.Command(npm, "root", "-g").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	dirs = append(dirs, "/usr/lib/node_modules", "/usr/local/lib/node_modules")
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "chdb", "package.json")) {
			probe := exec.Command(node, "-e", `require("chdb")`)
			probe.Env = append(os.Environ(), "NODE_PATH="+d)
			if out, err := probe.CombinedOutput(); err != nil {
				return "", fmt.Errorf("servertest: chdb in %s does not load: %v: %s; %s", d, err, strings.TrimSpace(string(out)), chdbHint)
			}
			return d, nil
		}
	}
	return "", fmt.Errorf("servertest: the npm package chdb (the ClickHouse engine) is not installed in %s: %s", strings.Join(dirs, ", "), chdbHint)
}

func (s *ClickHouseServer) start() error {
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("servertest: node not found: apt-get install nodejs npm, then %s", chdbHint)
	}
	modules, err := chdbNodePath(node)
	if err != nil {
		return err
	}
	script := filepath.Join(s.Dir, "clickhouse_http.js")
	if err := os.WriteFile(script, clickhouseHTTPJS, 0o644); err != nil {
		return err
	}
	env := []string{"NODE_PATH=" + modules, "CH_DATA=" + filepath.Join(s.Dir, "data"), "CH_USER=" + s.User, "CH_PASSWORD=" + s.Password}
	if s.TLS != nil {
		files, err := WriteTLSFiles(filepath.Join(s.Dir))
		if err != nil {
			return err
		}
		*s.TLS = files
		env = append(env, "CH_TLS_CERT="+files.CertFile, "CH_TLS_KEY="+files.KeyFile)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return err
		}
		s.proc, err = startProcess(node, []string{script}, s.Dir, s.LogFile, cleanEnv(append(env, "CH_PORT="+strconv.Itoa(s.Port))...), nil)
		if err != nil {
			return err
		}
		if lastErr = s.waitReady(30 * time.Second); lastErr == nil {
			return nil
		}
		s.proc.stop(syscall.SIGKILL, 0)
	}
	return fmt.Errorf("servertest: ClickHouse endpoint did not start: %w\nlog %s:\n%s", lastErr, s.LogFile, logTail(s.LogFile, 20))
}

// waitReady polls until the endpoint answers a query through clickhouse-go.
func (s *ClickHouseServer) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if s.proc.exited() {
			return errors.New("the endpoint exited")
		}
		conn, err := s.open()
		if err == nil {
			err = conn.Ping(context.Background())
			_ = conn.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Options are client options for this server as its account, over HTTP.
func (s *ClickHouseServer) Options(database string) *clickhouse.Options {
	o := &clickhouse.Options{
		Addr:        []string{s.Addr()},
		Protocol:    clickhouse.HTTP,
		Auth:        clickhouse.Auth{Username: s.User, Password: s.Password, Database: database},
		DialTimeout: 5 * time.Second,
	}
	if s.TLS != nil {
		cfg, err := ClientTLSConfig(s.TLS.CAFile)
		if err == nil {
			o.TLS = cfg
		}
	}
	return o
}

func (s *ClickHouseServer) open() (driver.Conn, error) { return clickhouse.Open(s.Options("")) }

// Exec runs statements as the server's account and fails the test on an
// error.
func (s *ClickHouseServer) Exec(t testing.TB, sqls ...string) {
	t.Helper()
	conn, err := s.open()
	if err != nil {
		t.Fatalf("servertest: open ClickHouse: %v", err)
	}
	defer conn.Close()
	for _, q := range sqls {
		if err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("servertest: ClickHouse %q: %v", q, err)
		}
	}
}

// Conn opens a client connection, closed at cleanup.
func (s *ClickHouseServer) Conn(t testing.TB, database string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(s.Options(database))
	if err != nil {
		t.Fatalf("servertest: open ClickHouse: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Stop stops the endpoint (the engine exits with it).
func (s *ClickHouseServer) Stop() {
	if s.proc != nil {
		s.proc.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// ---- a server shared by the test binary, a database per test ----

var (
	sharedCHMu  sync.Mutex
	sharedCH    *ClickHouseServer
	sharedCHErr error
)

// ClickHouseDatabase is a fresh database on the test binary's shared
// ClickHouse server (default account, plain HTTP), dropped at cleanup.
// Starting the engine takes seconds; a database takes milliseconds.
type ClickHouseDatabase struct {
	*ClickHouseServer
	Name string
}

// ClickHouseDB starts the shared server on first use and creates a
// database for this test. Stop the server from TestMain with
// StopSharedClickHouse (it also dies with the test binary).
func ClickHouseDB(t testing.TB) *ClickHouseDatabase {
	t.Helper()
	sharedCHMu.Lock()
	if sharedCH == nil && sharedCHErr == nil {
		dir, err := os.MkdirTemp("", "servertest-clickhouse-")
		if err == nil {
			s := &ClickHouseServer{Host: "127.0.0.1", User: "default", Dir: dir, LogFile: filepath.Join(dir, "clickhouse.log")}
			if err = s.start(); err == nil {
				sharedCH = s
			}
		}
		sharedCHErr = err
	}
	s, err := sharedCH, sharedCHErr
	sharedCHMu.Unlock()
	if err != nil {
		t.Fatalf("%v", err)
	}
	name := pgDBName(t.Name())
	s.Exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		conn, err := s.open()
		if err == nil {
			err = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" SYNC")
			_ = conn.Close()
		}
		if err != nil {
			t.Errorf("servertest: drop ClickHouse database %s: %v", name, err)
		}
	})
	return &ClickHouseDatabase{ClickHouseServer: s, Name: name}
}

// StopSharedClickHouse stops the shared server, if running, and removes its
// directory.
func StopSharedClickHouse() {
	sharedCHMu.Lock()
	defer sharedCHMu.Unlock()
	if sharedCH != nil {
		sharedCH.Stop()
		_ = os.RemoveAll(sharedCH.Dir)
		sharedCH = nil
	}
}
