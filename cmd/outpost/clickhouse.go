package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/stores"
	"github.com/outpost-migrate/outpost/migrations/clickhousemigrations"
	"github.com/outpost-migrate/outpost/report"
)

// chSettings are Outpost's ClickHouse settings as this command reads them.
type chSettings struct {
	Addr, Username, Password, Database string
	TLS                                bool
}

// clickhouseConfig maps Outpost's settings onto the phase's. CLICKHOUSE_ADDR
// is host:port of the native protocol, as in Outpost; this tool also takes
// http://host:port or https://host:port for ClickHouse's HTTP interface
// (https implies TLS). TLS verifies the server with the system's roots, as
// Outpost's client does (SSL_CERT_FILE adds a CA).
func clickhouseConfig(s chSettings, deploymentID string) (clickhousephase.Config, error) {
	cfg := clickhousephase.Config{Addr: s.Addr, Username: s.Username, Password: s.Password,
		Database: s.Database, DeploymentID: deploymentID}
	useTLS := s.TLS
	switch {
	case strings.HasPrefix(s.Addr, "http://"):
		cfg.Addr, cfg.HTTP = strings.TrimPrefix(s.Addr, "http://"), true
	case strings.HasPrefix(s.Addr, "https://"):
		cfg.Addr, cfg.HTTP, useTLS = strings.TrimPrefix(s.Addr, "https://"), true, true
	}
	cfg.Addr = strings.TrimSuffix(cfg.Addr, "/")
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || port == "" || strings.Contains(cfg.Addr, "/") {
		return cfg, report.E(report.CodeConfig, "CLICKHOUSE_ADDR %q is not host:port (or http://host:port)", s.Addr).With("setting", "clickhouse.addr")
	}
	if useTLS {
		cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if cfg.Database == "" {
		cfg.Database = "outpost" // Outpost's default
	}
	return cfg, nil
}

// openClickHouse builds the ClickHouse phase and, with --wait-for, waits for
// a server that is still starting.
func openClickHouse(ctx context.Context, s chSettings, deploymentID string, waitFor time.Duration, events progress.Sink) (*clickhousephase.Phase, error) {
	cfg, err := clickhouseConfig(s, deploymentID)
	if err != nil {
		return nil, err
	}
	p, err := clickhousephase.New(cfg, clickhousemigrations.Source())
	if err != nil {
		return nil, err
	}
	err = stores.Wait(ctx, waitFor,
		func() error {
			_, _, err := p.Version(ctx)
			if report.CodeOf(err) == report.CodeUnreachable {
				return err
			}
			return nil // reachable: the command reports what it finds
		},
		func(error) bool { return true },
		func(attempt int, err error, _ time.Duration) {
			progress.Warnf(events, "clickhouse not reachable yet (attempt %d): %v; retrying", attempt, err)
		})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// forceClickHouse records a ClickHouse version after a manual repair.
func forceClickHouse(ctx context.Context, p *clickhousephase.Phase, rep *report.Report, version int) error {
	before, dirty, err := p.Version(ctx)
	if err != nil {
		return err
	}
	if err := p.Force(ctx, version); err != nil {
		return err
	}
	lines, err := p.Status(ctx)
	rep.Migrations = lines
	if err != nil {
		return err
	}
	rep.Outcome = report.OutcomeForced
	rep.Changed = true
	rep.Msg = fmt.Sprintf("recorded ClickHouse schema version %d in %s (was %d, dirty %v)", version, p.Target().VersionTable, before, dirty)
	return nil
}
