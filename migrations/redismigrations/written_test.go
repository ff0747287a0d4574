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
		w.add("tenant:{t" + strconv.Itoa(i) + "}:tenant")
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
		full.add("k" + strconv.Itoa(i))
	}
	require.True(t, full.has("k9"))
	require.False(t, full.has("k15"), "past the capacity a key is not taken")

	var none *written
	none.add("k") // no set when 001 is not in the pass
	require.False(t, none.has("k"))
}
