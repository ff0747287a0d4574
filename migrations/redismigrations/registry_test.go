package redismigrations

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

// createdCopy is a migration 004 that exists only in this test: it sets
// created_copy to created_at (as the migrations before it leave it) where
// the two differ, and refuses a record whose created_copy is "bad". It is
// defined here and only added to the registry the test's set uses: nothing
// else in the package knows it.
var createdCopy = &transform{
	Migration: redisphase.Migration{Name: "004_created_copy", Description: "test only: created_copy = created_at"},
	reads:     []string{"created_at", "created_copy"},
	edit: func(_ Key, f map[string]string) ([]fieldEdit, []report.Issue) {
		at, ok := f["created_at"]
		cp, has := f["created_copy"]
		switch {
		case !ok:
			return nil, nil
		case cp == "bad":
			return nil, []report.Issue{{Field: "created_copy", Reason: "bad copy", Actual: cp}}
		case !has || cp != at:
			return []fieldEdit{{field: "created_copy", value: at}}, nil
		}
		return nil, nil
	},
	final: func(_ Key, f map[string]string) []report.Issue {
		if f["created_copy"] != f["created_at"] {
			return []report.Issue{{Field: "created_copy", Reason: "differs from created_at", Expected: f["created_at"], Actual: f["created_copy"]}}
		}
		return nil
	},
	keeps: func(_ Key, field, _ string, _ bool, _ string) bool { return field == "created_copy" },
}

func withCreatedCopy(c *Set) *Set {
	c.transforms = append(registry[:len(registry):len(registry)], createdCopy)
	return c
}

