package report

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// New starts a report for command, stamped now.
func New(kind, command string, tool Tool) *Report {
	return &Report{
		APIVersion: APIVersion,
		Kind:       kind,
		Command:    command,
		RunID:      NewRunID(),
		StartedAt:  time.Now().UTC(),
		Tool:       tool,
	}
}

// NewRunID returns a random id for one invocation ("r-" and 16 hex digits).
func NewRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "r-" + hex.EncodeToString(b[:])
}

// outcomeFor is the default outcome of a failure with code c, used when the
// command did not set a more precise one.
var outcomeFor = map[Code]string{
	CodeDrift:                OutcomeDrift,
	CodeMigrationFailed:      OutcomeFailed,
	CodeDirty:                OutcomeDirty,
	CodeUsage:                OutcomeInvalidUsage,
	CodeConfirmationRequired: OutcomeInvalidUsage,
	CodeCancelled:            OutcomeCancelled,
	CodeDataRefused:          OutcomeRefused,
	CodePlanMismatch:         OutcomeRefused,
	CodeUnreachable:          OutcomeUnreachable,
	CodeInternal:             OutcomeInternalError,
	CodeMemory:               OutcomeRefused,
	CodeLockHeld:             OutcomeLocked,
	CodeLockLost:             OutcomeFailed,
	CodeTemporary:            OutcomeFailed,
	CodeTimeout:              OutcomeTimedOut,
	CodePermission:           OutcomeForbidden,
	CodeConfig:               OutcomeInvalidConfig,
	CodeInterrupted:          OutcomeInterrupted,
	CodeTerminated:           OutcomeInterrupted,
}

// Finish stamps the end of the run and derives outcome, exit code, rc,
// failed and the error object from err. detailedExitCode turns a "pending"
// outcome into exit 2 (plan and status only). It is the only place where a
// report's exit code is decided.
func (r *Report) Finish(err error, detailedExitCode bool) {
	r.FinishedAt = time.Now().UTC()
	r.DurationMS = r.FinishedAt.Sub(r.StartedAt).Milliseconds()
	if err != nil {
		code := CodeOf(err)
		r.ExitCode = ExitCode(code)
		r.Error = &ErrorDoc{Code: code, Message: err.Error(), Retryable: Retryable(code), Details: DetailsOf(err)}
		if r.Outcome == "" || !isFailureOutcome(r.Outcome) {
			if o, ok := outcomeFor[code]; ok {
				r.Outcome = o
			} else {
				r.Outcome = OutcomeFailed
			}
		}
		if r.Msg == "" {
			r.Msg = err.Error()
		}
	} else {
		r.Error = nil
		r.ExitCode = ExitOK
		if detailedExitCode && r.Outcome == OutcomePending {
			r.ExitCode = ExitPending
		}
	}
	r.RC = r.ExitCode
	r.Failed = r.ExitCode != ExitOK && r.ExitCode != ExitPending
	if r.Msg == "" {
		r.Msg = r.Outcome
	}
}

func isFailureOutcome(o string) bool {
	for _, f := range outcomeFor {
		if f == o {
			return true
		}
	}
	return false
}

// OutputLost records that the report itself could not be written to stdout
// (a reader that went away, a full disk): the run's own result stands, but
// whoever waits for the report will not get it, so a run that succeeded
// exits 74 (IOERR) instead of 0 or 2. A run that failed keeps its own code,
// which says more (retry or not). The result goes to the termination log.
func (r *Report) OutputLost(err error) {
	msg := "the report could not be written to stdout (" + err.Error() + "); the run's result: " + r.Msg
	if r.Error == nil {
		r.ExitCode = ExitIOErr
		r.Error = &ErrorDoc{Code: CodeIOErr, Message: msg, Retryable: Retryable(CodeIOErr)}
	}
	r.RC = r.ExitCode
	r.Failed = true
	r.Msg = msg
}
