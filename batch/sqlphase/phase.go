// Package sqlphase runs golang-migrate-compatible SQL migrations against
// PostgreSQL as a batch.Phase: the SQL half of plan, apply, verify, status
// and cleanup.
//
// # Compatibility with golang-migrate and Outpost
//
// The version lives where golang-migrate keeps it: schema_migrations
// (version bigint not null primary key, dirty boolean not null), one row,
// in current_schema(). A database that golang-migrate or Outpost migrated
// to version N continues at N+1; dirty = true means version N was started
// and did not finish. While apply or Force runs, the phase holds
// golang-migrate's session advisory lock (AdvisoryLockID), so an old
// Outpost or golang-migrate cannot migrate beside it.
//
// # Transactions and steps
//
// A migration runs in one transaction together with the update of
// schema_migrations, so a failure or a crash leaves the previous version
// recorded, clean. A migration whose file is split by "-- +outpost"
// markers (see Load) runs step by step: the first transaction records the
// version dirty, the last records it clean, and this tool's checkpoint
// table (outpost_migrate_checkpoint) says which step comes next and, for a
// batched step, the position of the last batch committed. Such a dirty
// flag is known to be ours, and apply resumes it; any other dirty flag is
// refused with report.CodeDirty until a person repairs the schema and
// records a version with Force.
//
// Every step runs inside a transaction, so a file may not hold statements
// PostgreSQL refuses in one (CREATE INDEX CONCURRENTLY, VACUUM) nor its own
// BEGIN/COMMIT (Load refuses those). Outpost's migrations 1 to 10 need
// neither.
//
// # Concurrency
//
// A Phase holds one connection. Its methods must be called from one
// goroutine at a time (the batch.Phase contract); separate Phases may run
// at once and exclude each other through the advisory lock.
package sqlphase

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/probe"
	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// Defaults of Options.
const (
	DefaultBatchSize      = 1000
	DefaultBatchBudget    = 100 * time.Millisecond
	DefaultCountBelow     = 1_000_000
	DefaultConnectTimeout = 10 * time.Second
)

