package redismigrations

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWritten: never a false negative; false positives rare up to the
// capacity; past it, keys are no longer taken (so they are read again).
func TestWritten(t *testing.T) {
	w := newWritten()
	const n = 200_000
	for i := range n {
		w.add("tenant:{t" + strconv.Itoa(i) + "}:tenant")
	}
	for i := range n {
		require.True(t, w.has("tenant:{t"+strconv.Itoa(i)+"}:tenant"))
	}
	fp := 0
	for i := range n {
		if w.has("tenant:{u" + strconv.Itoa(i) + "}:tenant") {
			fp++
		}
	}
	require.Less(t, fp, n/1000, "false positives at %d keys", n)

	full := newWritten()
	full.limit = 10
	for i := range 20 {
		full.add("k" + strconv.Itoa(i))
	}
	require.True(t, full.has("k9"))
	require.False(t, full.has("k15"), "past the capacity a key is not taken")

	var none *written
	none.add("k") // no filter when 001 is not in the pass
}
