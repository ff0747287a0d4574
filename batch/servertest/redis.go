package servertest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	redisReadyTimeout = 15 * time.Second
	redisStopGrace    = 10 * time.Second
	startAttempts     = 5
)

// RedisOption configures a server started by Redis or RedisCluster.
type RedisOption func(*redisConfig)

type redisConfig struct {
	password    string
	aclUser     string
	aclPass     string
	aclRules    []string
	tls         bool
	persistence bool
	extra       [][]string

	// set internally for cluster nodes
	cluster bool
}

// WithPassword sets requirepass: the default user needs pw.
func WithPassword(pw string) RedisOption {
	return func(c *redisConfig) { c.password = pw }
}

// WithACLUser creates the ACL user name with password pass when the server
// starts (a "user" directive of the config file, so it survives restarts).
// The user is always "on" with ">pass"; rules follow, e.g. "~*", "&*",
// "+@all", "-flushall". Without rules the user gets "~* &* +@all".
// RedisServer.Username and Password, and so Client, use this user.
func WithACLUser(name, pass string, rules ...string) RedisOption {
	return func(c *redisConfig) {
		c.aclUser, c.aclPass = name, pass
		c.aclRules = append([]string(nil), rules...)
	}
}

// WithTLS serves TLS only (tls-port, with `port 0`) with a certificate
// signed by a throwaway CA generated in the server's directory. Clients need
// the CA (RedisServer.CAFile, TLSConfig); Client sets it up. Clients are
// not asked for certificates (tls-auth-clients no).
func WithTLS() RedisOption {
	return func(c *redisConfig) { c.tls = true }
}

// WithPersistence turns on the append-only file (appendonly yes), so data
// survives Stop/Start and Restart. Without it the server keeps nothing on
// disk and a restart starts empty.
func WithPersistence() RedisOption {
	return func(c *redisConfig) { c.persistence = true }
}

// WithConfig adds a raw redis.conf directive, e.g.
// WithConfig("maxmemory", "10mb"). Arguments are quoted as needed.
func WithConfig(directive string, args ...string) RedisOption {
	return func(c *redisConfig) {
		c.extra = append(c.extra, append([]string{directive}, args...))
	}
}

// RedisServer is a redis-server process owned by one test.
type RedisServer struct {
	Host string // always 127.0.0.1
	Port int    // the TLS port when TLS is on
	Addr string // Host:Port

	// Credentials that Client uses: the ACL user when WithACLUser was
	// given, else the default user with the WithPassword password (if any).
	Username string
	Password string

	TLS      bool   // WithTLS: the server only accepts TLS
	CAFile   string // WithTLS: PEM CA certificate that signed CertFile
	CertFile string // WithTLS: server certificate
	KeyFile  string // WithTLS: server key

	Persistent bool   // WithPersistence
	Dir        string // working directory: config, data, log
	ConfFile   string // redis.conf used at every start
	LogFile    string // server output of every start

	// ClusterPort is the cluster bus port of a RedisCluster node (0 else).
	ClusterPort int

	cfg redisConfig
	bin string

	mu   sync.Mutex
	proc *process
}

