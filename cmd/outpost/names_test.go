package main

// Issue #22, names: an issue about a key whose name is not valid UTF-8
// carries the exact name (key_base64, and key with \xNN escapes), not
// U+FFFD.

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func TestNamesNotUTF8InIssues(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	const key = "tenant:bad\xff\xfe\\id"
	require.NoError(t, c.HSet(context.Background(), key, "id", "bad", "created_at", "not a time").Err())

	r := run(t, redisEnv(srv), "migrate", "plan", "--redis-only")
	require.Equal(t, 0, r.code, r.stdout)
	require.NotContains(t, r.stdout, "\ufffd", "no replacement characters")
	var found []map[string]any
	for _, m := range r.rep["migrations"].([]any) {
		issues, _ := m.(map[string]any)["issues"].([]any)
		for _, i := range issues {
			found = append(found, i.(map[string]any))
		}
	}
	require.NotEmpty(t, found, r.stdout)
	for _, i := range found {
		b, err := base64.StdEncoding.DecodeString(i["key_base64"].(string))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(b), "tenant:"), "%q", b)
		require.Contains(t, string(b), "bad\xff\xfe\\id", "the exact bytes")
		require.Contains(t, i["key"], `bad\xff\xfe\\id`, "readable and unambiguous")
	}
}
