package stores_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/batch/stores"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// events collects progress events.
type events struct {
	mu   sync.Mutex
	list []progress.Event
}

func (e *events) Emit(ev progress.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.list)
}

func local(port int) config.Redis { return config.Redis{Host: "127.0.0.1", Port: port} }

// open connects, pings once more through the returned client, and closes it.
func open(t *testing.T, c config.Redis, waitFor time.Duration) error {
	t.Helper()
	client, err := stores.OpenRedis(context.Background(), c, waitFor, progress.Nop)
	if err != nil {
		require.Nil(t, client)
		return err
	}
	defer client.Close()
	require.NoError(t, client.Ping(context.Background()).Err())
	return nil
}

// requireCode asserts err's report code and that its message holds every
// fragment.
func requireCode(t *testing.T, err error, code report.Code, fragments ...string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, report.CodeOf(err), "%v", err)
	for _, f := range fragments {
		require.Contains(t, err.Error(), f)
	}
}

func TestRedisTLSConfig(t *testing.T) {
	t.Parallel()
	got, err := stores.RedisTLS(config.Redis{Host: "h"})
	require.NoError(t, err)
	require.Nil(t, got, "TLS off: no TLS config")

	got, err = stores.RedisTLS(config.Redis{Host: "redis.internal", TLS: true})
	require.NoError(t, err)
	require.Equal(t, "redis.internal", got.ServerName, "the name is checked")
	require.False(t, got.InsecureSkipVerify, "verification is on by default")
	require.Equal(t, uint16(tls.VersionTLS12), got.MinVersion)

	got, err = stores.RedisTLS(config.Redis{Host: "h", TLS: true, TLSInsecure: true})
	require.NoError(t, err)
	require.True(t, got.InsecureSkipVerify)

	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	_, err = stores.RedisTLS(config.Redis{Host: "h", TLS: true, TLSCAFile: notPEM})
	requireCode(t, err, report.CodeConfig, "holds no PEM certificate")
	_, err = stores.RedisTLS(config.Redis{Host: "h", TLS: true, TLSCAFile: "/nonexistent/ca.pem"})
	requireCode(t, err, report.CodeConfig, "CA file")
}

// TestTLS runs every TLS setting against a real TLS server and a plain one.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t, servertest.WithTLS())
	plain := servertest.Redis(t)
	cases := []struct {
		name      string
		c         config.Redis
		code      report.Code
		fragments []string
	}{
		{"verified with the CA", config.Redis{Host: "127.0.0.1", Port: srv.Port, TLS: true, TLSCAFile: srv.CAFile}, "", nil},
		{"verified by host name", config.Redis{Host: "localhost", Port: srv.Port, TLS: true, TLSCAFile: srv.CAFile}, "", nil},
		{"explicit opt-out", config.Redis{Host: "127.0.0.1", Port: srv.Port, TLS: true, TLSInsecure: true}, "", nil},
		{"unknown CA", config.Redis{Host: "127.0.0.1", Port: srv.Port, TLS: true}, report.CodeConfig,
			[]string{"certificate did not verify", "x509", "Outpost itself does not verify Redis certificates", "--redis-tls-ca-file", "--redis-tls-insecure-skip-verify"}},
		{"plaintext to a TLS server", local(srv.Port), report.CodeConfig, []string{"speaks TLS but TLS is off", "REDIS_TLS_ENABLED=true"}},
		{"TLS to a plaintext server", config.Redis{Host: "127.0.0.1", Port: plain.Port, TLS: true, TLSInsecure: true}, report.CodeConfig,
			[]string{"does not speak TLS but TLS is on"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// A configuration error is not retried, whatever --wait-for says.
			start := time.Now()
			err := open(t, c.c, 30*time.Second)
			if c.code == "" {
				require.NoError(t, err)
				return
			}
			requireCode(t, err, c.code, c.fragments...)
			require.Less(t, time.Since(start), 15*time.Second, "a configuration error must not be retried")
		})
	}
	// A CA that did not sign the server's certificate.
	other, err := servertest.WriteTLSFiles(t.TempDir())
	require.NoError(t, err)
	err = open(t, config.Redis{Host: "127.0.0.1", Port: srv.Port, TLS: true, TLSCAFile: other.CAFile}, 0)
	requireCode(t, err, report.CodeConfig, "certificate did not verify")
}