// Redis starts a standalone redis-server on a free port of 127.0.0.1, in a
// temporary directory, stopped (and the directory removed) at cleanup.
// Without WithPersistence it saves nothing (save "", appendonly no).
func Redis(t testing.TB, opts ...RedisOption) *RedisServer {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	s, err := newRedisServer(t, cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

// newRedisServer creates the directory, registers the cleanup and starts
// the server on a free port, retrying with another port on a clash.
func newRedisServer(t testing.TB, cfg redisConfig) (*RedisServer, error) {
	bin, err := FindBinary("redis-server")
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	s := &RedisServer{
		Host:       "127.0.0.1",
		Dir:        dir,
		ConfFile:   filepath.Join(dir, "redis.conf"),
		LogFile:    filepath.Join(dir, "redis.log"),
		TLS:        cfg.tls,
		Persistent: cfg.persistence,
		cfg:        cfg,
		bin:        bin,
	}
	switch {
	case cfg.aclUser != "":
		s.Username, s.Password = cfg.aclUser, cfg.aclPass
	case cfg.password != "":
		s.Password = cfg.password
	}
	if cfg.tls {
		files, err := WriteTLSFiles(dir)
		if err != nil {
			return nil, fmt.Errorf("servertest: generate TLS certificates: %w", err)
		}
		s.CAFile, s.CertFile, s.KeyFile = files.CAFile, files.CertFile, files.KeyFile
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
		if cfg.cluster {
			if s.ClusterPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		if err := os.WriteFile(s.ConfFile, []byte(s.config()), 0o644); err != nil {
			return nil, err
		}
		err = s.start()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return nil, err
		}
	}
}

// config renders redis.conf.
func (s *RedisServer) config() string {
	var b strings.Builder
	line := func(args ...string) {
		for i, a := range args {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(confQuote(a))
		}
		b.WriteByte('\n')
	}
	line("bind", s.Host)
	line("protected-mode", "no")
	line("daemonize", "no")
	line("dir", s.Dir)
	line("logfile", "")
	line("loglevel", "notice")
	line("save", "")
	line("enable-debug-command", "yes")
	if s.cfg.tls {
		line("port", "0")
		line("tls-port", strconv.Itoa(s.Port))
		line("tls-cert-file", s.CertFile)
		line("tls-key-file", s.KeyFile)
		line("tls-ca-cert-file", s.CAFile)
		line("tls-auth-clients", "no")
		if s.cfg.cluster {
			line("tls-cluster", "yes")
		}
	} else {
		line("port", strconv.Itoa(s.Port))
	}
	if s.cfg.persistence {
		line("appendonly", "yes")
		line("appendfsync", "everysec")
	} else {
		line("appendonly", "no")
	}
	if s.cfg.password != "" {
		line("requirepass", s.cfg.password)
		line("masterauth", s.cfg.password)
	}
	if s.cfg.aclUser != "" {
		args := []string{"user", s.cfg.aclUser, "on", ">" + s.cfg.aclPass}
		if len(s.cfg.aclRules) == 0 {
			args = append(args, "~*", "&*", "+@all")
		}
		line(append(args, s.cfg.aclRules...)...)
	}
	if s.cfg.cluster {
		line("cluster-enabled", "yes")
		line("cluster-config-file", "nodes.conf")
		line("cluster-node-timeout", "5000")
		line("cluster-port", strconv.Itoa(s.ClusterPort))
	}
	for _, e := range s.cfg.extra {
		line(e...)
	}
	return b.String()
}

// confQuote quotes a redis.conf argument when needed.
func confQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n\"'\\") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range []byte(s) {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var errAddrInUse = errors.New("address already in use")

// start runs the server and waits until it answers PING.
func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return nil
	}
	var off int64
	if st, err := os.Stat(s.LogFile); err == nil {
		off = st.Size()
	}
	p, err := startProcess(s.bin, []string{s.ConfFile}, s.Dir, s.LogFile, cleanEnv(), nil)
	if err != nil {
		return err
	}
	s.proc = p
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		if p.exited() {
			out := logSince(s.LogFile, off)
			if strings.Contains(out, "Address already in use") {
				return fmt.Errorf("servertest: redis-server port %d: %w; log %s:\n%s", s.Port, errAddrInUse, s.LogFile, logTail(s.LogFile, 10))
			}
			return fmt.Errorf("servertest: redis-server on port %d exited during startup (%v); log %s:\n%s",
				s.Port, p.err, s.LogFile, logTail(s.LogFile, 30))
		}
		perr := s.ping()
		if perr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			p.stop(syscall.SIGKILL, 0)
			return fmt.Errorf("servertest: redis-server on port %d not ready after %v (last PING: %v); log %s:\n%s",
				s.Port, redisReadyTimeout, perr, s.LogFile, logTail(s.LogFile, 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logSince returns what was written to path after offset off.
func logSince(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// ping sends an inline PING without authenticating: any reply but an error
// saying the server is still loading means it is serving.
func (s *RedisServer) ping() error {
	d := net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if s.TLS {
		cfg, cerr := s.tlsConfig()
		if cerr != nil {
			return cerr
		}
		conn, err = tls.DialWithDialer(&d, "tcp", s.Addr, cfg)
	} else {
		conn, err = d.Dial("tcp", s.Addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-LOADING") || strings.HasPrefix(line, "-BUSY") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

// stop terminates the server (SIGTERM: with persistence the AOF is flushed,
// without it nothing is saved), killing it if it lingers. Idempotent.
func (s *RedisServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	s.proc.stop(syscall.SIGTERM, redisStopGrace)
	if !s.proc.exited() {
		return fmt.Errorf("servertest: redis-server pid %d on port %d did not exit", s.proc.pid(), s.Port)
	}
	s.proc = nil
	return nil
}

// Stop stops the server. It is idempotent; the server is also stopped at
// cleanup.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("%v", err)
	}
}

// Start starts the server again on the same port after Stop (no-op if it
// runs). With persistence it reloads its data; without it it starts empty.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	// The port was ours a moment ago; another process may hold it for a
	// short while, so retry briefly.
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("%v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartLoading starts the server again after Stop and returns while it is
// still loading its data (PING answers LOADING), for tests of a server
// that is not ready yet. The test makes loading last (WithConfig
// "key-load-delay", microseconds per key, with WithPersistence); it fails
// if the server is ready first. WaitReady waits for the end.
func (s *RedisServer) StartLoading(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p, err := startProcess(s.bin, []string{s.ConfFile}, s.Dir, s.LogFile, cleanEnv(), nil)
	if err == nil {
		s.proc = p
	}
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("servertest: start redis-server: %v", err)
	}
	deadline := time.Now().Add(redisReadyTimeout)
	for time.Now().Before(deadline) {
		err := s.ping()
		if err != nil && strings.HasPrefix(err.Error(), "-LOADING") {
			return
		}
		if err == nil {
			t.Fatalf("servertest: redis-server on port %d was ready before it was seen loading: make loading last longer", s.Port)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("servertest: redis-server on port %d never answered LOADING; log:\n%s", s.Port, logTail(s.LogFile, 20))
}

// WaitReady waits until the server answers PING (after StartLoading).
func (s *RedisServer) WaitReady(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.ping() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("servertest: redis-server on port %d not ready within %v", s.Port, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops the server and starts it again on the same port: a new
// process with a new run_id. Data survives only with WithPersistence.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// Running tells whether the server process is up.
func (s *RedisServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// PID returns the server's process id, or 0 when stopped.
func (s *RedisServer) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.pid()
}

func (s *RedisServer) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	cfg, err := ClientTLSConfig(s.CAFile)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = s.Host
	return cfg, nil
}

// TLSConfig returns a client TLS config trusting the server's CA, or nil
// when TLS is off.
func (s *RedisServer) TLSConfig() *tls.Config {
	cfg, err := s.tlsConfig()
	if err != nil {
		panic(err)
	}
	return cfg
}

// Options returns go-redis options for the server with its credentials
// and TLS config.
func (s *RedisServer) Options() *redis.Options {
	return &redis.Options{
		Addr:      s.Addr,
		Username:  s.Username,
		Password:  s.Password,
		TLSConfig: s.TLSConfig(),
	}
}

// URL returns redis://[user:password@]host:port/0 (rediss:// with TLS;
// a TLS client still needs CAFile to verify the server).
func (s *RedisServer) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
	if s.TLS {
		u.Scheme = "rediss"
	}
	switch {
	case s.Username != "":
		u.User = url.UserPassword(s.Username, s.Password)
	case s.Password != "":
		u.User = url.UserPassword("", s.Password)
	}
	return u.String()
}

// Client returns a go-redis client for the server, closed at cleanup.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}
