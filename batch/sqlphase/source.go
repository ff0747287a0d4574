package sqlphase

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/report"
)

// Source is an ordered, validated set of SQL migrations, built by Load from
// files named the way golang-migrate names them, plus the Go steps some of
// them need and, for verify, the schema expected at each version. A Source
// is immutable after Load and safe to share.
type Source struct {
	// Migrations are ordered by version: 1, 2, ... without gaps.
	Migrations []Migration
	// Expected returns the schema a database must have at a version (0: no
	// migration applied), described independently of the SQL files; verify
	// compares the live schema with it. ok is false for a version it does
	// not describe. Nil disables the schema comparison.
	Expected func(version int) (s *Schema, ok bool)
	// Locks, when set, says which lock on whole tables migration version
	// holds while it runs and how long, estimated from the tables' sizes
	// as q sees them now (nil: none). Plan reports it and apply announces
	// it when the locking step starts.
	Locks func(ctx context.Context, q Querier, version int) (*report.ExclusiveLock, error)
}

// Migration is one version: the SQL of its up file, split into steps.
type Migration struct {
	Version int
	// Name is the file name's description: "denormalize_attempts".
	Name string
	// Description is the up file's first comment paragraph, without a
	// leading "NNNNNN_name:".
	Description string
	// Up is the whole up file, as golang-migrate or psql would run it.
	Up string
	// Down is the down file, if any. The tool never runs it; it ships for
	// people who roll back by hand with golang-migrate.
	Down string
	// Steps are the parts of Up the tool runs one after another: a file
	// without markers is one SQL step. See Load for the markers.
	Steps []Step
}

// Key is the file name stem: "000005_denormalize_attempts".
func (m Migration) Key() string { return fmt.Sprintf("%06d_%s", m.Version, m.Name) }

// ID is the report id: "sql/000005_denormalize_attempts".
func (m Migration) ID() string { return "sql/" + m.Key() }

// Stepped reports whether the migration runs in more than one transaction
// (and so may be left half-done, which the checkpoint table records).
func (m Migration) Stepped() bool {
	return len(m.Steps) > 1 || (len(m.Steps) == 1 && m.Steps[0].Batched != nil)
}

// Step is one part of a migration. A SQL step runs in one transaction. A
// batched step runs Batched in bounded batches, each in its own
// transaction with the checkpoint; its SQL is the single-statement
// equivalent that a plain run of the file executes, kept for reference.
type Step struct {
	Name    string
	SQL     string
	Batched BatchedStep
}

// Querier is what a batched step reads and writes through: a pgx.Tx or a
// *pgx.Conn.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// BatchedStep is a data step too large for one transaction. The runner calls
// Batch repeatedly, each call inside its own transaction that also saves the
// returned position in the checkpoint table and commits both together;
// after a crash it calls Batch again from the last committed position. So
// Batch must be idempotent for the rows it visits, and visit rows in a
// stable order from position (exclusive).
type BatchedStep interface {
	// Estimate says how many rows the whole step visits, counted exactly
	// when the table holds fewer than countBelow rows by the catalog's
	// estimate, else the catalog's estimate (see CountRows). The tables it
	// reads may not exist yet when earlier migrations are pending: the
	// estimate is then 0 with a note.
	Estimate(ctx context.Context, q Querier, countBelow int64) (report.Estimate, error)
	// Batch processes at most limit rows after position ("" = from the
	// start) and returns the position of the last row it visited.
	Batch(ctx context.Context, tx pgx.Tx, position string, limit int) (BatchResult, error)
}

// BatchResult is what one batch did.
type BatchResult struct {
	// Position is the last row visited, opaque to the runner (shown in
	// status). Empty when the batch visited nothing.
	Position string
	// Rows visited, rows changed, rows deleted.
	Rows, Changed, Deleted int64
	// Done: no row is left after Position.
	Done bool
}

// Markers split an up file into steps. A line
//
//	-- +outpost step NAME
//
// starts a SQL step and
//
//	-- +outpost batched NAME
//
// starts a batched step: its SQL is replaced at run time by the BatchedStep
// registered under NAME. Text before the first marker belongs to the first
// step. Markers are comments, so golang-migrate and psql run the file as
// one transaction, unsplit.
var markerRE = regexp.MustCompile(`^--\s*\+outpost\s+(\S+)\s*(\S*)\s*$`)

var fileRE = regexp.MustCompile(`^([0-9]+)_([A-Za-z0-9_\-]+)\.(up|down)\.sql$`)

