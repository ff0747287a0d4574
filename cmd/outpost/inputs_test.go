package main

// Issue #22, inputs: a config file too big, a host with a port, an IPv6
// literal in brackets, a PostgreSQL password that needs percent-encoding.
// Each is 78 naming the setting, through the command line, nothing touched.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func TestInputsRefusedWithTheSetting(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	var b strings.Builder
	for b.Len() <= 1<<20 {
		b.WriteString("k" + itoa(b.Len()) + ": v\n")
	}
	require.NoError(t, os.WriteFile(big, []byte(b.String()), 0o600))
	status := []string{"migrate", "status", "--redis-only"}
	cases := []badCase{
		{name: "config file over 1 MiB", args: append([]string{"--config", big}, status...),
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"big.yaml is", "over the limit of 1048576", "is this the right file"}, setting: "config"},
		{name: "REDIS_HOST with a port", envs: map[string]string{"REDIS_HOST": "127.0.0.1:6379"}, args: status,
			code: 78, errCode: "CONFIG_INVALID", msg: []string{`"127.0.0.1:6379" includes a port`, "REDIS_PORT"}, setting: "redis.host"},
		{name: "raw UTF-8 password in POSTGRES_URL", envs: map[string]string{"POSTGRES_URL": "postgres://u:pässwörd@127.0.0.1:5432/db"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"is not a valid URL", "percent-encode", "%C3%A9"}, setting: "postgres"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := badCheck(t, c)
			require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
			require.NotContains(t, r.stdout+r.stderr, "pässwörd")
			require.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

// TestInputsWrongStoreKind: REDIS_PORT pointing at PostgreSQL, and
// POSTGRES_URL pointing at Redis, are 78 saying what answered, within a
// few seconds (they were 69 EOF, and a wait then 75).
func TestInputsWrongStoreKind(t *testing.T) {
	pg := servertest.Postgres(t)
	srv := servertest.Redis(t)
	cases := []badCase{
		{name: "REDIS_PORT of PostgreSQL", envs: map[string]string{"REDIS_HOST": pg.Host, "REDIS_PORT": itoa(pg.Port)}, args: []string{"migrate", "status", "--redis-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"is not Redis: it answers as PostgreSQL", "REDIS_PORT"}, setting: "redis.port"},
		{name: "POSTGRES_URL of Redis", envs: map[string]string{"POSTGRES_URL": "postgres://u:p@" + srv.Addr + "/db?sslmode=disable"}, args: []string{"migrate", "status", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{srv.Addr + " is not PostgreSQL: it answers as Redis", "POSTGRES_URL"}, setting: "postgres"},
		{name: "POSTGRES_URL of Redis, sslmode prefer", envs: map[string]string{"POSTGRES_URL": "postgres://u:p@" + srv.Addr + "/db"}, args: []string{"migrate", "apply", "--yes", "--sql-only"},
			code: 78, errCode: "CONFIG_INVALID", msg: []string{"is not PostgreSQL: it answers as Redis"}, setting: "postgres"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := badCheck(t, c)
			require.Equal(t, false, r.rep["error"].(map[string]any)["retryable"])
			require.Less(t, time.Since(start), 8*time.Second, "recognised within seconds, not after connect timeouts")
		})
	}
}
