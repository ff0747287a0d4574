package clickhousephase

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// NoVersion is golang-migrate's NilVersion: no migration recorded.
const NoVersion = versioned.NoVersion

// VersionTable is golang-migrate's migrations table; the phase's is
// prefix + VersionTable ("prod_schema_migrations" for DEPLOYMENT_ID=prod),
// as Outpost passes x-migrations-table.
const VersionTable = "schema_migrations"

// CheckpointTable is this tool's own record of which statement of a
// migration it reached (prefix + CheckpointTable); Outpost and
// golang-migrate ignore it.
const CheckpointTable = "outpost_migrate_checkpoint"

// createVersionTable is golang-migrate's DDL with Outpost's
// x-migrations-table-engine=MergeTree (a *Tree engine gets ORDER BY sequence).
const createVersionTable = "CREATE TABLE IF NOT EXISTS %s (version Int64, dirty UInt8, sequence UInt64) Engine=MergeTree ORDER BY sequence"

// The checkpoint table is append-only like the version table: the row with
// the highest sequence for a version is its state.
const createCheckpointTable = `CREATE TABLE IF NOT EXISTS %s (
	version Int64, statement UInt32, statements UInt32, state String,
	run_id String, fence_token Int64, updated_at DateTime64(3, 'UTC'), sequence UInt64
) ENGINE = MergeTree ORDER BY sequence`

// Checkpoint states.
const (
	cpRunning = "running"
	cpDone    = "done"
	cpForced  = "forced"
)

// dbState is what the database records.
type dbState struct {
	Version int
	Dirty   bool
	// Seq is the sequence of the version row read (0: none).
	Seq uint64
	// Checkpoints: the latest row per version.
	Checkpoints map[int]checkpoint
}

type checkpoint struct {
	Version    int
	Statement  int // the next statement to run
	Statements int
	State      string
	RunID      string
	FenceToken int64
	UpdatedAt  time.Time
}

// quoteIdent quotes a ClickHouse identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (p *Phase) qualified(table string) string {
	return quoteIdent(p.cfg.Database) + "." + quoteIdent(p.prefix+table)
}

