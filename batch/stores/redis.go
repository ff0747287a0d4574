// Package stores opens the connections a run needs, from configuration, and
// waits for a store that is still starting (--wait-for) so that the waiting
// happens inside the tool, not in the orchestrator's restart loop.
package stores

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/probe"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// RedisTLS builds the TLS configuration: the system roots plus an optional
// CA file, server name checked, and verification skipped only when asked
// explicitly.
func RedisTLS(c config.Redis) (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecure} //nolint:gosec // an explicit, documented opt-out
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, report.Wrap(report.CodeConfig, err, "read redis CA file")
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, report.E(report.CodeConfig, "redis CA file %s holds no PEM certificate", c.TLSCAFile).With("setting", config.KeyRedisTLSCA)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// NewRedis returns a client for the configuration, without connecting.
func NewRedis(c config.Redis) (redis.UniversalClient, error) {
	tlsConf, err := RedisTLS(c)
	if err != nil {
		return nil, err
	}
	if c.Cluster {
		o := &redis.ClusterOptions{
			Addrs: []string{c.Addr()}, Username: c.Username, Password: c.Password, TLSConfig: tlsConf,
			DialTimeout: config.DialTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
			PoolSize: 16, MaxRetries: 2, ContextTimeoutEnabled: true,
		}
		if c.HostOverride {
			o.NewClient = overrideHost(c.Host)
		}
		return redis.NewClusterClient(o), nil
	}
	return redis.NewClient(&redis.Options{
		Addr: c.Addr(), Username: c.Username, Password: c.Password, DB: c.Database, TLSConfig: tlsConf,
		DialTimeout: config.DialTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		PoolSize: 16, MaxRetries: 2,
		// Without it go-redis ignores context deadlines and cancellation on
		// reads: a wedged server would hold a ping for ReadTimeout, not
		// DialTimeout, and a second signal could not cancel a blocked call.
		ContextTimeoutEnabled: true,
	}), nil
}

// overrideHost is Outpost's dev_cluster_host_override: every node the
// cluster announces (in CLUSTER SLOTS and in MOVED/ASK redirections) is
// dialled at the configured host with the port it announces, for nodes
// that announce an address only they can reach (Docker, a tunnel).
func overrideHost(host string) func(*redis.Options) *redis.Client {
	return func(o *redis.Options) *redis.Client {
		if _, port, err := net.SplitHostPort(o.Addr); err == nil {
			o.Addr = net.JoinHostPort(host, port)
		}
		return redis.NewClient(o)
	}
}

// OpenRedis connects and checks the server answers, retrying a store that
// is unreachable (not one that refuses: a wrong password does not improve
// with time) until waitFor has passed.
func OpenRedis(ctx context.Context, c config.Redis, waitFor time.Duration, events progress.Sink) (redis.UniversalClient, error) {
	client, err := NewRedis(c)
	if err != nil {
		return nil, err
	}
	err = Wait(ctx, waitFor,
		func() error { return ping(ctx, client, c) },
		func(err error) bool {
			code := report.CodeOf(err)
			return code == report.CodeUnreachable || code == report.CodeTemporary
		},
		func(attempt int, err error, left time.Duration) {
			progress.Warnf(events, "redis at %s not reachable yet (attempt %d): %v; retrying for %s", c.Addr(), attempt, err, left.Round(time.Second))
		})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	for _, w := range Warnings(client) {
		progress.Warnf(events, "redis at %s: %s", c.Addr(), w)
	}
	return client, nil
}

