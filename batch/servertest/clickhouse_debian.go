package servertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseDebianServer is Debian's clickhouse-server (18.16): a real
// server speaking ClickHouse's native protocol, plain and over TLS. It is
// too old for Outpost's schema (no DateTime64, no Bool) but serves the
// connection, TLS, authentication and version-table paths of the native
// protocol, which the chDB endpoint (HTTP only) cannot.
type ClickHouseDebianServer struct {
	Host       string
	Port       int // native protocol
	SecurePort int // native protocol over TLS
	Password   string
	TLS        TLSFiles
	Dir        string
	LogFile    string
	proc       *process
}

// Addr is host:port of the native protocol; SecureAddr over TLS.
func (s *ClickHouseDebianServer) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// SecureAddr is host:port of the native protocol over TLS.
func (s *ClickHouseDebianServer) SecureAddr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.SecurePort))
}

const chDebianConfig = `<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <tcp_port_secure>%[3]d</tcp_port_secure>
  <openSSL><server><certificateFile>%[4]s</certificateFile><privateKeyFile>%[5]s</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile></server></openSSL>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
`

const chDebianUsers = `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password>%s</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`

// ClickHouseDebian starts Debian's clickhouse-server for this test, with
// the account "default" and password, stopped at cleanup.
func ClickHouseDebian(t testing.TB, password string) *ClickHouseDebianServer {
	t.Helper()
	bin, err := FindBinary("clickhouse-server")
	if err != nil {
		t.Fatalf("%v (apt-get install clickhouse-server, or run .ci/install-deps.sh)", err)
	}
	s := &ClickHouseDebianServer{Host: "127.0.0.1", Password: password, Dir: t.TempDir()}
	s.LogFile = filepath.Join(s.Dir, "error.log")
	t.Cleanup(func() {
		if s.proc != nil {
			s.proc.stop(syscall.SIGTERM, 10*time.Second)
		}
	})
	if s.TLS, err = WriteTLSFiles(s.Dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "users.xml"), fmt.Appendf(nil, chDebianUsers, password), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(bin); err == nil {
			return s
		}
	}
	t.Fatalf("servertest: clickhouse-server did not start: %v\nlog %s:\n%s", err, s.LogFile, logTail(s.LogFile, 20))
	return nil
}

func (s *ClickHouseDebianServer) start(bin string) error {
	var err error
	if s.Port, err = freePort(); err != nil {
		return err
	}
	if s.SecurePort, err = freePort(); err != nil {
		return err
	}
	conf := filepath.Join(s.Dir, "config.xml")
	body := fmt.Sprintf(chDebianConfig, s.Dir, s.Port, s.SecurePort, s.TLS.CertFile, s.TLS.KeyFile)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return err
	}
	s.proc, err = startProcess(bin, []string{"--config-file=" + conf}, s.Dir, filepath.Join(s.Dir, "stdout.log"), cleanEnv(), nil)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, cerr := s.Open("default")
		if cerr == nil {
			cerr = conn.Ping(context.Background())
			_ = conn.Close()
			if cerr == nil {
				return nil
			}
		}
		if s.proc.exited() || time.Now().After(deadline) {
			s.proc.stop(syscall.SIGKILL, 0)
			return cerr
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Open connects over the plain native port as "default".
func (s *ClickHouseDebianServer) Open(database string) (driver.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}, DialTimeout: 2 * time.Second,
		Auth: clickhouse.Auth{Username: "default", Password: s.Password, Database: database}})
}

// Exec runs statements over the native protocol and fails the test on an
// error. INSERT ... SELECT only: 18.16 waits for data blocks after INSERT
// ... VALUES sent as a native query.
func (s *ClickHouseDebianServer) Exec(t testing.TB, sqls ...string) {
	t.Helper()
	conn, err := s.Open("default")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range sqls {
		if err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("servertest: clickhouse-server %q: %v", q, err)
		}
	}
}
