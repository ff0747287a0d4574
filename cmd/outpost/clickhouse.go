package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/migrations/clickhousemigrations"
	"github.com/outpost-migrate/outpost/report"
)

// openClickHouseInto opens the ClickHouse phase as the SQL phase (the log
// store Outpost uses when CLICKHOUSE_ADDR is set and POSTGRES_URL is not).
func (inv *invocation) openClickHouseInto(ctx context.Context, w *wiring, cfg *config.Config) error {
	p, err := openClickHouse(ctx, cfg.ClickHouse, cfg.DeploymentID, inv.c.waitFor, inv.c.o.showSQL, inv.events)
	if err != nil {
		return err
	}
	inv.rep.Targets.ClickHouse = p.Target()
	w.ch = p
	w.runner.Phases = append(w.runner.Phases, p)
	return nil
}

// clickhouseConfig maps Outpost's settings onto the phase's. CLICKHOUSE_ADDR
// is host:port of the native protocol, as in Outpost; CLICKHOUSE_PROTOCOL=http
// (this tool's own setting) uses ClickHouse's HTTP interface instead. TLS
// verifies the server with the system's roots, as Outpost's client does
// (SSL_CERT_FILE adds a CA).
func clickhouseConfig(s config.ClickHouse, deploymentID string) (clickhousephase.Config, error) {
	cfg := clickhousephase.Config{Addr: s.Addr, Username: s.Username, Password: s.Password,
		Database: s.Database, DeploymentID: deploymentID}
	switch strings.ToLower(strings.TrimSpace(s.Protocol)) {
	case "", "native":
	case "http":
		cfg.HTTP = true
	default:
		return cfg, report.E(report.CodeConfig, "CLICKHOUSE_PROTOCOL %q is neither native nor http", s.Protocol).With("setting", config.KeyClickHouseProto)
	}
	if s.TLS {
		host, _, _ := net.SplitHostPort(s.Addr)
		cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// openClickHouse builds the ClickHouse phase and, with --wait-for, waits for
// a server that is still starting.
func openClickHouse(ctx context.Context, s config.ClickHouse, deploymentID string, waitFor time.Duration, showSQL bool, events progress.Sink) (*clickhousephase.Phase, error) {
	cfg, err := clickhouseConfig(s, deploymentID)
	if err != nil {
		return nil, err
	}
	cfg.ShowSQL = showSQL
	p, err := clickhousephase.New(cfg, clickhousemigrations.Source())
	if err != nil {
		return nil, err
	}
	if err := waitLogStore(ctx, p, "clickhouse", waitFor, events); err != nil {
		return nil, err
	}
	return p, nil
}
