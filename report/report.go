package report

import (
	"time"
)

// APIVersion is the report format's version; an additive change keeps it, a
// breaking one moves every schema to v2.
const APIVersion = "outpost.migrate/v1"

// Kinds of report, one per command, each with its own schema.
const (
	KindList    = "ListReport"
	KindPlan    = "PlanReport"
	KindApply   = "ApplyReport"
	KindVerify  = "VerifyReport"
	KindStatus  = "StatusReport"
	KindUnlock  = "UnlockReport"
	KindCleanup = "CleanupReport"
	KindForce   = "ForceReport"
	KindSchema  = "SchemaReport"
	KindVersion = "VersionReport"
	KindDemo    = "DemoReport"
	KindSeed    = "SeedReport"
	KindJobRun  = "JobRunReport"
	// KindError is used when the command itself could not be told (a usage
	// error before kingpin knew which command was meant).
	KindError = "ErrorReport"
)

// Outcomes: a closed list per kind, enumerated in the schemas. The generic
// failure outcomes apply to every kind.
const (
	OutcomeListed         = "listed"
	OutcomeApplied        = "applied"
	OutcomeUpToDate       = "up_to_date"
	OutcomePending        = "pending"
	OutcomeVerified       = "verified"
	OutcomeDrift          = "drift"
	OutcomeUnlocked       = "unlocked"
	OutcomeNoLock         = "no_lock"
	OutcomeCleaned        = "cleaned"
	OutcomeNothingToClean = "nothing_to_clean"
	OutcomeForced         = "forced"
	OutcomePrinted        = "printed"
	OutcomeSeeded         = "seeded"
	OutcomeCompleted      = "completed"
	OutcomeDirty          = "dirty"

	OutcomeFailed        = "failed"
	OutcomeInterrupted   = "interrupted"
	OutcomeLocked        = "locked"
	OutcomeCancelled     = "cancelled"
	OutcomeInvalidUsage  = "invalid_usage"
	OutcomeInvalidConfig = "invalid_config"
	OutcomeUnreachable   = "unreachable"
	OutcomeForbidden     = "permission_denied"
	OutcomeRefused       = "refused"
	OutcomeTimedOut      = "timed_out"
	OutcomeInternalError = "internal_error"
)

// Report is the one document a command prints. Field names are snake_case and
// stable; see schemas/common.json for the meaning of each.
type Report struct {
	APIVersion string    `json:"api_version"`
	Kind       string    `json:"kind"`
	Command    string    `json:"command"`
	Outcome    string    `json:"outcome"`
	ExitCode   int       `json:"exit_code"`
	RC         int       `json:"rc"`
	Changed    bool      `json:"changed"`
	Failed     bool      `json:"failed"`
	Msg        string    `json:"msg"`
	RunID      string    `json:"run_id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	DurationMS int64     `json:"duration_ms"`
	Tool       Tool      `json:"tool"`
	Targets    *Targets  `json:"targets,omitempty"`
	Lock       *Lock     `json:"lock,omitempty"`
	// Summary counts migrations by state, for a quick look.
	Summary    map[string]int `json:"summary,omitempty"`
	Migrations []Migration    `json:"migrations,omitempty"`
	// Next says what a rerun will do (resume from a checkpoint, start over,
	// nothing), for interrupted and failed runs.
	Next string `json:"next,omitempty"`
	// Extra is a kind-specific payload: the schemas for SchemaReport, the
	// steps of a DemoReport, the seeded counts of a SeedReport.
	Extra map[string]any `json:"extra,omitempty"`
	Error *ErrorDoc      `json:"error"`
}

// Tool identifies the binary that wrote the report.
type Tool struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
}

// Targets says which stores the command worked on, without secrets.
type Targets struct {
	Scope        []string        `json:"scope"`
	DeploymentID string          `json:"deployment_id,omitempty"`
	Redis        *RedisTarget    `json:"redis,omitempty"`
	Postgres     *PostgresTarget `json:"postgres,omitempty"`
	// ClickHouse is the log store when Outpost keeps it in ClickHouse.
	ClickHouse *ClickHouseTarget `json:"clickhouse,omitempty"`
	// SQL says whether the SQL phase ran and, when it did not, why.
	SQL *SQLTarget `json:"sql,omitempty"`
	// ConfigFile is the config file the settings were read from, if any.
	ConfigFile string `json:"config_file,omitempty"`
}

// ClickHouseTarget describes the ClickHouse store; it never holds the
// password.
type ClickHouseTarget struct {
	Addr     string `json:"addr"`
	Database string `json:"database"`
	Username string `json:"username,omitempty"`
	TLS      bool   `json:"tls"`
	Protocol string `json:"protocol"` // native | http
	// VersionTable is golang-migrate's table, with the deployment prefix.
	VersionTable string `json:"version_table"`
}

// SQLTarget is the fate of the SQL phase: it runs on the configured log
// store, or it is skipped because none is configured (as in Outpost's own
// migrate) or because this version does not support the one configured.
type SQLTarget struct {
	State   string `json:"state"`
	Store   string `json:"store,omitempty"`
	Message string `json:"message,omitempty"`
}

// The states of the SQL phase and the log stores it may run on.
const (
	SQLConfigured    = "configured"
	SQLNotConfigured = "not_configured"
	SQLNotSupported  = "not_supported"
	StorePostgres    = "postgres"
	StoreClickHouse  = "clickhouse"
)

// RedisTarget describes the Redis store; it never holds the password.
type RedisTarget struct {
	Addr     string `json:"addr"`
	Mode     string `json:"mode"` // standalone | cluster
	Database int    `json:"database"`
	TLS      bool   `json:"tls"`
	Username string `json:"username,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
	// Warnings say where the run talks to this server otherwise than
	// usual (scripts sent with EVAL where EVALSHA is missing).
	Warnings []string `json:"warnings,omitempty"`
}

