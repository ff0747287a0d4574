// Package batch is the executor: it runs the commands (plan, apply, verify,
// status, unlock, cleanup) over the store phases it is handed, SQL before
// Redis, under one lease, and owns the machinery every migration shares
// (configuration, store connections, the lease, the chunked scan executor
// with its checkpoints, signals and deadlines, progress events).
//
// batch never imports package migrations: cmd builds the phases from the
// migrations and hands them to the Runner, the way goose's Provider is handed
// an fs.FS.
package batch

import (
	"context"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// Phase is one store's migrations (SQL or Redis). The Runner treats every
// phase alike; a phase's methods are called from one goroutine at a time.
//
// Every method returns the report lines of this phase's migrations, in order,
// even when it also returns an error (the lines then say how far it got).
type Phase interface {
	// Backend is "sql" or "redis".
	Backend() string
	// Status reports the recorded state of every migration and any
	// unfinished run, changing nothing.
	Status(ctx context.Context) ([]report.Migration, error)
	// Plan is Status plus, for pending migrations, what apply would do and
	// how much it would touch (counted, or estimated from a bounded sample).
	Plan(ctx context.Context) ([]report.Migration, error)
	// Apply applies the pending migrations in order, stopping after
	// run.Target when it names one of this phase's migrations. Progress
	// writes are fenced by run.Fence. Lines of the migrations this run
	// applied (or recorded as not applicable) carry Counts; lines it left
	// alone have nil Counts. Long loops stop at a safe point once
	// run.Stopped() returns an error, and return that error.
	Apply(ctx context.Context, run *Run) ([]report.Migration, error)
	// Verify checks that applied migrations hold in the data.
	Verify(ctx context.Context, run *Run) ([]report.Migration, error)
	// Cleanup removes what applied migrations preserved, once verified.
	Cleanup(ctx context.Context, run *Run) ([]report.Migration, error)
	// Close releases connections.
	Close() error
}

// Fence guards progress writes: a run that lost its lease must not move a
// checkpoint. Lease (package batch/lock) implements it.
type Fence interface {
	// Check returns a report.CodeLockLost error once the lease is gone.
	Check(ctx context.Context) error
	// Token is the fencing token of the lease (grows with each acquisition).
	Token() int64
	// HSet and Del write keys in the lock's hash slot only if the lease is
	// still ours, atomically (one script), else fail with CodeLockLost.
	HSet(ctx context.Context, key string, values map[string]string) error
	Del(ctx context.Context, keys ...string) error
}

// Run carries what one invocation tells its phases.
type Run struct {
	ID string
	// Command is the command being run ("apply", "verify", ...).
	Command string
	// Fence guards progress writes; nil when the command holds no lease.
	Fence Fence
	// Target stops apply after this migration (its id, "sql/000005..." or
	// "redis/002_timestamps", or a bare name/version). Empty: apply all.
	Target string
	// Repair: apply also redoes the records of applied migrations that do
	// not verify (phases that can).
	Repair bool
	// Sample limits verify to a spot check of about this many records; 0
	// means a full pass.
	Sample int
	// Events receives progress events; never nil (use progress.Nop).
	Events progress.Sink
	// Stop is closed when the run must stop at its next safe point (a
	// signal, --max-runtime); StopCause then says why. The context stays
	// alive so that the chunk or batch in flight can finish and its
	// checkpoint be saved; the context is cancelled only on a second signal.
	Stop      <-chan struct{}
	StopCause func() error
}

// Stopped returns the reason to stop when a stop was requested, else nil.
// Long loops call it between chunks or batches.
func (r *Run) Stopped() error {
	if r == nil || r.Stop == nil {
		return nil
	}
	select {
	case <-r.Stop:
		if r.StopCause != nil {
			if err := r.StopCause(); err != nil {
				return err
			}
		}
		return context.Canceled
	default:
		return nil
	}
}

// Emit sends an event stamped with the run's id.
func (r *Run) Emit(e progress.Event) {
	if r == nil || r.Events == nil {
		return
	}
	r.Events.Emit(e)
}

// Preflighter is a Phase that can tell, before any phase of an apply
// writes, that it could not finish (Redis: no memory for the copies), so
// that apply refuses with nothing changed rather than after the SQL phase.
type Preflighter interface {
	Preflight(ctx context.Context, run *Run) error
}