func TestAuth(t *testing.T) {
	t.Parallel()
	const pw = "S3cr3t-Pa55-xyzzy"
	srv := servertest.Redis(t, servertest.WithPassword(pw))
	acl := servertest.Redis(t, servertest.WithACLUser("migrator", pw))

	require.NoError(t, open(t, config.Redis{Host: "127.0.0.1", Port: srv.Port, Password: pw}, 0))
	require.NoError(t, open(t, config.Redis{Host: "127.0.0.1", Port: acl.Port, Username: "migrator", Password: pw}, 0))

	for name, c := range map[string]config.Redis{
		"no password":        local(srv.Port),
		"wrong password":     {Host: "127.0.0.1", Port: srv.Port, Password: "wrong"},
		"wrong ACL password": {Host: "127.0.0.1", Port: acl.Port, Username: "migrator", Password: "wrong"},
		"unknown ACL user":   {Host: "127.0.0.1", Port: acl.Port, Username: "nobody", Password: pw},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := open(t, c, 30*time.Second)
			requireCode(t, err, report.CodePermission)
			require.NotContains(t, err.Error(), pw)
			require.Less(t, time.Since(start), 10*time.Second, "a refusal must not be retried")
		})
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	port := srv.Port
	srv.Stop(t)

	err := open(t, local(port), 0)
	requireCode(t, err, report.CodeUnreachable, "127.0.0.1:"+strconv.Itoa(port), "connection refused")

	// --wait-for retries, says so, and still gives 69 after it.
	ev := &events{}
	start := time.Now()
	_, err = stores.OpenRedis(context.Background(), local(port), 3*time.Second, ev)
	requireCode(t, err, report.CodeUnreachable)
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second)
	require.GreaterOrEqual(t, ev.len(), 1, "each retry is announced")
	require.Contains(t, ev.list[0].Msg, "not reachable yet")

	// A server that comes up while the tool waits is used.
	go func() {
		time.Sleep(700 * time.Millisecond)
		srv.Start(t)
	}()
	client, err := stores.OpenRedis(context.Background(), local(port), 20*time.Second, progress.Nop)
	require.NoError(t, err)
	require.NoError(t, client.Close())

	// Cancellation while waiting stops the wait.
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = stores.OpenRedis(ctx, local(port), time.Minute, progress.Nop)
	require.Error(t, err)
	require.Less(t, time.Since(start), 10*time.Second)
}

// TestSilentServer: a peer that accepts and never answers (a stopped or
// wedged Redis) is unreachable, 69, not a timeout of ours.
func TestSilentServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	err = open(t, local(ln.Addr().(*net.TCPAddr).Port), 0)
	requireCode(t, err, report.CodeUnreachable, "no answer within")
}

func TestClusterFlagOnAStandaloneServer(t *testing.T) {
	t.Parallel()
	srv := servertest.Redis(t)
	c := local(srv.Port)
	c.Cluster = true
	err := open(t, c, 0)
	requireCode(t, err, report.CodeConfig, "REDIS_CLUSTER_ENABLED is set but", "is not a cluster")
	require.Equal(t, config.KeyRedisCluster, report.DetailsOf(err)["setting"])
}

func TestClusterNodeWithoutTheClusterFlag(t *testing.T) {
	t.Parallel()
	cl := servertest.RedisCluster(t)
	err := open(t, local(cl.Ports[0]), 0)
	requireCode(t, err, report.CodeConfig, "is a cluster node but REDIS_CLUSTER_ENABLED is not set")
	c := local(cl.Ports[1])
	c.Cluster = true
	require.NoError(t, open(t, c, 0))
}

func TestNewRedisClientKinds(t *testing.T) {
	t.Parallel()
	c, err := stores.NewRedis(config.Redis{Host: "127.0.0.1", Port: 1, Database: 3, Username: "u", Password: "p"})
	require.NoError(t, err)
	defer c.Close()
	sc, ok := c.(*redis.Client)
	require.True(t, ok, "standalone: %T", c)
	o := sc.Options()
	require.Equal(t, "127.0.0.1:1", o.Addr)
	require.Equal(t, 3, o.DB)
	require.Equal(t, "u", o.Username)
	require.Nil(t, o.TLSConfig)
	require.Equal(t, config.DialTimeout, o.DialTimeout)
	require.True(t, o.ContextTimeoutEnabled, "deadlines and cancellation reach blocked reads")

	cc, err := stores.NewRedis(config.Redis{Host: "127.0.0.1", Port: 1, Cluster: true, TLS: true, TLSInsecure: true})
	require.NoError(t, err)
	defer cc.Close()
	cl, ok := cc.(*redis.ClusterClient)
	require.True(t, ok, "cluster: %T", cc)
	require.Equal(t, []string{"127.0.0.1:1"}, cl.Options().Addrs)
	require.NotNil(t, cl.Options().TLSConfig)
	require.True(t, cl.Options().ContextTimeoutEnabled)

	_, err = stores.NewRedis(config.Redis{Host: "h", Port: 1, TLS: true, TLSCAFile: "/nonexistent"})
	requireCode(t, err, report.CodeConfig)
}