// PostgresTarget describes the PostgreSQL store; it never holds the password.
type PostgresTarget struct {
	Host     string `json:"host"`
	Port     string `json:"port,omitempty"`
	Database string `json:"database"`
	User     string `json:"user,omitempty"`
	SSLMode  string `json:"sslmode,omitempty"`
}

// Lock describes the migration lock as the command saw or left it.
type Lock struct {
	Key string `json:"key"`
	// State: free, held (by someone, seen by status), acquired (by this run,
	// still held when the report was written), released, removed (unlock),
	// lost (taken from this run).
	State string `json:"state"`
	// Foreign is true when the lock was not written by this tool (Outpost's
	// own migrator writes a bare random token).
	Foreign  bool    `json:"foreign"`
	Holder   *Holder `json:"holder,omitempty"`
	AgeMS    *int64  `json:"age_ms,omitempty"`
	TTLMS    *int64  `json:"ttl_ms,omitempty"`
	Token    int64   `json:"token,omitempty"`
	Waited   int64   `json:"waited_ms,omitempty"`
	Renewals int64   `json:"renewals,omitempty"`
	// Advisory reports the PostgreSQL advisory lock of the SQL phase.
	Advisory *AdvisoryLock `json:"advisory,omitempty"`
}

// Holder names who holds a lock written by this tool.
type Holder struct {
	RunID        string `json:"run_id"`
	Host         string `json:"host"`
	PID          int    `json:"pid"`
	Command      string `json:"command"`
	StartedAt    string `json:"started_at"`
	ToolVersion  string `json:"tool_version"`
	Token        int64  `json:"token"`
	NomadAllocID string `json:"nomad_alloc_id,omitempty"`
	NomadJobID   string `json:"nomad_job_id,omitempty"`
	K8sPod       string `json:"k8s_pod,omitempty"`
	K8sNamespace string `json:"k8s_namespace,omitempty"`
}

// AdvisoryLock is golang-migrate's PostgreSQL session lock.
type AdvisoryLock struct {
	ID    int64  `json:"id"`
	State string `json:"state"` // acquired | released | held
}

