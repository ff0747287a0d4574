package poll

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// never is an attempt that is never done, recording when it was made.
func never(at *[]time.Time) func(int) (bool, error) {
	return func(int) (bool, error) {
		*at = append(*at, time.Now())
		return false, nil
	}
}

func TestZeroWaitTriesOnce(t *testing.T) {
	for _, wait := range []time.Duration{0, -time.Second} {
		var at []time.Time
		retried := false
		err := Policy{Wait: wait, First: time.Second}.Until(context.Background(), never(&at), func(int, time.Duration) { retried = true })
		require.ErrorIs(t, err, ErrExpired)
		require.Len(t, at, 1, "wait %s makes one attempt", wait)
		require.False(t, retried, "nothing is retried after the only attempt")
	}
}

func TestDeadline(t *testing.T) {
	var at []time.Time
	var lefts []time.Duration
	start := time.Now()
	err := Policy{Wait: 500 * time.Millisecond, First: 400 * time.Millisecond}.
		Until(context.Background(), never(&at), func(_ int, left time.Duration) { lefts = append(lefts, left) })
	require.ErrorIs(t, err, ErrExpired)
	// Attempts at 0 and 400ms; the next pause is cut to end at the
	// deadline (500ms), where the last attempt is made, not at 800ms.
	require.Len(t, at, 3)
	last := at[2].Sub(start)
	require.GreaterOrEqual(t, last, 500*time.Millisecond)
	require.Less(t, last, 700*time.Millisecond, "the last pause is cut at the deadline")
	require.Len(t, lefts, 2, "retrying is called before each pause")
	require.Greater(t, lefts[0], 400*time.Millisecond)
	require.Less(t, lefts[1], 150*time.Millisecond, "the time left shrinks")
}

func TestBackoffGrowsToMax(t *testing.T) {
	// Pauses 50, 60, 60, 60 (doubling, capped): about 230ms in all, where
	// doubling without the cap would take 750ms.
	var at []time.Time
	err := Policy{Tries: 5, First: 50 * time.Millisecond, Max: 60 * time.Millisecond}.Until(context.Background(), never(&at), nil)
	require.ErrorIs(t, err, ErrExpired)
	require.Len(t, at, 5)
	require.GreaterOrEqual(t, at[1].Sub(at[0]), 50*time.Millisecond)
	for i := 2; i < len(at); i++ {
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), 60*time.Millisecond, "pause %d doubles up to Max", i)
	}
	require.Less(t, at[4].Sub(at[0]), 500*time.Millisecond, "no pause is longer than Max")
}

func TestTries(t *testing.T) {
	var at []time.Time
	err := Policy{Tries: 3, First: time.Millisecond}.Until(context.Background(), never(&at), nil)
	require.ErrorIs(t, err, ErrExpired)
	require.Len(t, at, 3)

	// Both bounds: the first reached ends the wait.
	at = nil
	err = Policy{Tries: 1000, Wait: 50 * time.Millisecond, First: 20 * time.Millisecond}.Until(context.Background(), never(&at), nil)
	require.ErrorIs(t, err, ErrExpired)
	require.Less(t, len(at), 10)
}

func TestDoneAndFailure(t *testing.T) {
	err := Policy{Wait: time.Minute, First: time.Millisecond}.Until(context.Background(), func(n int) (bool, error) { return n == 3, nil }, nil)
	require.NoError(t, err)

	boom := errors.New("refused")
	calls := 0
	err = Policy{Wait: time.Minute, First: time.Millisecond}.Until(context.Background(), func(int) (bool, error) { calls++; return false, boom }, nil)
	require.Same(t, boom, err, "an attempt's error ends the wait as it is")
	require.Equal(t, 1, calls)
}

func TestCancel(t *testing.T) {
	cause := errors.New("interrupted by a signal")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	var at []time.Time
	err := Policy{Wait: time.Minute, First: 10 * time.Second}.Until(ctx, never(&at), nil)
	require.Less(t, time.Since(start), 5*time.Second, "a cancel ends the pause")
	var ended *Ended
	require.ErrorAs(t, err, &ended)
	require.ErrorIs(t, err, cause, "the cause is kept")
	require.Len(t, at, 1)

	// Without a cause it is ctx's error.
	ctx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	err = Policy{Wait: time.Minute, First: time.Second}.Until(ctx, never(&at), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestJitter(t *testing.T) {
	// Twenty pauses drawn from [50ms, 100ms]: at least 1s in all, about
	// 1.5s, and not all of them full (2s).
	var at []time.Time
	start := time.Now()
	err := Policy{Tries: 21, First: 100 * time.Millisecond, Jitter: true}.Until(context.Background(), never(&at), nil)
	require.ErrorIs(t, err, ErrExpired)
	total := time.Since(start)
	require.GreaterOrEqual(t, total, time.Second)
	require.Less(t, total, 1900*time.Millisecond, "jitter shortens the pauses")
	for i := 1; i < len(at); i++ {
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), 50*time.Millisecond)
	}
}
