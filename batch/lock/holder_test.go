package lock

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/report"
)

func TestValueRoundTrip(t *testing.T) {
	h := report.Holder{
		RunID: "r-0123456789abcdef", Host: `h"ost\` + "\n", PID: 4242, Command: `apply "token":1`,
		StartedAt: "2026-01-02T03:04:05.678Z", ToolVersion: "v1.2.3", NomadAllocID: "alloc", NomadJobID: "job",
	}
	pre, post, err := template(h, "nonce1")
	require.NoError(t, err)
	raw := pre + "987654321" + post
	require.True(t, json.Valid([]byte(raw)), raw)
	v, ok := parseValue(raw)
	require.True(t, ok)
	h.Token = 987654321
	require.Equal(t, h, v.Holder)
	require.Equal(t, "nonce1", v.Nonce)

	for _, foreign := range []string{"7d7e4bb6-4c1f-4f3e-9f55-0a8f0c1d2e3f", `{"run_id":"r-1"}`, `{"owner":"outpost-migrate"}`, "{", ""} {
		_, ok := parseValue(foreign)
		require.False(t, ok, foreign)
	}
	l := describeLock("k", `{"run_id":"r-1"}`, "string", 1000, time.Now())
	require.True(t, l.Foreign)
	require.Nil(t, l.Holder)
}

func TestFillHolder(t *testing.T) {
	// Not parallel: the parallel tests, which read the environment through
	// these, start only after this one has restored them.
	env := map[string]string{}
	oldGetenv, oldReadFile := getenv, readFile
	getenv = func(k string) string { return env[k] }
	readFile = func(string) ([]byte, error) { return []byte("migrations\n"), nil }
	t.Cleanup(func() { getenv, readFile = oldGetenv, oldReadFile })
	now := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

	h := fillHolder(holder("r-1"), now)
	require.NotEmpty(t, h.Host)
	require.NotZero(t, h.PID)
	require.Equal(t, "2026-01-02T03:04:05.678Z", h.StartedAt)
	require.Empty(t, h.NomadAllocID+h.NomadJobID+h.K8sPod+h.K8sNamespace)

	env = map[string]string{"NOMAD_ALLOC_ID": "a-1", "NOMAD_JOB_ID": "migrate", "HOSTNAME": "web-0"}
	h = fillHolder(holder("r-1"), now)
	require.Equal(t, "a-1", h.NomadAllocID)
	require.Equal(t, "migrate", h.NomadJobID)
	require.Empty(t, h.K8sPod, "HOSTNAME is a pod name only inside Kubernetes")

	env = map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "migrate-abcde"}
	h = fillHolder(holder("r-1"), now)
	require.Equal(t, "migrate-abcde", h.K8sPod)
	require.Equal(t, "migrations", h.K8sNamespace)

	env = map[string]string{"POD_NAME": "job-x", "POD_NAMESPACE": "prod", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "other"}
	h = fillHolder(holder("r-1"), now)
	require.Equal(t, "job-x", h.K8sPod)
	require.Equal(t, "prod", h.K8sNamespace)

	// What the caller set is kept.
	set := report.Holder{RunID: "r-2", Host: "given", PID: 7, StartedAt: "2020-01-01T00:00:00Z", K8sPod: "p", K8sNamespace: "n"}
	require.Equal(t, set, fillHolder(set, now))
}