// Migration is one migration's line in a report.
type Migration struct {
	ID          string `json:"id"`      // "sql/000005_denormalize_attempts", "redis/001_hash_tags"
	Backend     string `json:"backend"` // sql | redis
	Name        string `json:"name"`
	Version     int    `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Checksum identifies the migration's definition (the SQL file, the Redis
	// migration's code version), so a saved plan can tell another release.
	Checksum string `json:"checksum,omitempty"`
	// State: see State.
	State     State     `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	AppliedAt string    `json:"applied_at,omitempty"`
	Counts    *Counts   `json:"counts,omitempty"`
	Estimate  *Estimate `json:"estimate,omitempty"`
	// ExclusiveLock: plan's estimate of the lock the migration holds on
	// whole tables while it runs, for scheduling the window.
	ExclusiveLock *ExclusiveLock `json:"exclusive_lock,omitempty"`
	Progress      *Progress      `json:"checkpoint,omitempty"`
	Issues        []Issue        `json:"issues,omitempty"`
	// IssuesTotal is the exact number of issues; Issues holds the first few.
	IssuesTotal int64 `json:"issues_total"`
	// Memory is plan's estimate of what a copying migration (001) adds to
	// Redis, beside what the servers have.
	Memory *MemoryImpact `json:"memory,omitempty"`
	// Examples are real records before and after the change (plan
	// --show-examples), secrets masked.
	Examples []Example `json:"examples,omitempty"`
	// Statements are what a pending SQL or ClickHouse migration will run
	// (plan --show-sql).
	Statements []Statement `json:"statements,omitempty"`
	// Resumable says whether a rerun continues from saved progress.
	Resumable  bool  `json:"resumable,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Others: writes by other clients during the run (Redis apply) and the
	// clients connected (plan, apply); on the first Redis migration of the
	// pass only.
	Others *Others `json:"others,omitempty"`
}

// Others is what a Redis run saw of other clients.
type Others struct {
	// Detection: "client_tracking" (the server named every key others
	// changed during the pass), "unavailable" (Reason says why; a full
	// confirming pass ran instead), or "" (plan: only Clients).
	Detection string `json:"detection,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// ConfirmingPass: a full confirming pass over the keyspace ran.
	ConfirmingPass bool `json:"confirming_pass"`
	// KeysChanged: key changes by other clients the servers reported
	// during the run (a key changed twice in one server round counts once).
	KeysChanged int64 `json:"keys_changed"`
	// PerMaster: KeysChanged by master address.
	PerMaster map[string]int64 `json:"per_master,omitempty"`
	// What was done about the keys others changed: twin already right,
	// legacy key copied (new), re-copied (changed after its copy), edited
	// by 002/003, reported (an issue: the migration fails, exit 4), deleted
	// (nothing to do).
	Right     int64 `json:"right"`
	Migrated  int64 `json:"migrated"`
	Recopied  int64 `json:"recopied"`
	Converted int64 `json:"converted"`
	Reported  int64 `json:"reported"`
	Gone      int64 `json:"gone"`
	// Rounds of catch-up (each waits for the changes reported so far).
	Rounds int `json:"rounds"`
	// Clients connected to the masters other than this run, when the run
	// started.
	Clients []Client `json:"clients,omitempty"`
	Warning string   `json:"warning,omitempty"`
}

// Client is one connection to a Redis master (CLIENT LIST).
type Client struct {
	Node        string `json:"node"`
	Addr        string `json:"addr"`
	Name        string `json:"name,omitempty"`
	LastCommand string `json:"last_command"`
	IdleS       int64  `json:"idle_s"`
	// RecentWrite: its last command writes and ran less than
	// RecentWriteS seconds ago.
	RecentWrite bool `json:"recent_write"`
}

// MemoryImpact is what a migration's copies add to Redis, estimated from a
// bounded sample (the share of keys that get a copy, scaled to DBSIZE,
// times the mean MEMORY USAGE of sampled keys), next to every master's
// used_memory, maxmemory and eviction policy. Warning says when apply
// would not fit or could evict.
type MemoryImpact struct {
	EstimatedBytes int64        `json:"estimated_bytes"`
	Copies         int64        `json:"copies"`
	BytesPerKey    int64        `json:"bytes_per_key"`
	Sampled        int64        `json:"sampled"`
	Measured       int64        `json:"measured"`
	Nodes          []NodeMemory `json:"nodes"`
	Warning        string       `json:"warning,omitempty"`
}

// NodeMemory is one master's memory as INFO reports it.
type NodeMemory struct {
	Addr      string `json:"addr"`
	UsedBytes int64  `json:"used_bytes"`
	MaxBytes  int64  `json:"max_bytes"` // 0: no limit
	Policy    string `json:"policy,omitempty"`
}

// Example is one real record as a pending migration would change it.
// Encrypted and secret-looking values are masked.
type Example struct {
	Key      string            `json:"key"`
	Kind     string            `json:"kind"`
	Before   map[string]string `json:"before"`
	AfterKey string            `json:"after_key"`
	After    map[string]string `json:"after"`
	// TTLMs is the record's TTL (soft-deleted records); the copy keeps it.
	TTLMs int64 `json:"ttl_ms,omitempty"`
}

