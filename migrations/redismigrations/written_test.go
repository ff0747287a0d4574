package redismigrations

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWritten: every key added is found, no key not added is found, and
// past the capacity keys are no longer taken (so they are read again).
func TestWritten(t *testing.T) {
	w := newWritten()
	const n = 200_000
	for i := range n {
		w.add("tenant:{t"+strconv.Itoa(i)+"}:tenant", uint32(i)|1)
	}
	for i := range n {
		require.True(t, w.has("tenant:{t"+strconv.Itoa(i)+"}:tenant"))
	}
	for i := range n {
		require.False(t, w.has("tenant:{u"+strconv.Itoa(i)+"}:tenant"))
	}

	full := newWritten()
	full.limit = 10
	for i := range 20 {
		full.add("k"+strconv.Itoa(i), 1)
	}
	require.True(t, full.has("k9"))
	require.False(t, full.has("k15"), "past the capacity a key is not taken")

	var none *written
	none.add("k", 1) // no set when 001 is not in the pass
	require.False(t, none.has("k"))
	require.False(t, none.holds("k", 1))
}

// TestWrittenHolds: a key holds only the digest of what was last written
// to it, and the digest depends on the fields and values, not their order.
func TestWrittenHolds(t *testing.T) {
	w := newWritten()
	a := map[string]string{"id": "t1", "created_at": "1", "entity": "tenant"}
	b := map[string]string{"id": "t1", "created_at": "1", "entity": "tenant", "note": "new"}
	swapped := map[string]string{"id": "1", "created_at": "t1", "entity": "tenant"}
	require.NotEqual(t, w.digest(a), w.digest(b))
	require.NotEqual(t, w.digest(a), w.digest(swapped), "a value moved to another field")
	require.NotZero(t, w.digest(nil))
	w.add("tenant:{t1}:tenant", w.digest(a))
	require.True(t, w.holds("tenant:{t1}:tenant", w.digest(a)))
	require.False(t, w.holds("tenant:{t1}:tenant", w.digest(b)))
	require.False(t, w.holds("tenant:{t2}:tenant", w.digest(a)))
	w.add("tenant:{t1}:tenant", w.digest(b)) // re-copied
	require.True(t, w.holds("tenant:{t1}:tenant", w.digest(b)))
	require.False(t, w.holds("tenant:{t1}:tenant", w.digest(a)))
	w.add("tenant:{t3}:tenant", 0) // what was written is unknown
	require.True(t, w.has("tenant:{t3}:tenant"))
	require.False(t, w.holds("tenant:{t3}:tenant", 0))
}
