package sqlphase

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// store names the SQL migrations in reports and messages.
var store = versioned.Store{Backend: "sql", Label: "SQL"}

// Source is an ordered, validated set of SQL migrations, built by Load from
// files named the way golang-migrate names them, plus the Go steps some of
// them need and, for verify, the schema expected at each version. A Source
// is immutable after Load and safe to share.
type Source struct {
	// Set holds the migrations, ordered by version: 1, 2, ... without gaps.
	versioned.Set[Migration, *Migration]
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
	versioned.Migration
	// Steps are the parts of Up the tool runs one after another: a file
	// without markers is one SQL step. See Load for the markers.
	Steps []Step
}

// ID is the report id: "sql/000005_denormalize_attempts".
func (m Migration) ID() string { return store.ID(&m.Migration) }

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

// Load reads the migrations in dir of fsys ("." for its root): files named
// NNNNNN_name.up.sql and NNNNNN_name.down.sql, versions 1, 2, ... without
// gaps or duplicates, every up file present (versioned.Store.Read), and no
// BEGIN/COMMIT of their own. batched maps a step name used by a
// "-- +outpost batched NAME" marker to its Go implementation, keyed
// "NNNNNN_name/step" (e.g. "000005_denormalize_attempts/backfill"). Every
// marker must have its implementation and every implementation its marker.
// A violation is a report.CodeDataRefused error (an invalid migration set).
func Load(fsys fs.FS, dir string, batched map[string]BatchedStep, expected func(int) (*Schema, bool)) (Source, error) {
	read, err := store.Read(fsys, dir)
	if err != nil {
		return Source{}, err
	}
	used := map[string]bool{}
	src := Source{Set: versioned.Set[Migration, *Migration]{Store: store}, Expected: expected}
	for _, r := range read {
		mig := Migration{Migration: r}
		if line, ok := txControl(mig.Up); ok {
			return Source{}, report.E(report.CodeDataRefused, "SQL migration %s: %q: the runner wraps every step in its own transaction; remove BEGIN/COMMIT", mig.Key(), line)
		}
		if mig.Steps, err = stepsOf(mig.Key(), mig.Up, batched, used); err != nil {
			return Source{}, err
		}
		src.Migrations = append(src.Migrations, mig)
	}
	for key := range batched {
		if !used[key] {
			return Source{}, report.E(report.CodeDataRefused, "batched step %q matches no \"-- +outpost batched\" marker", key)
		}
	}
	return src, nil
}

// stepsOf cuts the up file of migration key into its steps, each batched one
// with its implementation from batched (marked used).
func stepsOf(key, up string, batched map[string]BatchedStep, used map[string]bool) ([]Step, error) {
	raw, err := splitSteps(up)
	if err != nil {
		return nil, report.Wrap(report.CodeDataRefused, err, "SQL migration %s", key)
	}
	var out []Step
	for _, r := range raw {
		st := Step{Name: r.name, SQL: r.sql}
		if r.batched {
			name := key + "/" + r.name
			impl, ok := batched[name]
			if !ok || impl == nil {
				return nil, report.E(report.CodeDataRefused, "SQL migration %s: batched step %q has no Go implementation (register it as %q)", key, r.name, name)
			}
			st.Batched = impl
			used[name] = true
		}
		out = append(out, st)
	}
	return out, nil
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
		if !s.batched && commentOnly(s.sql) {
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
