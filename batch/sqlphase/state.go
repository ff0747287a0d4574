package sqlphase

import (
	"context"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-migrate/outpost/batch/versioned"
)

// NoVersion is golang-migrate's NilVersion: schema_migrations is missing or
// empty, no migration was applied.
const NoVersion = versioned.NoVersion

// advisoryLockSalt is golang-migrate's advisoryLockIDSalt.
const advisoryLockSalt uint32 = 1486364155

// AdvisoryLockID is the key golang-migrate's PostgreSQL driver passes to
// pg_advisory_lock for a migrations table: crc32 (IEEE) of
// schema + "\x00" + table + "\x00" + database, times 1486364155 in uint32
// arithmetic (database.GenerateAdvisoryLockId with the database name first
// and the schema and table as additional names, which it joins in front).
// Outpost and golang-migrate use table "schema_migrations" in the
// connection's current_schema().
func AdvisoryLockID(schema, table, database string) int64 {
	sum := crc32.ChecksumIEEE([]byte(schema + "\x00" + table + "\x00" + database))
	return int64(sum * advisoryLockSalt)
}

// dbState is what the database records about migrations.
type dbState struct {
	// Version is the recorded version, NoVersion when none.
	Version int
	Dirty   bool
	// HasCheckpoints says the checkpoint table exists.
	HasCheckpoints bool
	// Checkpoints by migration key ("000005_denormalize_attempts").
	Checkpoints map[string]checkpoint
}

// checkpoint is one row of the checkpoint table: the progress of a
// migration this tool ran (or is running) in more than one transaction, and
// a record of every migration it applied.
type checkpoint struct {
	Migration string
	Version   int
	// Step is the index of the next step to run; len(steps) when finished.
	Step        int
	StepName    string
	Position    string
	Done        int64
	Changed     int64
	Deleted     int64
	Total       int64
	TotalMethod string
	RunID       string
	FenceToken  int64
	StartedAt   time.Time
	UpdatedAt   time.Time
	FinishedAt  *time.Time
}

const createVersionTable = `CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key, dirty boolean not null)`

// The checkpoint table is this tool's own; golang-migrate and Outpost
// ignore it. A row with finished_at NULL and schema_migrations dirty at its
// version means the dirty flag is ours and apply can resume.
const createCheckpointTable = `CREATE TABLE IF NOT EXISTS outpost_migrate_checkpoint (
	migration    text PRIMARY KEY,
	version      bigint NOT NULL,
	step         integer NOT NULL,
	step_name    text NOT NULL DEFAULT '',
	position     text NOT NULL DEFAULT '',
	done         bigint NOT NULL DEFAULT 0,
	changed      bigint NOT NULL DEFAULT 0,
	deleted      bigint NOT NULL DEFAULT 0,
	total        bigint NOT NULL DEFAULT 0,
	total_method text NOT NULL DEFAULT '',
	run_id       text NOT NULL DEFAULT '',
	fence_token  bigint NOT NULL DEFAULT 0,
	started_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	finished_at  timestamptz
)`

