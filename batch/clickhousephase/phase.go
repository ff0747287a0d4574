// Package clickhousephase runs Outpost's ClickHouse log-store migrations as a
// batch.Phase: list, plan, apply, verify, status and force, tracked the way
// Outpost tracks them.
//
// # Compatibility with golang-migrate and Outpost
//
// Outpost migrates ClickHouse with golang-migrate's ClickHouse driver, with
// x-multi-statement=true (each ";"-separated statement runs on its own),
// x-migrations-table-engine=MergeTree and, with a DEPLOYMENT_ID, the table
// <DEPLOYMENT_ID>_schema_migrations; every table name in the SQL carries
// {deployment_prefix}, replaced by <DEPLOYMENT_ID>_ (or nothing). The version
// table is append-only: (version Int64, dirty UInt8, sequence UInt64), the
// current version is the row with the highest sequence, and setting a
// version appends a row whose sequence is the time in nanoseconds. This
// phase reads and writes it the same way, so a database Outpost migrated
// continues where it is, and Outpost starts on one this tool migrated.
//
// # No transactions, no lock
//
// ClickHouse runs DDL without transactions. Like golang-migrate, apply
// records the version dirty before a migration's first statement and clean
// after its last; unlike it, it also records in its own checkpoint table
// (<prefix>outpost_migrate_checkpoint) which statement comes next, so a
// migration stopped between statements (a failure, a signal, a lost
// connection) is known to be ours and apply resumes it at the statement
// that did not finish. Any other dirty version is refused
// (report.CodeDirty) until a person repairs the schema and records a version
// with Force.
//
// ClickHouse has no advisory lock, and golang-migrate's ClickHouse "lock" is
// a flag inside one process. Concurrent runs are kept apart by the Redis
// lease the runner takes when Redis is in scope (Outpost's deployments
// always have Redis); in addition, every version row this phase writes is
// preceded by a check that the newest row is still the one it last saw, so
// a second writer makes it stop (report.CodeLockHeld) rather than interleave.
package clickhousephase

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// Backend is the phase's name in reports and migration ids.
const Backend = "clickhouse"

// DefaultDialTimeout bounds connecting.
const DefaultDialTimeout = 10 * time.Second

// Config is where and how to connect. Outpost's settings map onto it:
// CLICKHOUSE_ADDR, CLICKHOUSE_USERNAME, CLICKHOUSE_PASSWORD,
// CLICKHOUSE_DATABASE, CLICKHOUSE_TLS_ENABLED and DEPLOYMENT_ID.
type Config struct {
	// Addr is host:port of the native protocol (Outpost's), or of the HTTP
	// interface when HTTP is set.
	Addr     string
	HTTP     bool
	Username string
	Password string
	// Database holds the tables and the version table.
	Database string
	// TLS, when not nil, is used for the connection.
	TLS          *tls.Config
	DeploymentID string
	DialTimeout  time.Duration
	// ShowSQL makes Plan list the statements (plan --show-sql).
	ShowSQL bool
}

// Phase is the ClickHouse store phase; its methods are called from one
// goroutine at a time.
type Phase struct {
	// Reader answers Status, Cleanup and Version.
	versioned.Reader
	src    Source
	cfg    Config
	prefix string
	conn   driver.Conn
	// lastSeq is the sequence of the newest version row this phase read
	// or wrote (see setVersion).
	lastSeq uint64
}

var _ batch.Phase = (*Phase)(nil)

