// Package versioned holds what the phases of golang-migrate's stores share:
// sqlphase (PostgreSQL) and clickhousephase (ClickHouse) both run numbered
// up/down SQL files against a version table that records one version and a
// dirty flag. Here are the file set and its targets, the report lines derived
// from the recorded version, the bookkeeping of an apply (which versions, a
// stop between units of work, the line of a migration that stopped) and the
// frame of their driver-error classification. What differs stays in each
// phase: PostgreSQL's advisory lock, transactions and batched steps;
// ClickHouse's append-only version rows and statement checkpoints.
package versioned

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// NoVersion is golang-migrate's NilVersion: the version table is missing or
// empty, no migration was applied.
const NoVersion = -1

// Store names a store in reports and messages.
type Store struct {
	// Backend is the report backend and the prefix of migration ids: "sql",
	// "clickhouse".
	Backend string
	// Label names the store in messages: "SQL", "ClickHouse".
	Label string
}

// Migration is what every store's migration is: one version of the set,
// read from its files. A phase's migration type embeds it.
type Migration struct {
	Version int
	// Name is the file name's description: "denormalize_attempts".
	Name string
	// Description is the up file's first comment paragraph, without a
	// leading "NNNNNN_name:".
	Description string
	// Up is the whole up file, as golang-migrate would run it.
	Up string
	// Down is the down file, if any. The tool never runs it; it ships for
	// people who roll back by hand with golang-migrate.
	Down string
}

// Key is the file name stem: "000005_denormalize_attempts".
func (m Migration) Key() string { return fmt.Sprintf("%06d_%s", m.Version, m.Name) }

// Base returns m itself: through it a Set reaches the Migration embedded
// in a phase's migration type.
func (m *Migration) Base() *Migration { return m }

var fileRE = regexp.MustCompile(`^([0-9]+)_([A-Za-z0-9_\-]+)\.(up|down)\.sql$`)

// Read reads the migrations in dir of fsys ("." for its root): files named
// NNNNNN_name.up.sql and NNNNNN_name.down.sql, versions 1, 2, ... without
// gaps, one name per version and a non-blank up file for each; other
// files than *.sql are ignored. A violation is a report.CodeDataRefused
// error (an invalid migration set).
func (s Store) Read(fsys fs.FS, dir string) ([]Migration, error) {
	byVersion, err := s.readFiles(fsys, dir)
	if err != nil {
		return nil, err
	}
	out := make([]Migration, 0, len(byVersion))
	for i, v := range slices.Sorted(maps.Keys(byVersion)) {
		m := byVersion[v]
		if v != i+1 {
			return nil, report.E(report.CodeDataRefused, "%s migrations must be numbered 1, 2, ... without gaps: found %d where %d was expected", s.Label, v, i+1)
		}
		if m.Up == "" {
			return nil, report.E(report.CodeDataRefused, "%s migration %s has no up file", s.Label, m.Key())
		}
		m.Description = describe(m.Up, m.Key())
		out = append(out, *m)
	}
	return out, nil
}

// readFiles groups the files of dir by version.
func (s Store) readFiles(fsys fs.FS, dir string) (map[int]*Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, report.Wrap(report.CodeDataRefused, err, "read %s migrations", s.Label)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		f := fileRE.FindStringSubmatch(e.Name())
		if f == nil {
			return nil, report.E(report.CodeDataRefused, "%s migration file %q is not named NNNNNN_name.up.sql or .down.sql", s.Label, e.Name())
		}
		v, err := strconv.Atoi(f[1])
		if err != nil || v <= 0 {
			return nil, report.E(report.CodeDataRefused, "%s migration file %q: version must be a positive integer", s.Label, e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, report.Wrap(report.CodeDataRefused, err, "read %s migration %s", s.Label, e.Name())
		}
		m := byVersion[v]
		if m == nil {
			m = &Migration{Version: v, Name: f[2]}
			byVersion[v] = m
		} else if m.Name != f[2] {
			return nil, report.E(report.CodeDataRefused, "%s migration version %d has two names: %q and %q", s.Label, v, m.Name, f[2])
		}
		if f[3] == "down" {
			m.Down = string(b)
			continue
		}
		if m.Up != "" {
			return nil, report.E(report.CodeDataRefused, "%s migration version %d has two up files", s.Label, v)
		}
		if m.Up = string(b); strings.TrimSpace(m.Up) == "" {
			return nil, report.E(report.CodeDataRefused, "%s migration %s is empty", s.Label, e.Name())
		}
	}
	return byVersion, nil
}

// directiveRE is a comment that speaks to a tool ("-- +outpost step x"):
// it ends a description.
var directiveRE = regexp.MustCompile(`^--\s*\+`)

// describe returns the first paragraph of "--" comments at the top of an up
// file, joined into one line, without a leading "key:".
func describe(up, key string) string {
	var parts []string
	for _, line := range strings.Split(up, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "--") || directiveRE.MatchString(t) {
			break
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "--"))
		if t == "" {
			break
		}
		parts = append(parts, t)
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.Join(parts, " "), key+":"))
}

// Set is a store's migrations, ordered by version: 1, 2, ... without gaps.
// M is the phase's migration type, which embeds Migration; P is *M. A Set
// is immutable once built and safe to share.
type Set[M any, P interface {
	*M
	Base() *Migration
}] struct {
	Store Store
	// Migrations are ordered by version: 1, 2, ... without gaps.
	Migrations []M
}

// Latest is the highest version (0 for an empty set).
func (s Set[M, P]) Latest() int { return len(s.Migrations) }

// At returns the migration of version, or nil when the set has none.
func (s Set[M, P]) At(version int) P {
	if version < 1 || version > len(s.Migrations) {
		return nil
	}
	return P(&s.Migrations[version-1])
}

func (s Set[M, P]) base(i int) *Migration { return P(&s.Migrations[i]).Base() }

// Lookup resolves a target to a version: "sql/000005_denormalize_attempts",
// "000005_denormalize_attempts", "denormalize_attempts", "5" or "000005",
// with or without the backend's prefix. ok is false when it names none of
// these migrations (a target of another store's phase).
func (s Set[M, P]) Lookup(target string) (version int, ok bool) {
	t := strings.TrimPrefix(strings.TrimSpace(target), s.Store.Backend+"/")
	if t == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n >= 1 && n <= s.Latest() {
			return n, true
		}
		return 0, false
	}
	for i := range s.Migrations {
		if m := s.base(i); t == m.Key() || t == m.Name {
			return m.Version, true
		}
	}
	return 0, false
}

// ID is a migration's report id: "sql/000005_denormalize_attempts".
func (s Store) ID(m *Migration) string { return s.Backend + "/" + m.Key() }