func lineOf(t *testing.T, lines []report.Migration, name string) report.Migration {
	t.Helper()
	for _, l := range lines {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no line %s in %+v", name, lines)
	return report.Migration{}
}

// TestFourthMigration proves that a migration is one transform plus its
// line in the registry: 004, registered by this test alone, is planned,
// composed after 002 in the same pass as 001-003 (on the copies 001 writes
// and in place, over both of its write paths: a field missing when read and
// one read with another value), counted under its name, failed where it
// refuses a value, applied alone on a rerun, and verified, with verify of
// 001 taking its allowance.
func TestFourthMigration(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	const rfc, ms = "2025-01-02T03:04:05Z", "1735787045000"
	for k, f := range map[string][]any{
		"tenant:t1":                  {"id", "t1", "created_at", rfc},
		"tenant:t1:destination:d1":   {"id", "d1", "created_at", rfc, "created_copy", "stale"},
		"tenant:t1:destinations":     {"d1", `{"id":"d1"}`},
		"tenant:{t2}:tenant":         {"id", "t2", "created_at", rfc},
		"tenant:{t2}:destination:d2": {"id", "d2", "created_at", "1700000000000", "created_copy", "stale", "entity", "destination"},
		"tenant:{t3}:tenant":         {"id", "t3", "created_at", "1700000000000", "created_copy", "bad", "entity", "tenant"},
		"tenant:{t2}:destinations":   {"d2", `{"id":"d2"}`},
		"tenant:{t3}:destination:d3": {"id", "d3"},
	} {
		require.NoError(t, c.HSet(ctx, k, f...).Err())
	}
	p := redisphase.New(c, "", ".outpost:migration_lock", withCreatedCopy(New(c, "")), redisphase.Options{}, nil)
	const m4 = "004_created_copy"

	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	l := lineOf(t, plan, m4)
	require.EqualValues(t, 4, l.Estimate.Value, "t1, d1 (copies), t2, d2 (in place)")
	require.EqualValues(t, 1, l.IssuesTotal)
	require.Equal(t, report.Issue{Key: "tenant:{t3}:tenant", Field: "created_copy", Reason: "bad copy", Actual: "bad"}, l.Issues[0])

	run := &batch.Run{ID: "r-apply", Command: "apply", Events: progress.Nop}
	lines, err := p.Apply(ctx, run)
	require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "%v", err)
	for _, name := range []string{HashTags, Timestamps, Entity} {
		require.Equal(t, report.StateApplied, lineOf(t, lines, name).State, name)
	}
	l = lineOf(t, lines, m4)
	require.Equal(t, report.StateFailed, l.State)
	require.Equal(t, report.Counts{Scanned: 6, Changed: 4, Unchanged: 1, Failed: 1}, *l.Counts)
	require.Equal(t, report.Counts{Scanned: 6, Changed: 3, Unchanged: 3}, *lineOf(t, lines, Timestamps).Counts)
	for k, want := range map[string]string{
		"tenant:{t1}:tenant":         ms,
		"tenant:{t1}:destination:d1": ms,
		"tenant:{t2}:tenant":         ms,
		"tenant:{t2}:destination:d2": "1700000000000",
		"tenant:{t3}:tenant":         "bad",
		"tenant:{t3}:destination:d3": "",
	} {
		require.Equal(t, want, c.HGet(ctx, k, "created_copy").Val(), k)
	}
	require.Equal(t, map[string]string{"id": "t2", "created_at": ms, "created_copy": ms, "entity": "tenant"}, c.HGetAll(ctx, "tenant:{t2}:tenant").Val())
	require.Equal(t, map[string]string{"d1": `{"id":"d1"}`}, c.HGetAll(ctx, "tenant:{t1}:destinations").Val(), "summaries are not the transforms'")

	// Fixed, 004 is applied alone: only hash-tagged records are read.
	require.NoError(t, c.HSet(ctx, "tenant:{t3}:tenant", "created_copy", "1").Err())
	run.ID = "r-apply-2"
	lines, err = p.Apply(ctx, run)
	require.NoError(t, err)
	l = lineOf(t, lines, m4)
	require.Equal(t, report.StateApplied, l.State)
	require.Equal(t, report.Counts{Scanned: 6, Changed: 1, Unchanged: 5}, *l.Counts)
	require.Equal(t, "1700000000000", c.HGet(ctx, "tenant:{t3}:tenant", "created_copy").Val())

	run.ID, run.Command = "r-verify", "verify"
	lines, err = p.Verify(ctx, run)
	require.NoError(t, err)
	require.Equal(t, report.Counts{Scanned: 6, Checked: 6, Passed: 6}, *lineOf(t, lines, m4).Counts)
	require.Equal(t, report.Counts{Scanned: 3, Checked: 3, Passed: 3}, *lineOf(t, lines, HashTags).Counts,
		"the twins' created_copy is 004's allowance")

	// A twin whose created_copy is off fails 004's final form.
	require.NoError(t, c.HSet(ctx, "tenant:{t1}:tenant", "created_copy", "0").Err())
	run.ID = "r-verify-2"
	lines, err = p.Verify(ctx, run)
	require.Error(t, err)
	l = lineOf(t, lines, m4)
	require.EqualValues(t, 1, l.Counts.Failed)
	require.Equal(t, report.Issue{Key: "tenant:{t1}:tenant", Field: "created_copy", Reason: "differs from created_at", Expected: ms, Actual: "0"}, l.Issues[0])
}

// TestRegistryOrder: the set's migrations, their fields read in place and
// the bits of the update script follow the registry's order.
func TestRegistryOrder(t *testing.T) {
	s := withCreatedCopy(New(nil, ""))
	var names []string
	for _, m := range s.Migrations() {
		names = append(names, m.Name)
	}
	require.Equal(t, []string{HashTags, Timestamps, Entity, "004_created_copy"}, names)
	require.Equal(t, []string{"created_at", "updated_at", "entity", "created_copy", "id", "deleted_at"}, s.v1Fields())

	p := s.newPass([]string{Entity, "004_created_copy"}, []string{HashTags, Timestamps})
	require.False(t, p.copy)
	require.Equal(t, []string{Entity, "004_created_copy"}, p.labels())
	require.Len(t, p.twin, 3, "a copy gets 002 (done) too")

	k := Key{Kind: KindTenant, TenantID: "t"}
	read := map[string]string{"created_at": "1", "created_copy": "0"}
	_, outs, edits := compose(k, read, p.edit)
	require.Equal(t, []any{int64(1), "entity", "0", "", "tenant", int64(2), "created_copy", "1", "0", "1"}, updateArgs(read, edits))
	require.Len(t, outs, 2)
	require.True(t, outs[0].changed && outs[1].changed)
}
