package report

import (
	"context"
	"errors"
)

// State is where one migration stands, as a report line says it. The list is
// closed and enumerated in schemas/common.json ($defs/migration.state).
type State string

const (
	StatePending       State = "pending"        // not applied yet
	StateApplied       State = "applied"        // recorded as applied
	StateNotApplicable State = "not_applicable" // recorded as not needed here (with a reason)
	StatePartial       State = "partial"        // applied to part of the data; a rerun finishes it
	StateFailed        State = "failed"         // failed; the report says which records or step
	StateInterrupted   State = "interrupted"    // stopped at a safe point; a rerun resumes it
	StateDirty         State = "dirty"          // a SQL version marked dirty by a failed run
	StateVerified      State = "verified"       // verify found it holds
	StateDrift         State = "drift"          // verify found it does not hold
	StateSkipped       State = "skipped"        // out of this command's scope
	StateCleaned       State = "cleaned"        // cleanup removed what it preserved
	StateUnknown       State = "unknown"        // the store could not tell
)

// Satisfied tells whether a migration in state s needs no more work, as
// Outpost's server reads it before starting.
func (s State) Satisfied() bool { return s == StateApplied || s == StateNotApplicable }

// Unfinished tells whether a migration in state s still needs apply.
func (s State) Unfinished() bool {
	switch s {
	case StatePending, StatePartial, StateDirty, StateFailed, StateInterrupted:
		return true
	}
	return false
}

// IsStop is the one stop rule: err stopped a run at a safe point, with its
// progress saved, and a rerun resumes it. Signals, a deadline (--max-runtime),
// a cancelled context and a lost lease are stops: the work done so far is
// sound, only the run ended early.
func IsStop(err error) bool {
	switch CodeOf(err) {
	case CodeInterrupted, CodeTerminated, CodeTimeout, CodeLockLost:
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// StopState is the state of a migration that err ended before it finished:
// interrupted for a stop (IsStop), failed for anything else.
func StopState(err error) State {
	if IsStop(err) {
		return StateInterrupted
	}
	return StateFailed
}
