package clickhousemigrations

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/outpost-migrate/outpost/batch/clickhousephase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// The native protocol (Outpost's: CLICKHOUSE_ADDR=host:9000) against a real
// server, Debian's clickhouse-server 18.16, plain and over TLS: status reads
// golang-migrate's version table with the deployment prefix as Outpost's
// migrate leaves it, and the connection errors are classified (wrong
// password 77, TLS mismatch or an unverified certificate 78, nothing
// listening 69). 18.16 cannot hold Outpost's schema (no DateTime64), which
// the chDB engine tests cover.
func TestNativeProtocolDebianServer(t *testing.T) {
	const password = "N4tive-Pa55"
	srv := servertest.ClickHouseDebian(t, password)
	srv.Exec(t, "CREATE DATABASE outpost",
		"CREATE TABLE outpost.prod_schema_migrations (version Int64, dirty UInt8, sequence UInt64) Engine=MergeTree ORDER BY sequence",
		"INSERT INTO outpost.prod_schema_migrations SELECT 1, 1, 100",
		"INSERT INTO outpost.prod_schema_migrations SELECT 1, 0, 200",
		"INSERT INTO outpost.prod_schema_migrations SELECT 2, 1, 300")
	ca, err := servertest.ClientTLSConfig(srv.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, cfg := range map[string]clickhousephase.Config{
		"plain": {Addr: srv.Addr(), Password: password, Database: "outpost", DeploymentID: "prod"},
		"tls":   {Addr: srv.SecureAddr(), Password: password, Database: "outpost", DeploymentID: "prod", TLS: ca},
	} {
		p, err := clickhousephase.New(cfg, Source())
		if err != nil {
			t.Fatal(err)
		}
		lines, err := p.Status(ctx)
		_ = p.Close()
		if err != nil || states(lines) != "applied,dirty,pending" {
			t.Fatalf("%s: status %v %s", name, err, states(lines))
		}
		if tgt := p.Target(); tgt.Protocol != "native" || tgt.TLS != (name == "tls") {
			t.Fatalf("%s: target %+v", name, tgt)
		}
	}
	check := func(name string, cfg clickhousephase.Config, code report.Code) {
		t.Helper()
		p, _ := clickhousephase.New(cfg, Source())
		defer p.Close()
		_, err := p.Status(ctx)
		if report.CodeOf(err) != code {
			t.Errorf("%s: %v, want %s", name, err, code)
		}
	}
	check("wrong password", clickhousephase.Config{Addr: srv.Addr(), Password: "nope", Database: "outpost"}, report.CodePermission)
	check("plaintext to the TLS port", clickhousephase.Config{Addr: srv.SecureAddr(), Password: password, Database: "outpost"}, report.CodeConfig)
	check("TLS to the plain port", clickhousephase.Config{Addr: srv.Addr(), Password: password, Database: "outpost", TLS: ca}, report.CodeConfig)
	check("TLS without the CA", clickhousephase.Config{Addr: srv.SecureAddr(), Password: password, Database: "outpost", TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, report.CodeConfig)
	check("unknown database", clickhousephase.Config{Addr: srv.Addr(), Password: password, Database: "nope"}, report.CodeConfig)
}
