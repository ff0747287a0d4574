// Package sqlmigrations holds Outpost's PostgreSQL log-store migrations 1 to
// 10 as embedded SQL files named the way golang-migrate names them
// (migrations/000005_denormalize_attempts.up.sql, ...), the Go batched step
// of migration 5 (Backfill), and the schema Outpost has at each version
// (Expected), written from the storage spec independently of the SQL files
// so that tests and verify compare two independent descriptions.
//
// cmd hands Source() to sqlphase.New; this package imports sqlphase, never
// the other way round.
package sqlmigrations

import (
	"embed"
	"io/fs"
	"sync"

	"github.com/outpost-migrate/outpost/batch/sqlphase"
)

//go:embed migrations/*.sql
var files embed.FS

// Files returns the SQL files (NNNNNN_name.up.sql / .down.sql at the root),
// for golang-migrate, psql or a test that runs them unsplit.
func Files() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// BackfillKey names migration 5's batched step, as its marker
// "-- +outpost batched backfill" and sqlphase.Load expect.
const BackfillKey = "000005_denormalize_attempts/backfill"

// Load validates and returns the migrations.
func Load() (sqlphase.Source, error) {
	src, err := sqlphase.Load(Files(), ".", map[string]sqlphase.BatchedStep{BackfillKey: Backfill{}}, Expected)
	src.Locks = Locks
	return src, err
}

var loadOnce = sync.OnceValues(Load)

// Source returns the migrations. It panics if the embedded set is invalid,
// which the package's tests rule out.
func Source() sqlphase.Source {
	s, err := loadOnce()
	if err != nil {
		panic(err)
	}
	return s
}