// readState reads schema_migrations the way golang-migrate does (one row;
// none or no table is NoVersion) and the checkpoint table, if any. Both are
// looked up in current_schema(), where golang-migrate keeps its table.
func readState(ctx context.Context, q Querier) (dbState, error) {
	st := dbState{Version: NoVersion, Checkpoints: map[string]checkpoint{}}
	var schema *string
	var hasVersions, hasCheckpoints bool
	err := q.QueryRow(ctx, `
		SELECT current_schema(),
		       to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL,
		       to_regclass(quote_ident(current_schema()) || '.outpost_migrate_checkpoint') IS NOT NULL`).
		Scan(&schema, &hasVersions, &hasCheckpoints)
	if err != nil {
		return st, fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return st, fmt.Errorf("no schema on the search_path exists (current_schema() is NULL)")
	}
	st.HasCheckpoints = hasCheckpoints
	if hasVersions {
		var v int64
		var dirty bool
		err := q.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1`).Scan(&v, &dirty)
		switch {
		case err == pgx.ErrNoRows:
		case err != nil:
			return st, fmt.Errorf("read schema_migrations: %w", err)
		default:
			st.Version, st.Dirty = int(v), dirty
		}
	}
	if !hasCheckpoints {
		return st, nil
	}
	rows, err := q.Query(ctx, `
		SELECT migration, version, step, step_name, position, done, changed, deleted, total,
		       total_method, run_id, fence_token, started_at, updated_at, finished_at
		FROM outpost_migrate_checkpoint`)
	if err != nil {
		return st, fmt.Errorf("read %s: %w", checkpointTable, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c checkpoint
		var version int64
		if err := rows.Scan(&c.Migration, &version, &c.Step, &c.StepName, &c.Position, &c.Done, &c.Changed,
			&c.Deleted, &c.Total, &c.TotalMethod, &c.RunID, &c.FenceToken, &c.StartedAt, &c.UpdatedAt, &c.FinishedAt); err != nil {
			return st, fmt.Errorf("read %s: %w", checkpointTable, err)
		}
		c.Version = int(version)
		st.Checkpoints[c.Migration] = c
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("read %s: %w", checkpointTable, err)
	}
	return st, nil
}

// resumable returns our unfinished checkpoint for the dirty version, if the
// dirty flag is ours.
func (st dbState) resumable(m *Migration) (checkpoint, bool) {
	if !st.Dirty || m == nil || st.Version != m.Version {
		return checkpoint{}, false
	}
	c, ok := st.Checkpoints[m.Key()]
	if !ok || c.FinishedAt != nil || c.Version != m.Version || c.Step >= len(m.Steps) {
		return checkpoint{}, false
	}
	return c, true
}

// setVersion records version as golang-migrate does: one row. NoVersion
// leaves the table empty. DELETE rather than golang-migrate's TRUNCATE: the
// same meaning without an ACCESS EXCLUSIVE lock that would block a reader
// (Outpost checks the version at start-up) until commit.
func setVersion(ctx context.Context, tx pgx.Tx, version int, dirty bool) error {
	if _, err := tx.Exec(ctx, `DELETE FROM schema_migrations`); err != nil {
		return fmt.Errorf("record version %d: %w", version, err)
	}
	if version == NoVersion {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)`, int64(version), dirty); err != nil {
		return fmt.Errorf("record version %d: %w", version, err)
	}
	return nil
}

// saveCheckpoint upserts c; a finished checkpoint gets finished_at = now().
func saveCheckpoint(ctx context.Context, tx pgx.Tx, c *checkpoint, finished bool) error {
	err := tx.QueryRow(ctx, `
		INSERT INTO outpost_migrate_checkpoint AS c (migration, version, step, step_name, position, done, changed,
			deleted, total, total_method, run_id, fence_token, started_at, updated_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), CASE WHEN $14 THEN now() END)
		ON CONFLICT (migration) DO UPDATE SET version = EXCLUDED.version, step = EXCLUDED.step,
			step_name = EXCLUDED.step_name, position = EXCLUDED.position, done = EXCLUDED.done,
			changed = EXCLUDED.changed, deleted = EXCLUDED.deleted, total = EXCLUDED.total,
			total_method = EXCLUDED.total_method, run_id = EXCLUDED.run_id,
			fence_token = EXCLUDED.fence_token, started_at = EXCLUDED.started_at,
			updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at
		RETURNING updated_at, finished_at`,
		c.Migration, int64(c.Version), c.Step, c.StepName, c.Position, c.Done, c.Changed, c.Deleted, c.Total,
		c.TotalMethod, c.RunID, c.FenceToken, c.StartedAt, finished).Scan(&c.UpdatedAt, &c.FinishedAt)
	if err != nil {
		return fmt.Errorf("save checkpoint of %s: %w", c.Migration, err)
	}
	return nil
}
