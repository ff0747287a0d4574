package scan

import (
	"context"
	"time"
)

// Fence guards a pass's data writes (lock.Lease implements it). Steps call
// CheckFence right before each write and, where the server can check the
// lock in the same atomic step as the write (a standalone server: the lock
// and the data share one keyspace), pass Guard's key and value to their
// scripts.
type Fence interface {
	// Valid is nil while the lease is held and its last confirmed renewal
	// is recent enough, by this process's monotonic clock, that Redis
	// cannot have expired it; else a report.CodeLockLost error. It makes
	// no round trip, so it is cheap before every write.
	Valid() error
	// Guard is the lock key, the value this lease put there, and the wall
	// clock time until which the lease is valid (as Valid computes it):
	// write scripts refuse to write once the server's clock has passed
	// it, so a write that a pause delayed past the lease cannot land.
	Guard() (key, value string, until time.Time)
}

type fenceKey struct{}

// WithFence returns ctx carrying f for the steps of a pass.
func WithFence(ctx context.Context, f Fence) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom is the fence ctx carries, nil when the pass runs without one
// (plan, verify, tests).
func FenceFrom(ctx context.Context) Fence {
	f, _ := ctx.Value(fenceKey{}).(Fence)
	return f
}

// CheckFence is nil when ctx carries no fence or its lease is valid.
func CheckFence(ctx context.Context) error {
	if f := FenceFrom(ctx); f != nil {
		return f.Valid()
	}
	return nil
}
