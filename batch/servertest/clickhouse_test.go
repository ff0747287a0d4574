package servertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// The endpoint runs a real, current ClickHouse: the types Outpost's schema
// needs exist, DDL lands in system tables, and errors carry ClickHouse's
// codes through clickhouse-go.
func TestClickHouseEngine(t *testing.T) {
	s := ClickHouse(t)
	ctx := context.Background()
	conn := s.Conn(t, "")
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Version.Major < 24 {
		t.Fatalf("engine version %v: want a current ClickHouse", v.Version)
	}
	t.Logf("engine: %s", v)
	s.Exec(t, "CREATE DATABASE d",
		`CREATE TABLE d.t (id String, at DateTime64(3), ok Bool, ids Array(String) DEFAULT [],
			INDEX idx_id id TYPE bloom_filter GRANULARITY 1) ENGINE = ReplacingMergeTree
			PARTITION BY toYYYYMM(at) ORDER BY (at, id)`,
		`INSERT INTO d.t (id, at, ok, ids) VALUES ('a', '2026-01-02 03:04:05.678', true, ['x', 'y'])`)
	var (
		id  string
		at  time.Time
		ok  bool
		ids []string
	)
	if err := s.Conn(t, "d").QueryRow(ctx, "SELECT id, at, ok, ids FROM t").Scan(&id, &at, &ok, &ids); err != nil {
		t.Fatal(err)
	}
	if id != "a" || at.UnixMilli() != time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC).UnixMilli() || !ok || len(ids) != 2 || ids[1] != "y" {
		t.Fatalf("read back %q %v %v %v", id, at, ok, ids)
	}
	var engine, key string
	if err := conn.QueryRow(ctx, "SELECT engine, sorting_key FROM system.tables WHERE database = 'd' AND name = 't'").Scan(&engine, &key); err != nil {
		t.Fatal(err)
	}
	if engine != "ReplacingMergeTree" || key != "at, id" {
		t.Fatalf("system.tables: engine %q, sorting key %q", engine, key)
	}
	err = conn.Exec(ctx, "SELECT * FROM d.missing")
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 60 {
		t.Fatalf("unknown table: %v, want a ClickHouse exception with code 60", err)
	}
}

// An account with a password over HTTPS: the right password works, a wrong
// one is refused with AUTHENTICATION_FAILED (516).
func TestClickHouseTLSAndAuth(t *testing.T) {
	s := ClickHouse(t, WithClickHouseTLS(), WithClickHouseUser("migrator", "S3cr3t"))
	conn := s.Conn(t, "")
	if err := conn.Ping(context.Background()); err != nil {
		t.Fatalf("ping over TLS: %v", err)
	}
	o := s.Options("")
	o.Auth.Password = "wrong"
	bad, err := clickhouse.Open(o)
	if err == nil {
		err = bad.Ping(context.Background())
		_ = bad.Close()
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 516 {
		t.Fatalf("wrong password: %v, want code 516", err)
	}
	o = s.Options("")
	o.TLS = nil
	plain, err := clickhouse.Open(o)
	if err == nil {
		err = plain.Ping(context.Background())
		_ = plain.Close()
	}
	if err == nil {
		t.Fatal("plain HTTP to the HTTPS endpoint worked")
	}
}
