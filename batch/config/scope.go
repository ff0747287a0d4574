package config

import (
	"github.com/outpost-migrate/outpost/report"
)

// Scope names the stores a command works on.
type Scope struct{ SQL, Redis bool }

// Names lists the scope for the report.
func (s Scope) Names() []string {
	var out []string
	if s.SQL {
		out = append(out, "sql")
	}
	if s.Redis {
		out = append(out, "redis")
	}
	return out
}

// LogStore is the SQL log store configured, chosen as Outpost chooses it:
// "postgres" when POSTGRES_URL is set, else "clickhouse" when
// CLICKHOUSE_ADDR is, else "" (none).
func (c *Config) LogStore() string {
	switch {
	case c.PostgresURL != "":
		return report.StorePostgres
	case c.ClickHouse.Addr != "":
		return report.StoreClickHouse
	}
	return ""
}

// The messages of a SQL phase that does not run: the text report prints
// them and the JSON report carries them in targets.sql.
const (
	msgNoLogStore  = "no log store is configured (POSTGRES_URL, or CLICKHOUSE_ADDR): the SQL phase is skipped, as Outpost's own migrate skips it"
	msgSQLRequired = "the SQL store is required (--sql-only, force) but no log store is configured: set POSTGRES_URL, --postgres-url or postgres: in the config file"
)

// Resolve applies the scope rule to the stores a command asks for. Redis
// is always configured (it has a default address, as in Outpost). The SQL
// phase runs when a log store is configured; otherwise it is skipped
// visibly (the returned target says why) unless sqlRequired (--sql-only,
// force), which makes it an error.
func (c *Config) Resolve(want Scope, sqlRequired bool) (Scope, *report.SQLTarget, error) {
	if !want.SQL {
		return want, nil, nil
	}
	switch c.LogStore() {
	case report.StorePostgres:
		return want, &report.SQLTarget{State: report.SQLConfigured, Store: report.StorePostgres}, nil
	case report.StoreClickHouse:
		return want, &report.SQLTarget{State: report.SQLConfigured, Store: report.StoreClickHouse}, nil
	}
	if sqlRequired {
		return want, nil, report.E(report.CodeConfig, "%s", msgSQLRequired).With("setting", KeyPostgres)
	}
	want.SQL = false
	return want, &report.SQLTarget{State: report.SQLNotConfigured, Message: msgNoLogStore}, nil
}
