package report

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIssueKeyNotUTF8: a key that is not valid UTF-8 keeps its bytes in
// key_base64 and is spelled with \xNN in key; a valid one is unchanged.
func TestIssueKeyNotUTF8(t *testing.T) {
	b, err := json.Marshal(Issue{Key: "tenant:a\xff\\b", Reason: "r"})
	require.NoError(t, err)
	require.JSONEq(t, `{"key":"tenant:a\\xff\\\\b","key_base64":"dGVuYW50OmH/XGI=","reason":"r"}`, string(b))
	b, err = json.Marshal(Issue{Key: "tenant:é\\b", Reason: "r"})
	require.NoError(t, err)
	require.JSONEq(t, `{"key":"tenant:é\\b","reason":"r"}`, string(b))
}