func ping(ctx context.Context, client redis.UniversalClient, c config.Redis) error {
	pctx, cancel := context.WithTimeout(ctx, config.DialTimeout+time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		switch rediserr.Code(err) {
		case report.CodeUnreachable, report.CodeTimeout:
			// A TLS server drops a plaintext client (EOF) and a plaintext
			// server never answers a TLS handshake (timeout): both look like
			// an outage, but retrying cannot help.
			if merr := tlsMismatch(ctx, c); merr != nil {
				return merr
			}
			if probe.IsPostgreSQL(ctx, c.Addr()) {
				return report.E(report.CodeConfig, "redis: %s is not Redis: it answers as PostgreSQL; check REDIS_HOST and REDIS_PORT (--redis-host, --redis-port; Redis listens on 6379 by default)", c.Addr()).With("setting", config.KeyRedisPort)
			}
			if nerr := unreachableNodes(ctx, c, err); nerr != nil {
				return nerr
			}
		case report.CodeUnknown:
			if c.Cluster && strings.Contains(err.Error(), "cluster support disabled") {
				// The cluster client asks for the slots before PING.
				return report.Wrap(report.CodeConfig, err, "REDIS_CLUSTER_ENABLED is set but %s is not a cluster", c.Addr()).(*report.Error).With("setting", config.KeyRedisCluster)
			}
		case report.CodeConfig:
			if c.TLS && strings.Contains(err.Error(), "x509:") {
				return report.Wrap(report.CodeConfig, err, "redis: connect to %s: the server's certificate did not verify. Outpost itself does not verify Redis certificates; this tool does: give the server's CA (REDIS_TLS_CA_FILE, --redis-tls-ca-file, redis.tls_ca_file), or opt out explicitly as Outpost does (REDIS_TLS_INSECURE_SKIP_VERIFY=true, --redis-tls-insecure-skip-verify)", c.Addr()).(*report.Error).With("setting", config.KeyRedisTLSCA)
			}
		}
		if rediserr.Code(err) == report.CodeTimeout && ctx.Err() == nil {
			// No answer within the dial timeout is an unreachable store
			// (69, retried under --wait-for), not a wait of ours that ran
			// out (75).
			return report.Wrap(report.CodeUnreachable, err, "redis: connect to %s: no answer within %s", c.Addr(), config.DialTimeout+time.Second)
		}
		return rediserr.Classify(err, fmt.Sprintf("connect to %s", c.Addr()))
	}
	if sc, ok := client.(*redis.Client); ok {
		// A cluster node used as a standalone server answers for its own
		// slots only: MOVED for every other key, mid-run. INFO may be
		// denied to a restricted ACL user; then the run finds out later.
		if info, err := sc.Info(pctx, "cluster").Result(); err == nil && strings.Contains(info, "cluster_enabled:1") {
			return report.E(report.CodeConfig, "redis at %s is a cluster node but REDIS_CLUSTER_ENABLED is not set: set it (--redis-cluster, redis.cluster_enabled)", c.Addr()).With("setting", config.KeyRedisCluster)
		}
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		// A server that is not in cluster mode answers PING but not the
		// cluster commands: a configuration error, not an outage.
		if err := cc.ClusterInfo(pctx).Err(); err != nil {
			if rediserr.Code(err) == report.CodeUnknown {
				return report.Wrap(report.CodeConfig, err, "REDIS_CLUSTER_ENABLED is set but %s is not a cluster", c.Addr())
			}
			return rediserr.Classify(err, "CLUSTER INFO")
		}
	}
	return checkServer(pctx, client, c)
}

// probeTimeout bounds each step of tlsMismatch's probe.
const probeTimeout = 2 * time.Second

// tlsMismatch probes a server that did not answer PING for the other
// protocol: with TLS off, whether it completes a TLS handshake; with TLS on,
// whether it answers a plaintext PING. A match is a report.CodeConfig error
// saying which setting to change; anything else (nothing listening, no
// answer either way) gives nil and the original error stands.
func tlsMismatch(ctx context.Context, c config.Redis) error {
	ctx, cancel := context.WithTimeout(ctx, 2*probeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", c.Addr())
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if !c.TLS {
		// Only the protocol is probed: the certificate is not trusted.
		tc := tls.Client(conn, &tls.Config{ServerName: c.Host, InsecureSkipVerify: true}) //nolint:gosec // a protocol probe, no data is sent
		if tc.HandshakeContext(ctx) == nil {
			return report.E(report.CodeConfig, "redis at %s speaks TLS but TLS is off: set REDIS_TLS_ENABLED=true (--redis-tls, redis.tls_enabled)", c.Addr()).With("setting", config.KeyRedisTLS)
		}
		return nil
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return nil
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil && (strings.HasPrefix(reply, "+") || strings.HasPrefix(reply, "-")) {
		return report.E(report.CodeConfig, "redis at %s does not speak TLS but TLS is on: unset REDIS_TLS_ENABLED (--redis-tls, redis.tls_enabled)", c.Addr()).With("setting", config.KeyRedisTLS)
	}
	return nil
}