// Load reads the migrations in dir of fsys ("." for its root): files named
// NNNNNN_name.up.sql and NNNNNN_name.down.sql, versions 1, 2, ... without
// gaps or duplicates, every up file present. batched maps a step name used
// by a "-- +outpost batched NAME" marker to its Go implementation, keyed
// "NNNNNN_name/step" (e.g. "000005_denormalize_attempts/backfill"). Every
// marker must have its implementation and every implementation its marker.
// A violation is a report.CodeDataRefused error (an invalid migration set).
func Load(fsys fs.FS, dir string, batched map[string]BatchedStep, expected func(int) (*Schema, bool)) (Source, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return Source{}, report.Wrap(report.CodeDataRefused, err, "read SQL migrations")
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration file %q is not named NNNNNN_name.up.sql or .down.sql", e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil || v <= 0 {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration file %q: version must be a positive integer", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return Source{}, report.Wrap(report.CodeDataRefused, err, "read SQL migration %s", e.Name())
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &Migration{Version: v, Name: m[2]}
			byVersion[v] = mig
		} else if mig.Name != m[2] {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration version %d has two names: %q and %q", v, mig.Name, m[2])
		}
		switch m[3] {
		case "up":
			if mig.Up != "" {
				return Source{}, report.E(report.CodeDataRefused, "SQL migration version %d has two up files", v)
			}
			mig.Up = string(b)
			if strings.TrimSpace(mig.Up) == "" {
				return Source{}, report.E(report.CodeDataRefused, "SQL migration %s is empty", e.Name())
			}
		case "down":
			mig.Down = string(b)
		}
	}
	versions := make([]int, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	used := map[string]bool{}
	src := Source{Expected: expected}
	for i, v := range versions {
		mig := byVersion[v]
		if v != i+1 {
			return Source{}, report.E(report.CodeDataRefused, "SQL migrations must be numbered 1, 2, ... without gaps: found %d where %d was expected", v, i+1)
		}
		if mig.Up == "" {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration %s has no up file", mig.Key())
		}
		if line, ok := txControl(mig.Up); ok {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration %s: %q: the runner wraps every step in its own transaction; remove BEGIN/COMMIT", mig.Key(), line)
		}
		mig.Description = describe(mig.Up, mig.Key())
		raw, err := splitSteps(mig.Up)
		if err != nil {
			return Source{}, report.Wrap(report.CodeDataRefused, err, "SQL migration %s", mig.Key())
		}
		var steps []Step
		for _, r := range raw {
			st := Step{Name: r.name, SQL: r.sql}
			if r.batched {
				key := mig.Key() + "/" + r.name
				impl, ok := batched[key]
				if !ok || impl == nil {
					return Source{}, report.E(report.CodeDataRefused, "SQL migration %s: batched step %q has no Go implementation (register it as %q)", mig.Key(), r.name, key)
				}
				st.Batched = impl
				used[key] = true
			}
			steps = append(steps, st)
		}
		mig.Steps = steps
		src.Migrations = append(src.Migrations, *mig)
	}
	for key := range batched {
		if !used[key] {
			return Source{}, report.E(report.CodeDataRefused, "batched step %q matches no \"-- +outpost batched\" marker", key)
		}
	}
	return src, nil
}

// rawStep is a part of an up file between markers.
type rawStep struct {
	name    string
	batched bool
	sql     string
}

// splitSteps cuts an up file at its markers.
func splitSteps(up string) ([]rawStep, error) {
	var (
		steps   []rawStep
		pre     strings.Builder // text before the first marker
		cur     *rawStep
		body    strings.Builder
		seen    = map[string]bool{}
		scanner = bufio.NewScanner(strings.NewReader(up))
	)
	scanner.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	flush := func() {
		if cur != nil {
			cur.sql += body.String()
			steps = append(steps, *cur)
		}
		body.Reset()
	}
	for scanner.Scan() {
		line := scanner.Text()
		m := markerRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			if cur == nil {
				pre.WriteString(line + "\n")
			} else {
				body.WriteString(line + "\n")
			}
			continue
		}
		kind, name := m[1], m[2]
		if kind != "step" && kind != "batched" {
			return nil, fmt.Errorf("unknown marker %q (want \"-- +outpost step NAME\" or \"-- +outpost batched NAME\")", strings.TrimSpace(line))
		}
		if name == "" {
			return nil, fmt.Errorf("marker %q needs a step name", strings.TrimSpace(line))
		}
		if seen[name] {
			return nil, fmt.Errorf("step name %q used twice", name)
		}
		seen[name] = true
		first := cur == nil
		flush()
		cur = &rawStep{name: name, batched: kind == "batched"}
		if first {
			// Header comments go with the first step.
			cur.sql = pre.String()
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if cur == nil {
		return []rawStep{{sql: up}}, nil
	}
	flush()
	for _, s := range steps {
		if !s.batched && strings.TrimSpace(stripComments(s.sql)) == "" {
			return nil, fmt.Errorf("step %q has no SQL", s.name)
		}
	}
	return steps, nil
}

var txControlRE = regexp.MustCompile(`(?i)^\s*(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION)(\s+(WORK|TRANSACTION))?\s*;\s*$`)

// txControl finds a line that is a bare transaction-control statement.
func txControl(sql string) (string, bool) {
	for _, line := range strings.Split(sql, "\n") {
		if txControlRE.MatchString(line) {
			return strings.TrimSpace(line), true
		}
	}
	return "", false
}

// describe returns the first paragraph of "--" comments at the top of an up
// file, joined into one line, without a leading "key:".
func describe(up, key string) string {
	var parts []string
	for _, line := range strings.Split(up, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "--") || markerRE.MatchString(t) {
			break
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "--"))
		if t == "" {
			break
		}
		parts = append(parts, t)
	}
	d := strings.Join(parts, " ")
	d = strings.TrimSpace(strings.TrimPrefix(d, key+":"))
	return d
}

// stripComments drops "--" line comments (enough to tell an empty step).
func stripComments(sql string) string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "--") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Latest is the highest version.
func (s Source) Latest() int {
	if len(s.Migrations) == 0 {
		return 0
	}
	return s.Migrations[len(s.Migrations)-1].Version
}

// Lookup resolves a target to a version: "sql/000005_denormalize_attempts",
// "000005_denormalize_attempts", "denormalize_attempts", "5" or "000005"
// (with or without the "sql/" prefix). ok is false when it names none of
// these migrations.
func (s Source) Lookup(target string) (version int, ok bool) {
	t := strings.TrimPrefix(strings.TrimSpace(target), "sql/")
	if t == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n >= 1 && n <= s.Latest() {
			return n, true
		}
		return 0, false
	}
	for _, m := range s.Migrations {
		if t == m.Key() || t == m.Name {
			return m.Version, true
		}
	}
	return 0, false
}
