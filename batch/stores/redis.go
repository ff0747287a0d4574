// Package stores opens the connections a run needs, from configuration, and
// waits for a store that is still starting (--wait-for) so that the waiting
// happens inside the tool, not in the orchestrator's restart loop.
package stores

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/config"
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
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: []string{c.Addr()}, Username: c.Username, Password: c.Password, TLSConfig: tlsConf,
			DialTimeout: config.DialTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
			PoolSize: 16, MaxRetries: 2,
		}), nil
	}
	return redis.NewClient(&redis.Options{
		Addr: c.Addr(), Username: c.Username, Password: c.Password, DB: c.Database, TLSConfig: tlsConf,
		DialTimeout: config.DialTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		PoolSize: 16, MaxRetries: 2,
	}), nil
}

// OpenRedis connects and checks the server answers, retrying a store that
// is unreachable (not one that refuses: a wrong password does not improve
// with time) until waitFor has passed.
func OpenRedis(ctx context.Context, c config.Redis, waitFor time.Duration, events progress.Sink) (redis.UniversalClient, error) {
	client, err := NewRedis(c)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(waitFor)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = ping(ctx, client, c)
		if err == nil {
			return client, nil
		}
		code := report.CodeOf(err)
		if (code != report.CodeUnreachable && code != report.CodeTemporary) || time.Now().Add(delay).After(deadline) {
			_ = client.Close()
			return nil, err
		}
		progress.Warnf(events, "redis at %s not reachable yet (attempt %d): %v; retrying for %s", c.Addr(), attempt, err, time.Until(deadline).Round(time.Second))
		select {
		case <-ctx.Done():
			_ = client.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func ping(ctx context.Context, client redis.UniversalClient, c config.Redis) error {
	pctx, cancel := context.WithTimeout(ctx, config.DialTimeout+time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		return rediserr.Classify(err, fmt.Sprintf("connect to %s", c.Addr()))
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
	return nil
}