// Options tune a Phase; zero values take the defaults.
type Options struct {
	// BatchSize is the number of rows of the first batch of a batched
	// step, and of every batch when BatchBudget is negative
	// (DefaultBatchSize).
	BatchSize int
	// BatchBudget is the time one batch should take: after each batch the
	// next one's size is scaled towards it (at most doubled or halved, 100
	// to 1,000,000 rows), starting from BatchSize (DefaultBatchBudget;
	// negative keeps every batch at BatchSize). Each batch holds its rows'
	// locks until it commits, so this bounds how long a writer waits. The
	// default leaves room for a server ten times slower than usual within
	// the 1 s a batch may take; its cost, a commit and a checkpoint row
	// per batch, is a few percent (README "Performance").
	BatchBudget time.Duration
	// CountBelow: plan and progress count rows exactly (count(*)) when the
	// catalog estimates fewer rows than this, and use the catalog's
	// estimate above it (DefaultCountBelow).
	CountBelow int64
	// AdvisoryLockWait bounds the wait for golang-migrate's advisory lock
	// when another session holds it: --lock-timeout, with the meaning the
	// Redis lease gives it (lock.DefaultWait; 0 tries once). When it runs
	// out the error is report.CodeLockHeld.
	AdvisoryLockWait time.Duration
	// ShowSQL makes Plan list the statements of each pending migration
	// (plan --show-sql).
	ShowSQL bool
	// ConnectTimeout applies when the URL sets no connect_timeout
	// (DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// Phase is the SQL store phase. Create it with New; Close it when done.
type Phase struct {
	// Reader answers Status, Cleanup and Version.
	versioned.Reader
	src      Source
	opts     Options
	cfg      *pgx.ConnConfig
	conn     *pgx.Conn
	advisory *report.AdvisoryLock
}

var _ batch.Phase = (*Phase)(nil)

// New checks the URL and the options and returns a Phase over src. It does
// not connect: every method connects on first use (and again after a lost
// connection), so that Status can report an unreachable server line by
// line. A URL that does not parse is a report.CodeConfig error whose
// message never repeats the URL (it may hold a password). ctx is unused
// (nothing is dialled here); it keeps the signature open to a connecting
// constructor.
func New(ctx context.Context, url string, src Source, opts Options) (*Phase, error) {
	_ = ctx
	if url == "" {
		return nil, report.E(report.CodeConfig, "PostgreSQL URL is empty (set POSTGRES_URL, postgres: in the config file, or --postgres-url)")
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		reason := "it does not parse"
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			reason = pe.Unwrap().Error()
		}
		return nil, report.E(report.CodeConfig, "invalid PostgreSQL URL: %s", reason)
	}
	if opts.BatchSize < 0 || opts.CountBelow < 0 || opts.ConnectTimeout < 0 {
		return nil, report.E(report.CodeConfig, "SQL phase options must not be negative (batch size %d, count below %d, connect timeout %s)",
			opts.BatchSize, opts.CountBelow, opts.ConnectTimeout)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchBudget == 0 {
		opts.BatchBudget = DefaultBatchBudget
	}
	if opts.CountBelow == 0 {
		opts.CountBelow = DefaultCountBelow
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = opts.ConnectTimeout
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		// Shows who holds the advisory lock in pg_stat_activity.
		cfg.RuntimeParams["application_name"] = "outpost-migrate"
	}
	p := &Phase{src: src, opts: opts, cfg: cfg}
	p.Reader = versioned.Reader{Read: p.read}
	return p, nil
}

// Backend implements batch.Phase.
func (p *Phase) Backend() string { return store.Backend }

// TargetKnown implements batch.TargetKnower: "sql/000004", "000004_name",
// a name, or a version number.
func (p *Phase) TargetKnown(target string) bool {
	_, ok := p.src.Lookup(target)
	return ok
}

// Source returns the migrations the phase runs.
func (p *Phase) Source() Source { return p.src }

// Target describes the database without credentials: host:port/database.
func (p *Phase) Target() report.PostgresTarget {
	t := report.PostgresTarget{Host: p.cfg.Host, Port: strconv.Itoa(int(p.cfg.Port)), Database: p.cfg.Database, User: p.cfg.User}
	if p.cfg.TLSConfig == nil {
		t.SSLMode = "disable"
	}
	return t
}

func (p *Phase) where() string {
	return fmt.Sprintf("PostgreSQL %s/%s", net.JoinHostPort(p.cfg.Host, strconv.Itoa(int(p.cfg.Port))), p.cfg.Database)
}

// Close implements batch.Phase.
func (p *Phase) Close() error {
	if p.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.conn.Close(ctx)
	p.conn = nil
	return err
}

// connect returns the phase's connection, opening it if needed.
func (p *Phase) connect(ctx context.Context) (*pgx.Conn, error) {
	if p.conn != nil && !p.conn.IsClosed() {
		return p.conn, nil
	}
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	p.conn = conn
	return conn, nil
}

// notPostgresAfter is how long a connect may take before the port is
// probed for Redis: a Redis server never answers PostgreSQL's first
// message, so the connect would wait its whole timeout. A real server
// answers well before, so it never sees the probe.
const notPostgresAfter = 1500 * time.Millisecond

// dial connects; a connect that fails or hangs is checked for a Redis
// server on the port (78, "not PostgreSQL") before it counts as an outage.
func (p *Phase) dial(ctx context.Context) (*pgx.Conn, error) {
	type result struct {
		conn *pgx.Conn
		err  error
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		c, err := pgx.ConnectConfig(cctx, p.cfg.Copy())
		done <- result{c, err}
	}()
	notPG := func() error {
		addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(int(p.cfg.Port)))
		if !probe.IsRedis(ctx, addr) {
			return nil
		}
		return report.E(report.CodeConfig, "%s is not PostgreSQL: it answers as Redis; check the host and port of POSTGRES_URL (--postgres-url; PostgreSQL listens on 5432 by default)", addr).With("setting", "postgres")
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(notPostgresAfter):
		if err := notPG(); err != nil {
			return nil, err
		}
		r = <-done
	}
	if r.err != nil {
		if err := notPG(); err != nil && ctx.Err() == nil {
			return nil, err
		}
		return nil, classify(ctx, r.err, report.CodeUnreachable, "connect to %s", p.where())
	}
	return r.conn, nil
}

// dropConn closes a connection that an error may have left unusable (a
// cancelled query, a broken socket); the next call reconnects.
func (p *Phase) dropConn() {
	if p.conn != nil && p.conn.IsClosed() {
		p.conn = nil
	}
}

// read is status as versioned.Reader reads it.
func (p *Phase) read(ctx context.Context) ([]report.Migration, versioned.Recorded, error) {
	lines, st, err := p.status(ctx)
	return lines, recordedState(st), err
}

// status reads schema_migrations and the checkpoint table. A dirty version
// is a line in state "dirty" (or "partial" when it is ours and apply
// resumes it) whose reason says what it means and how to resolve it.
func (p *Phase) status(ctx context.Context) ([]report.Migration, dbState, error) {
	conn, err := p.connect(ctx)
	if err != nil {
		return p.src.UnknownLines(err), dbState{Version: NoVersion}, err
	}
	st, err := readState(ctx, conn)
	if err != nil {
		p.dropConn()
		err = classify(ctx, err, report.CodeUnknown, "read the schema version from %s", p.where())
		return p.src.UnknownLines(err), dbState{Version: NoVersion}, err
	}
	return p.linesFor(st), st, nil
}

// recordedState is schema_migrations' state as the shared bookkeeping reads it.
func recordedState(st dbState) versioned.Recorded {
	return versioned.Recorded{Table: versionTable, Version: st.Version, Dirty: st.Dirty}
}