// New checks cfg and returns a phase over src; it connects on first use.
func New(cfg Config, src Source) (*Phase, error) {
	if cfg.Addr == "" {
		return nil, report.E(report.CodeConfig, "ClickHouse address is empty (set CLICKHOUSE_ADDR)").With("setting", "clickhouse.addr")
	}
	if cfg.Database == "" {
		return nil, report.E(report.CodeConfig, "ClickHouse database is empty (set CLICKHOUSE_DATABASE)").With("setting", "clickhouse.database")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	p := &Phase{src: src, cfg: cfg}
	p.Reader = versioned.Reader{Read: p.read}
	if cfg.DeploymentID != "" {
		p.prefix = cfg.DeploymentID + "_"
	}
	return p, nil
}

// Backend implements batch.Phase.
func (p *Phase) Backend() string { return Backend }

// TargetKnown implements batch.TargetKnower.
func (p *Phase) TargetKnown(target string) bool {
	_, ok := p.src.Lookup(target)
	return ok
}

// Prefix is the deployment prefix of every table ("prod_" or "").
func (p *Phase) Prefix() string { return p.prefix }

// Target describes the store without credentials.
func (p *Phase) Target() *report.ClickHouseTarget {
	proto := "native"
	if p.cfg.HTTP {
		proto = "http"
	}
	return &report.ClickHouseTarget{Addr: p.cfg.Addr, Database: p.cfg.Database, Username: p.cfg.Username,
		TLS: p.cfg.TLS != nil, Protocol: proto, VersionTable: p.prefix + VersionTable}
}

func (p *Phase) where() string { return fmt.Sprintf("ClickHouse %s/%s", p.cfg.Addr, p.cfg.Database) }

// Close implements batch.Phase.
func (p *Phase) Close() error {
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn = nil
	return err
}

func (p *Phase) options() *clickhouse.Options {
	o := &clickhouse.Options{
		Addr:        []string{p.cfg.Addr},
		Auth:        clickhouse.Auth{Database: p.cfg.Database, Username: p.cfg.Username, Password: p.cfg.Password},
		TLS:         p.cfg.TLS,
		DialTimeout: p.cfg.DialTimeout,
		ClientInfo:  clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "outpost-migrate", Version: "1"}}},
	}
	if p.cfg.HTTP {
		o.Protocol = clickhouse.HTTP
	}
	return o
}

// connect returns the connection, opening and pinging it if needed.
func (p *Phase) connect(ctx context.Context) (driver.Conn, error) {
	if p.conn != nil {
		return p.conn, nil
	}
	conn, err := clickhouse.Open(p.options())
	if err == nil {
		err = conn.Ping(ctx)
		if err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		err = classify(ctx, err, report.CodeUnreachable, "connect to %s", p.where())
		if report.CodeOf(err) == report.CodeUnreachable && p.cfg.TLS == nil && speaksTLS(ctx, p.cfg.Addr) {
			return nil, report.Wrap(report.CodeConfig, err, "%s speaks TLS but TLS is off: set CLICKHOUSE_TLS_ENABLED=true", p.cfg.Addr).(*report.Error).With("setting", "clickhouse.tls_enabled")
		}
		return nil, err
	}
	p.conn = conn
	return conn, nil
}

// speaksTLS says whether addr completes a TLS handshake: told apart from a
// server that is down, a plaintext client's dropped connection means the
// setting is wrong. Only the handshake runs; nothing is sent.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe that sends nothing
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// dropConn forgets the connection after an error that may have broken it.
func (p *Phase) dropConn() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

// read is status as versioned.Reader reads it.
func (p *Phase) read(ctx context.Context) ([]report.Migration, versioned.Recorded, error) {
	lines, st, err := p.status(ctx)
	return lines, p.recorded(st), err
}

// status reads the version and checkpoint tables: a dirty version is
// "dirty" (foreign) or "partial" (ours, apply resumes it).
func (p *Phase) status(ctx context.Context) ([]report.Migration, dbState, error) {
	conn, err := p.connect(ctx)
	if err != nil {
		return p.src.UnknownLines(err), dbState{Version: NoVersion}, err
	}
	st, err := p.readState(ctx, conn)
	if err != nil {
		p.dropConn()
		err = classify(ctx, err, report.CodeUnknown, "read the schema version from %s", p.where())
		return p.src.UnknownLines(err), dbState{Version: NoVersion}, err
	}
	p.lastSeq = st.Seq
	return p.linesFor(st), st, nil
}
