package report

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/schemas"
)

func TestEverySchemaCompiles(t *testing.T) {
	for _, n := range schemas.Names() {
		_, err := Schema(n)
		require.NoError(t, err, n)
	}
}

func TestExitCodeTable(t *testing.T) {
	want := map[Code]int{CodeDrift: 3, CodeMigrationFailed: 4, CodeUsage: 64, CodeDataRefused: 65, CodeUnreachable: 69,
		CodeInternal: 70, CodeLockHeld: 75, CodePermission: 77, CodeConfig: 78, CodeInterrupted: 130, CodeTerminated: 143, CodeUnknown: 1}
	for c, n := range want {
		require.Equal(t, n, ExitCode(c), c)
	}
	require.Equal(t, 1, ExitCode("NOPE"))
	// Every code is in the schema's enum, so a report can carry any of them.
	b, _ := schemas.Get("common")
	for _, c := range Codes() {
		require.Contains(t, string(b), `"`+string(c)+`"`)
	}
}

func TestFinishDerivesExitAndValidates(t *testing.T) {
	cases := []struct {
		err      error
		kind     string
		outcome  string
		detailed bool
		exit     int
	}{
		{nil, KindApply, OutcomeApplied, false, 0},
		{nil, KindPlan, OutcomePending, true, 2},
		{nil, KindPlan, OutcomePending, false, 0},
		{fmt.Errorf("wrapped: %w", E(CodeLockHeld, "held by x")), KindApply, "", false, 75},
		{E(CodeConfig, "bad port"), KindApply, "", false, 78},
		{errors.New("boom"), KindApply, "", false, 1},
		{Wrap(CodeTerminated, errors.New("sigterm"), "stopped"), KindApply, OutcomeApplied, false, 143},
	}
	for i, c := range cases {
		r := New(c.kind, strings.ToLower(strings.TrimSuffix(c.kind, "Report")), Tool{Name: "outpost", Version: "test"})
		r.Outcome = c.outcome
		r.Finish(c.err, c.detailed)
		require.Equal(t, c.exit, r.ExitCode, i)
		require.Equal(t, r.ExitCode, r.RC)
		require.Equal(t, c.exit != 0 && c.exit != 2, r.Failed)
		require.NoError(t, Validate(r), i)
	}
}

func TestSchemaRejectsWrongReports(t *testing.T) {
	r := New(KindApply, "apply", Tool{Name: "outpost", Version: "test"})
	r.Outcome = "exploded"
	r.Finish(nil, false)
	require.Error(t, Validate(r))
	b, _ := Marshal(New(KindApply, "apply", Tool{Name: "o", Version: "v"}), nil)
	require.Error(t, ValidateJSON([]byte(strings.Replace(string(b), `"rc"`, `"rcx"`, 1))))
}

func TestScrubber(t *testing.T) {
	var s Scrubber
	s.Add("s3cr3t/pw&x", "ab")
	out := s.String(`postgres://u:s3cr3t%2Fpw%26x@h/db and "s3cr3t/pw&x" ab`)
	require.NotContains(t, out, "s3cr3t")
	require.Contains(t, out, "ab", "short strings are not scrubbed")
}
