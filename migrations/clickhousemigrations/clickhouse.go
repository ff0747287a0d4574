// Package clickhousemigrations holds Outpost's ClickHouse log-store
// migrations 1 to 3 as embedded SQL files, byte for byte as Outpost ships
// them (internal/migrator/migrations/clickhouse/, with the
// {deployment_prefix} placeholder), and the schema Outpost has at each
// version (Expected), written from the storage facts independently of the
// SQL files, so that tests and verify compare two independent descriptions.
//
// cmd hands Source() to clickhousephase.New; this package imports
// clickhousephase, never the other way round.
package clickhousemigrations

import (
	"embed"
	"io/fs"
	"sync"

	"github.com/outpost-migrate/outpost/batch/clickhousephase"
)

//go:embed migrations/*.sql
var files embed.FS

// Files returns the SQL files (NNNNNN_name.up.sql / .down.sql at the root),
// as Outpost's migrator reads them.
func Files() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// Load validates and returns the migrations.
func Load() (clickhousephase.Source, error) {
	return clickhousephase.Load(Files(), ".", Expected)
}

var loadOnce = sync.OnceValues(Load)

// Source returns the migrations. It panics if the embedded set is invalid,
// which the package's tests rule out.
func Source() clickhousephase.Source {
	s, err := loadOnce()
	if err != nil {
		panic(err)
	}
	return s
}