// linesFor derives every migration's line from the recorded state; the
// checkpoints tell when a migration was applied and where a dirty one
// stopped.
func (p *Phase) linesFor(st dbState) []report.Migration {
	return p.src.Lines(recordedState(st), versioned.Ledger[*Migration]{
		AppliedAt: func(m *Migration) string {
			if cp, ok := st.Checkpoints[m.Key()]; ok && cp.FinishedAt != nil && cp.Version == m.Version {
				return cp.FinishedAt.UTC().Format(time.RFC3339)
			}
			return ""
		},
		Resume: func(m *Migration, l *report.Migration) bool {
			cp, ok := st.resumable(m)
			if !ok {
				return false
			}
			l.Progress = progressOf(cp, false)
			l.Counts = countsOf(cp)
			l.Reason = fmt.Sprintf("version %d was started by this tool (run %s) and stopped before step %q finished (%d rows done); schema_migrations says dirty, and apply resumes it from its checkpoint",
				m.Version, cp.RunID, cp.StepName, cp.Done)
			return true
		},
	})
}

func progressOf(cp checkpoint, resumed bool) *report.Progress {
	pr := &report.Progress{RunID: cp.RunID, Resumed: resumed, Position: cp.Position, Done: cp.Done, Total: cp.Total}
	if !cp.UpdatedAt.IsZero() {
		pr.UpdatedAt = cp.UpdatedAt.UTC().Format(time.RFC3339)
	}
	return pr
}

func countsOf(cp checkpoint) *report.Counts {
	return &report.Counts{Scanned: cp.Done, Changed: cp.Changed, Deleted: cp.Deleted, Rows: cp.Done}
}

// Plan implements batch.Phase: Status plus, for a pending or partial
// migration with a batched step, how many rows that step visits
// (report.Estimate with Units "rows", Method "counted" or "catalog").
// It changes nothing.
func (p *Phase) Plan(ctx context.Context) ([]report.Migration, error) {
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	conn := p.conn
	for i := range p.src.Migrations {
		m := &p.src.Migrations[i]
		l := &lines[i]
		if l.State != report.StatePending && l.State != report.StatePartial {
			continue
		}
		if p.src.Locks != nil {
			lock, err := p.src.Locks(ctx, conn, m.Version)
			if err != nil {
				p.dropConn()
				return lines, classify(ctx, err, report.CodeUnknown, "estimate the lock of %s", m.Key())
			}
			l.ExclusiveLock = lock
		}
		if p.opts.ShowSQL {
			l.Statements = m.Statements()
		}
		for _, step := range m.Steps {
			if step.Batched == nil {
				continue
			}
			est, err := step.Batched.Estimate(ctx, conn, p.opts.CountBelow)
			if err != nil {
				p.dropConn()
				return lines, classify(ctx, err, report.CodeUnknown, "estimate rows of %s step %s", m.Key(), step.Name)
			}
			if l.State == report.StatePartial {
				if cp, ok := st.resumable(m); ok {
					est.Value = max(est.Value-cp.Done, 0)
					est.Note = fmt.Sprintf("rows left after the checkpoint (%d done)", cp.Done)
				}
			}
			l.Estimate = &est
			break
		}
	}
	return lines, nil
}

// Verify implements batch.Phase: it compares the live schema with the
// source's expected schema of the recorded version and lists every
// difference as an issue on that version's line (state "drift"); the other
// applied lines become "verified". Drift is a report.CodeDrift error. A
// dirty database cannot be verified (report.CodeDirty); a version newer
// than the source is report.CodeDataRefused.
func (p *Phase) Verify(ctx context.Context, run *batch.Run) ([]report.Migration, error) {
	lines, st, err := p.status(ctx)
	if err != nil {
		return lines, err
	}
	_, resumable := st.resumable(p.src.At(st.Version))
	return lines, p.src.Verify(lines, recordedState(st), resumable, versioned.Against(p.src.Expected, func(want *Schema) ([]report.Issue, error) {
		live, err := Inspect(ctx, p.conn)
		if err != nil {
			p.dropConn()
			return nil, classify(ctx, err, report.CodeUnknown, "read the live schema of %s", p.where())
		}
		return Diff(want, live), nil
	}))
}

// Advisory returns the advisory lock as the last Apply or Force left it
// (State "acquired" while held, "released" after), or nil before either.
func (p *Phase) Advisory() *report.AdvisoryLock {
	if p.advisory == nil {
		return nil
	}
	a := *p.advisory
	return &a
}

// LockStatus reports golang-migrate's advisory lock as another session sees
// it: State "held" when some session holds it, else "free".
func (p *Phase) LockStatus(ctx context.Context) (*report.AdvisoryLock, error) {
	conn, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	id, err := p.lockID(ctx, conn)
	if err != nil {
		return nil, err
	}
	h, err := advisoryHolder(ctx, conn, id)
	if err != nil {
		p.dropConn()
		return nil, classify(ctx, err, report.CodeUnknown, "read pg_locks")
	}
	state := "free"
	if h != nil {
		state = "held"
	}
	return &report.AdvisoryLock{ID: id, State: state}, nil
}