// Statement is one statement a SQL migration runs, as plan --show-sql
// shows it.
type Statement struct {
	Step string `json:"step"`
	SQL  string `json:"sql"`
	// Transactional: the statement runs inside a transaction (every SQL
	// step is one; a batched step commits once per batch).
	Transactional bool `json:"transactional"`
	Batched       bool `json:"batched,omitempty"`
	// Lock is the table lock the statement takes, held until its step
	// commits; Rewrites says it rewrites the whole table under it.
	Lock     string `json:"lock,omitempty"`
	Rewrites bool   `json:"rewrites,omitempty"`
}

// Counts are exact.
type Counts struct {
	Scanned   int64 `json:"scanned"`
	Changed   int64 `json:"changed"`
	Unchanged int64 `json:"unchanged"`
	Failed    int64 `json:"failed"`
	// Verify: records checked and passed; cleanup: keys deleted.
	Checked int64 `json:"checked,omitempty"`
	Passed  int64 `json:"passed,omitempty"`
	Deleted int64 `json:"deleted,omitempty"`
	Skipped int64 `json:"skipped,omitempty"`
	// Rows for SQL batched steps.
	Rows int64 `json:"rows,omitempty"`
}

// Estimate is plan's idea of how much a migration would touch.
type Estimate struct {
	Units  string `json:"units"`  // keys | rows
	Value  int64  `json:"value"`  // the count or the estimate
	Method string `json:"method"` // counted | sampled | catalog
	// Sampled: how many records the estimate was drawn from.
	Sampled int64 `json:"sampled,omitempty"`
	// Deletes: rows the migration deletes among them (000005: deliveries
	// whose event is gone), counted exactly.
	Deletes *int64 `json:"deletes,omitempty"`
	Note    string `json:"note,omitempty"`
}

// ExclusiveLock is a lock a migration (or one step of it) holds on whole
// tables until it commits, and how long plan expects that to last,
// estimated from the tables' sizes.
type ExclusiveLock struct {
	// Mode is PostgreSQL's lock mode: "ACCESS EXCLUSIVE" blocks readers
	// and writers.
	Mode   string   `json:"mode"`
	Tables []string `json:"tables"`
	// Step names the step that holds it, in a migration run in steps.
	Step string `json:"step,omitempty"`
	// Bytes the locked statements read and write (tables and indexes,
	// measured or, for a table an earlier pending migration makes,
	// predicted).
	Bytes       int64  `json:"bytes"`
	EstimatedMS int64  `json:"estimated_ms"`
	Basis       string `json:"basis,omitempty"`
}

// Progress is the persisted state of an unfinished or resumed run.
type Progress struct {
	RunID     string         `json:"run_id,omitempty"`
	UpdatedAt string         `json:"updated_at,omitempty"`
	Resumed   bool           `json:"resumed"`
	Nodes     []NodeProgress `json:"nodes,omitempty"`
	// SQL batched steps: the last key done.
	Position string `json:"position,omitempty"`
	Done     int64  `json:"done,omitempty"`
	Total    int64  `json:"total,omitempty"`
}

// NodeProgress is one Redis master's scan position.
type NodeProgress struct {
	Node    string `json:"node"`
	Addr    string `json:"addr,omitempty"`
	RunID   string `json:"server_run_id,omitempty"`
	Cursor  string `json:"cursor"`
	Done    bool   `json:"done"`
	Scanned int64  `json:"scanned"`
	// ResumedFrom is the cursor this run started from; Restarted says the
	// saved cursor was unusable (new server process, node gone) and the node
	// was scanned again from 0.
	ResumedFrom string `json:"resumed_from,omitempty"`
	Restarted   bool   `json:"restarted,omitempty"`
}

// Issue is one problem found: a key or object and what is wrong with it.
type Issue struct {
	Key      string `json:"key,omitempty"`
	Object   string `json:"object,omitempty"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
}

// ErrorDoc is the report's error object.
type ErrorDoc struct {
	Code      Code           `json:"code"`
	Message   string         `json:"message"`
	Retryable bool           `json:"retryable"`
	Details   map[string]any `json:"details,omitempty"`
}

// MaxIssues caps the issues listed per migration; IssuesTotal keeps the count.
const MaxIssues = 50

// AddIssue appends an issue under the cap and counts it.
func (m *Migration) AddIssue(i Issue) {
	m.IssuesTotal++
	if len(m.Issues) < MaxIssues {
		m.Issues = append(m.Issues, i)
	}
}
