// Package report holds what every command tells its caller: the report
// envelope, the closed list of error codes, the single table that maps an error
// code to a process exit code, the writers (one compact JSON document on the
// last line of stdout, or text for people) and validation against the schemas
// published in package schemas.
//
// Everything above this package (batch, migrations, cmd) returns errors that
// carry a Code; the exit code is derived here and nowhere else.
package report

// Code names a class of failure. The list is closed: a caller (Ansible, a CI
// step, the Nomad runner) may switch on it, and the JSON Schemas enumerate it.
type Code string

const (
	CodeUnknown              Code = "UNKNOWN"               // 1: unclassified
	CodeDrift                Code = "DRIFT"                 // 3: verify found a mismatch
	CodeMigrationFailed      Code = "MIGRATION_FAILED"      // 4: a migration failed (see the report for which)
	CodeDirty                Code = "DIRTY_DATABASE"        // 4: schema_migrations is dirty; needs a manual repair
	CodeUsage                Code = "USAGE"                 // 64: bad flag or argument
	CodeConfirmationRequired Code = "CONFIRMATION_REQUIRED" // 64: --yes missing and no terminal to ask on
	CodeCancelled            Code = "CANCELLED"             // 64: the person at the terminal answered no
	CodeDataRefused          Code = "DATA_REFUSED"          // 65: records or a migration set the tool will not handle
	CodePlanMismatch         Code = "PLAN_MISMATCH"         // 65: apply --plan: the stores no longer match the saved plan
	CodeUnreachable          Code = "STORE_UNREACHABLE"     // 69: a store did not answer
	CodeInternal             Code = "INTERNAL"              // 70: a bug: recovered panic, invalid report
	CodeIOErr                Code = "IOERR"                 // 74: the report could not be written to stdout
	CodeMemory               Code = "INSUFFICIENT_MEMORY"   // 65: Redis has not the memory the copies need, or evicts
	CodeLockHeld             Code = "LOCK_HELD"             // 75: another run holds the migration lock
	CodeLockLost             Code = "LOCK_LOST"             // 75: our lease was taken away mid-run
	CodeTemporary            Code = "TEMPORARY"             // 75: a transient failure; retry
	CodeTimeout              Code = "TIMEOUT"               // 75: a wait (--wait, --lock-timeout, --max-runtime) ran out
	CodePermission           Code = "PERMISSION_DENIED"     // 77: the store refused for lack of permission
	CodeConfig               Code = "CONFIG_INVALID"        // 78: configuration missing or invalid
	CodeInterrupted          Code = "INTERRUPTED"           // 130: SIGINT, stopped at a safe point
	CodeTerminated           Code = "TERMINATED"            // 143: SIGTERM, stopped at a safe point
)

// Exit codes, as published in the README and the contract.
const (
	ExitOK          = 0
	ExitUnknown     = 1
	ExitPending     = 2
	ExitDrift       = 3
	ExitFailed      = 4
	ExitUsage       = 64
	ExitDataErr     = 65
	ExitUnavailable = 69
	ExitSoftware    = 70
	ExitIOErr       = 74
	ExitTempFail    = 75
	ExitNoPerm      = 77
	ExitConfig      = 78
	ExitSIGINT      = 130
	ExitSIGTERM     = 143
)

// exitCodes is the one table from error code to exit code.
var exitCodes = map[Code]int{
	CodeUnknown:              ExitUnknown,
	CodeDrift:                ExitDrift,
	CodeMigrationFailed:      ExitFailed,
	CodeDirty:                ExitFailed,
	CodeUsage:                ExitUsage,
	CodeConfirmationRequired: ExitUsage,
	CodeCancelled:            ExitUsage,
	CodeDataRefused:          ExitDataErr,
	CodePlanMismatch:         ExitDataErr,
	CodeUnreachable:          ExitUnavailable,
	CodeInternal:             ExitSoftware,
	CodeIOErr:                ExitIOErr,
	CodeMemory:               ExitDataErr,
	CodeLockHeld:             ExitTempFail,
	CodeLockLost:             ExitTempFail,
	CodeTemporary:            ExitTempFail,
	CodeTimeout:              ExitTempFail,
	CodePermission:           ExitNoPerm,
	CodeConfig:               ExitConfig,
	CodeInterrupted:          ExitSIGINT,
	CodeTerminated:           ExitSIGTERM,
}

// retryable says whether running the same command again may succeed without
// anyone changing anything: the orchestrator recipes retry exactly these.
var retryable = map[Code]bool{
	CodeUnknown:     true,
	CodeUnreachable: true,
	CodeLockHeld:    true,
	CodeLockLost:    true,
	CodeTemporary:   true,
	CodeTimeout:     true,
	CodeInterrupted: true,
	CodeTerminated:  true,
}

// ExitCode maps an error code to the process exit code. An unknown code is 1.
func ExitCode(c Code) int {
	if n, ok := exitCodes[c]; ok {
		return n
	}
	return ExitUnknown
}

// Retryable reports whether a rerun may succeed unchanged.
func Retryable(c Code) bool { return retryable[c] }

// Codes lists every code, for the schemas test and the README.
func Codes() []Code {
	out := make([]Code, 0, len(exitCodes))
	for c := range exitCodes {
		out = append(out, c)
	}
	return out
}
