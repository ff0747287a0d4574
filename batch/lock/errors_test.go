package lock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestErrorsClassified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := Options{Key: Key(""), Holder: holder("r-err")}

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		defer c.Close()
		srv.Stop(t)
		_, err := Acquire(ctx, c, opts)
		requireCode(t, report.CodeUnreachable, err)
		_, err = Inspect(ctx, c, opts.Key)
		requireCode(t, report.CodeUnreachable, err)
		_, err = ForceUnlock(ctx, c, opts.Key)
		requireCode(t, report.CodeUnreachable, err)
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t, servertest.WithPassword("right"))
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "wrong"})
		defer c.Close()
		_, err := Acquire(ctx, c, opts)
		requireCode(t, report.CodePermission, err)
	})
	t.Run("no password", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t, servertest.WithPassword("right"))
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer c.Close()
		_, err := Inspect(ctx, c, opts.Key)
		requireCode(t, report.CodePermission, err)
	})
	t.Run("key not allowed", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t, servertest.WithACLUser("app", "pw", "~tenant:*", "+@all"))
		c := srv.Client(t)
		_, err := Acquire(ctx, c, opts)
		requireCode(t, report.CodePermission, err)
		_, err = Inspect(ctx, c, opts.Key)
		requireCode(t, report.CodePermission, err)
	})
	t.Run("command inside the script not allowed", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t, servertest.WithACLUser("app", "pw", "~*", "+@all", "-incr"))
		c := srv.Client(t)
		_, err := Acquire(ctx, c, opts)
		requireCode(t, report.CodePermission, err)
		require.Zero(t, c.Exists(ctx, opts.Key).Val(), "a refused acquisition left a lock behind")
	})
	t.Run("scripts not allowed", func(t *testing.T) {
		t.Parallel()
		srv := servertest.Redis(t, servertest.WithACLUser("app", "pw", "~*", "+@all", "-@scripting"))
		c := srv.Client(t)
		_, err := Acquire(ctx, c, opts)
		requireCode(t, report.CodePermission, err)
	})
}

func TestClassify(t *testing.T) {
	require.Nil(t, classify(nil, "x"))
	err := classify(context.DeadlineExceeded, "doing x")
	require.True(t, errors.Is(err, context.DeadlineExceeded))
	require.Equal(t, report.CodeTimeout, report.CodeOf(err))
}

// TestReportsValidate: what this package puts in reports (Info, Inspect,
// ForceUnlock, the LOCK_HELD error) and the events it emits are valid
// against the published schemas.
func TestReportsValidate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	key := Key("validate:")
	tool := report.Tool{Name: "outpost", Version: "test"}
	var events bytes.Buffer
	sink := progress.NewLogger(&events, true, "r-events", "apply")

	check := func(kind, command, outcome string, lock *report.Lock, err error) {
		t.Helper()
		r := report.New(kind, command, tool)
		r.Outcome = outcome
		r.Lock = lock
		r.Finish(err, false)
		require.NoError(t, report.Validate(r), "lock %+v", lock)
	}

	l, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-valid"), TTL: 2 * time.Second, RenewEvery: 200 * time.Millisecond, Events: sink})
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	check(report.KindApply, "apply", report.OutcomeApplied, l.Info(), nil)
	held, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	check(report.KindStatus, "status", report.OutcomeUpToDate, held, nil)
	_, busy := Acquire(ctx, c, Options{Key: key, Holder: holder("r-busy"), Wait: 300 * time.Millisecond, Events: sink})
	requireCode(t, report.CodeLockHeld, busy)
	check(report.KindApply, "apply", "", nil, busy)
	require.NoError(t, l.Release(ctx))
	check(report.KindApply, "apply", report.OutcomeApplied, l.Info(), nil)

	free, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	check(report.KindStatus, "status", report.OutcomeUpToDate, free, nil)

	lost, err := Acquire(ctx, c, Options{Key: key, Holder: holder("r-lost"), Events: sink})
	require.NoError(t, err)
	removed, err := ForceUnlock(ctx, c, key)
	require.NoError(t, err)
	check(report.KindUnlock, "unlock", report.OutcomeUnlocked, removed, nil)
	lostErr := lost.Check(ctx)
	requireCode(t, report.CodeLockLost, lostErr)
	check(report.KindApply, "apply", "", lost.Info(), lostErr)

	require.NoError(t, c.Set(ctx, key, "outpost-token", time.Hour).Err())
	foreign, err := Inspect(ctx, c, key)
	require.NoError(t, err)
	check(report.KindStatus, "status", report.OutcomeUpToDate, foreign, nil)
	_, busy = Acquire(ctx, c, Options{Key: key, Holder: holder("r-busy")})
	check(report.KindApply, "apply", "", nil, busy)

	kinds := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(events.Bytes()), []byte("\n")) {
		require.NoError(t, report.ValidateEvent(line), "%s", line)
		var e progress.Event
		require.NoError(t, json.Unmarshal(line, &e))
		kinds[e.Event] = true
	}
	for _, k := range []string{progress.LockAcquired, progress.LockRenewed, progress.LockWaiting, progress.LockReleased, progress.LockLost} {
		require.True(t, kinds[k], "no %s event", k)
	}
}