// readState reads the version as golang-migrate's ClickHouse driver does
// (the row with the highest sequence; none or no table is NoVersion) and
// this tool's checkpoints.
func (p *Phase) readState(ctx context.Context, conn driver.Conn) (dbState, error) {
	st := dbState{Version: NoVersion, Checkpoints: map[int]checkpoint{}}
	has := map[string]bool{}
	rows, err := conn.Query(ctx, `SELECT name FROM system.tables WHERE database = ? AND name IN (?, ?)`,
		p.cfg.Database, p.prefix+VersionTable, p.prefix+CheckpointTable)
	if err != nil {
		return st, fmt.Errorf("look up %s: %w", p.prefix+VersionTable, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return st, err
		}
		has[strings.TrimPrefix(n, p.prefix)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	if has[VersionTable] {
		vrows, err := conn.Query(ctx, "SELECT version, dirty, sequence FROM "+p.qualified(VersionTable)+" ORDER BY sequence DESC LIMIT 1")
		if err != nil {
			return st, fmt.Errorf("read %s: %w", p.prefix+VersionTable, err)
		}
		for vrows.Next() {
			var v int64
			var dirty uint8
			if err := vrows.Scan(&v, &dirty, &st.Seq); err != nil {
				vrows.Close()
				return st, fmt.Errorf("read %s: %w", p.prefix+VersionTable, err)
			}
			st.Version, st.Dirty = int(v), dirty == 1
		}
		vrows.Close()
		if err := vrows.Err(); err != nil {
			return st, fmt.Errorf("read %s: %w", p.prefix+VersionTable, err)
		}
	}
	if has[CheckpointTable] {
		if err := p.readCheckpoints(ctx, conn, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (p *Phase) readCheckpoints(ctx context.Context, conn driver.Conn, st *dbState) error {
	cps, err := collect(ctx, conn, p.prefix+CheckpointTable, func(rows driver.Rows, c *checkpoint) error {
		var v int64
		var stmt, n uint32
		if err := rows.Scan(&v, &stmt, &n, &c.State, &c.RunID, &c.FenceToken, &c.UpdatedAt); err != nil {
			return err
		}
		c.Version, c.Statement, c.Statements = int(v), int(stmt), int(n)
		return nil
	}, "SELECT version, statement, statements, state, run_id, fence_token, updated_at FROM "+p.qualified(CheckpointTable)+" ORDER BY sequence")
	// Rows come in sequence order: the last of a version is its state.
	for _, c := range cps {
		st.Checkpoints[c.Version] = c
	}
	return err
}

// resumableAt is resumable for the recorded version, whatever it is (a
// dirty version this source does not know is never resumable).
func (st dbState) resumableAt(p *Phase) (checkpoint, bool) {
	m := p.src.At(st.Version)
	if m == nil {
		return checkpoint{}, false
	}
	return st.resumable(m, len(m.Statements(p.prefix)))
}

// resumable returns this tool's unfinished checkpoint for the dirty version,
// when the dirty flag is ours.
func (st dbState) resumable(m *Migration, statements int) (checkpoint, bool) {
	if !st.Dirty || m == nil || st.Version != m.Version {
		return checkpoint{}, false
	}
	c, ok := st.Checkpoints[m.Version]
	if !ok || c.State != cpRunning || c.Statements != statements || c.Statement > statements {
		return checkpoint{}, false
	}
	return c, true
}

// ensureTables creates the version and checkpoint tables when missing.
func (p *Phase) ensureTables(ctx context.Context, conn driver.Conn) error {
	for _, q := range []string{fmt.Sprintf(createVersionTable, p.qualified(VersionTable)), fmt.Sprintf(createCheckpointTable, p.qualified(CheckpointTable))} {
		if err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// setVersion appends a version row as golang-migrate's SetVersion does. It
// first checks that the newest row is still the one this phase last read or
// wrote: ClickHouse has no lock golang-migrate shares, so a run that finds
// another writer's row stops (report.CodeLockHeld) instead of interleaving.
func (p *Phase) setVersion(ctx context.Context, conn driver.Conn, version int, dirty bool) error {
	st, err := p.readState(ctx, conn)
	if err != nil {
		return err
	}
	if st.Seq != p.lastSeq {
		return report.E(report.CodeLockHeld, "another run wrote %s meanwhile (now version %d, dirty %v): stopped so as not to interleave with it; rerun when it is done",
			p.prefix+VersionTable, st.Version, st.Dirty)
	}
	seq := uint64(time.Now().UnixNano())
	if seq <= st.Seq {
		seq = st.Seq + 1
	}
	var d uint8
	if dirty {
		d = 1
	}
	if err := conn.Exec(ctx, "INSERT INTO "+p.qualified(VersionTable)+" (version, dirty, sequence) VALUES (?, ?, ?)", int64(version), d, seq); err != nil {
		return fmt.Errorf("record version %d: %w", version, err)
	}
	p.lastSeq = seq
	return nil
}

// saveCheckpoint appends c as the newest state of its version.
func (p *Phase) saveCheckpoint(ctx context.Context, conn driver.Conn, c checkpoint) error {
	err := conn.Exec(ctx, "INSERT INTO "+p.qualified(CheckpointTable)+
		" (version, statement, statements, state, run_id, fence_token, updated_at, sequence) VALUES (?, ?, ?, ?, ?, ?, now64(3), ?)",
		int64(c.Version), uint32(c.Statement), uint32(c.Statements), c.State, c.RunID, c.FenceToken, uint64(time.Now().UnixNano()))
	if err != nil {
		return fmt.Errorf("save the checkpoint of version %d: %w", c.Version, err)
	}
	return nil
}
