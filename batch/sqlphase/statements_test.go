package sqlphase

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSplitStatements(t *testing.T) {
	sql := `-- a comment; with a semicolon
CREATE TABLE t (a text DEFAULT 'x;y');
CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
/* block; comment */ UPDATE t SET a = "b;c";
-- trailing comment only
`
	got := SplitStatements(sql)
	assert.Equal(t, []string{
		"-- a comment; with a semicolon\nCREATE TABLE t (a text DEFAULT 'x;y')",
		"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
		`/* block; comment */ UPDATE t SET a = "b;c"`,
	}, got)
}

func TestLockOf(t *testing.T) {
	for sql, want := range map[string]struct {
		lock     string
		rewrites bool
	}{
		"ALTER TABLE attempts ALTER COLUMN event_data TYPE text USING event_data::text": {"ACCESS EXCLUSIVE on attempts (blocks reads and writes)", true},
		"ALTER TABLE events ADD COLUMN x text NOT NULL DEFAULT ''":                      {"ACCESS EXCLUSIVE on events (blocks reads and writes)", false},
		"CREATE INDEX idx_a ON attempts (tenant_id)":                                    {"SHARE on attempts (blocks writes until the index is built)", false},
		"CREATE INDEX CONCURRENTLY idx_a ON attempts (tenant_id)":                       {"SHARE UPDATE EXCLUSIVE on attempts (writes continue)", false},
		"DELETE FROM deliveries WHERE tenant_id IS NULL":                                {"ROW EXCLUSIVE on deliveries (the rows it changes)", false},
		"DROP INDEX IF EXISTS deliveries_event_id_idx":                                  {"ACCESS EXCLUSIVE on deliveries_event_id_idx (blocks reads and writes)", false},
		"SELECT 1": {"", false},
	} {
		lock, rw := lockOf(sql)
		assert.Equal(t, want.lock, lock, sql)
		assert.Equal(t, want.rewrites, rw, sql)
	}
}
