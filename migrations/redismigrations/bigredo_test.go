package redismigrations_test

// Issue #22, big records outside the main pass: the catch-up after it,
// apply --repair and cleanup read records sized first, redo the big ones
// piece by piece and name, per key, the one a server limit keeps from
// being read or written (they stopped with exit 69 naming no key, holding
// the record whole). Every server here runs with
// `client-output-buffer-limit normal 8mb 0 0`: a 12 MiB value cannot be
// read at all; 3000 fields or a 3 MiB value are big but within the limits.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

const (
	bigTS    = "2024-05-06T07:08:09Z"
	limitLow = "normal 8mb 0 0"
)

// wideFields are n field, value pairs (past bigFields for n = 3000).
func wideFields(n int) []any {
	out := make([]any, 0, 2*n)
	for i := range n {
		out = append(out, fmt.Sprintf("w%05d", i), fmt.Sprintf("value-%05d", i))
	}
	return out
}

// blob is a value of n bytes.
func blob(n int) string { return strings.Repeat("0123456789abcdef", n/16) }

// legacyTenant writes legacy tenant id with fields (and its id and
// created_at).
func legacyTenant(t *testing.T, c goredis.UniversalClient, id string, fields ...any) string {
	t.Helper()
	k := "tenant:" + id
	require.NoError(t, c.HSet(context.Background(), k, append([]any{"id", id, "created_at", bigTS}, fields...)...).Err())
	return k
}

// requireTwinExact fails unless legacy tenant id's twin is exactly what
// 001-003 make of the legacy record (expectTwin), read in pieces the test
// client's output buffer takes.
func requireTwinExact(t *testing.T, c goredis.UniversalClient, id string) {
	t.Helper()
	ctx := context.Background()
	legacy, err := c.HGetAll(ctx, "tenant:"+id).Result()
	require.NoError(t, err)
	require.NotEmpty(t, legacy)
	got, err := c.HGetAll(ctx, "tenant:{"+id+"}:tenant").Result()
	require.NoError(t, err)
	want := expectTwin(t, "tenant:"+id, legacy)
	require.Equal(t, len(want), len(got), "twin of %s: field count", id)
	for f, v := range want {
		if got[f] != v {
			require.Equal(t, v, got[f], "twin of %s: field %s", id, f)
		}
	}
}

// requireSeedExact fails when a seeded record differs from what it must
// be (seedtest.Expect), ignoring the records of the test's own ids.
func requireSeedExact(t *testing.T, c goredis.UniversalClient, o seed.Options, after seedtest.ExpectFunc, own ...string) {
	t.Helper()
	diffs, checked, err := seedtest.Check(context.Background(), c, o, after)
	require.NoError(t, err)
	var left []string
	for _, d := range diffs {
		mine := false
		for _, id := range own {
			mine = mine || strings.Contains(d, id)
		}
		if !mine {
			left = append(left, d)
		}
	}
	requireNoDiffs(t, left, fmt.Sprintf("%d seeded keys", checked))
}

// requireNoTemp fails when a temporary key of a piece-by-piece copy is left.
func requireNoTemp(t *testing.T, c goredis.UniversalClient) {
	t.Helper()
	keys, err := c.Keys(context.Background(), "outpost:migrate:big:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// issueKeys are the keys of issues, by key.
func issueKeys(issues []report.Issue) map[string]report.Issue {
	out := map[string]report.Issue{}
	for _, i := range issues {
		out[i.Key] = i
	}
	return out
}

// requireLimitIssue checks that i names field and the output limit, with
// the value's size.
func requireLimitIssue(t *testing.T, i report.Issue, field string, size int) {
	t.Helper()
	require.Equal(t, field, i.Field, "%+v", i)
	require.Contains(t, i.Reason, fmt.Sprintf("%d bytes", size))
	require.Contains(t, i.Reason, "client-output-buffer-limit")
}

// TestCatchUpBigRecords: the catch-up over keys other clients changed
// during apply (called directly, with the changed keys the watch would
// name), past the server's output limit: created during apply, 3000
// fields and one 3 MiB value are copied piece by piece; grown after their
// copy, a record is re-copied piece by piece (its twin still holds what
// the run wrote), one whose twin another client changed too is reported
// and neither is overwritten; a 12 MiB value, on a record created or
// grown, is reported naming key, field, size and limit, and the others go
// on. A second catch-up over the same data ends the same; once the
// records are fixed, it reports nothing.
func TestCatchUpBigRecords(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(30)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	for _, id := range []string{"grown", "grownboth", "grownhuge"} {
		legacyTenant(t, c, id)
	}
	require.NoError(t, c.PExpire(ctx, "tenant:grown", time.Hour).Err())
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", limitLow).Err())
	set := redismigrations.New(c, "")
	_, err = redisphase.New(c, "", ".outpost:migration_lock", set, redisphase.Options{}, nil).Apply(ctx, runFor("apply"))
	require.NoError(t, err)

	// What other clients did during the pass.
	require.NoError(t, c.HSet(ctx, "tenant:grown", append(wideFields(3000), "blob", blob(3<<20))...).Err())
	require.NoError(t, c.HSet(ctx, "tenant:grownboth", wideFields(3000)...).Err())
	require.NoError(t, c.HSet(ctx, "tenant:{grownboth}:tenant", "note", "new-server").Err())
	require.NoError(t, c.HSet(ctx, "tenant:grownhuge", "blob", blob(12<<20)).Err())
	legacyTenant(t, c, "newwide", wideFields(3000)...)
	legacyTenant(t, c, "newfew", "metadata", blob(3<<20))
	legacyTenant(t, c, "newhuge", "metadata", blob(12<<20))
	changed := []string{"tenant:grown", "tenant:grownboth", "tenant:{grownboth}:tenant", "tenant:grownhuge",
		"tenant:newwide", "tenant:newfew", "tenant:newhuge"}

	catchUp := func() (*scan.Tally, map[string]report.Issue) {
		tally := scan.NewTally()
		require.NoError(t, set.CatchUp(ctx, all, nil, changed, tally))
		issues, _ := tally.Issues(redismigrations.HashTags)
		return tally, issueKeys(issues)
	}
	tally, issues := catchUp()
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersRecopied).Changed, "grown")
	require.EqualValues(t, 2, tally.Counts(redismigrations.OthersMigrated).Changed, "newwide, newfew")
	require.EqualValues(t, 3, tally.Counts(redismigrations.OthersReported).Changed)
	require.Len(t, issues, 3)
	requireLimitIssue(t, issues["tenant:grownhuge"], "blob", 12<<20)
	requireLimitIssue(t, issues["tenant:newhuge"], "metadata", 12<<20)
	require.Contains(t, issues["tenant:grownboth"].Reason, "neither is overwritten")
	for _, id := range []string{"grown", "newwide", "newfew"} {
		requireTwinExact(t, c, id)
	}
	require.Equal(t, c.PExpireTime(ctx, "tenant:grown").Val(), c.PExpireTime(ctx, "tenant:{grown}:tenant").Val(), "re-copied with the legacy key's expiry")
	require.Equal(t, "new-server", c.HGet(ctx, "tenant:{grownboth}:tenant", "note").Val(), "kept")
	require.EqualValues(t, 4, c.HLen(ctx, "tenant:{grownboth}:tenant").Val(), "not re-copied")
	require.EqualValues(t, 3, c.HLen(ctx, "tenant:{grownhuge}:tenant").Val(), "as first copied")
	require.Zero(t, c.Exists(ctx, "tenant:{newhuge}:tenant").Val())
	requireNoTemp(t, c)
	requireSeedExact(t, c, o, seedtest.Expect, "grown", "newwide", "newfew", "newhuge")

	// The same data: the same failures; what was done is right now.
	tally, again := catchUp()
	require.Equal(t, keysOfIssues(issues), keysOfIssues(again))
	require.EqualValues(t, 3, tally.Counts(redismigrations.OthersRight).Changed, "grown, newwide, newfew")
	require.EqualValues(t, 3, tally.Counts(redismigrations.OthersReported).Changed)

	// Fixed: the huge values removed, grownboth reconciled (its twin
	// removed: the catch-up copies it).
	require.NoError(t, c.HDel(ctx, "tenant:grownhuge", "blob").Err())
	require.NoError(t, c.HDel(ctx, "tenant:newhuge", "metadata").Err())
	require.NoError(t, c.Del(ctx, "tenant:{grownboth}:tenant").Err())
	tally, issues = catchUp()
	require.Empty(t, issues)
	require.EqualValues(t, 0, tally.Counts(redismigrations.OthersReported).Changed)
	for _, id := range []string{"grown", "grownboth", "grownhuge", "newwide", "newfew", "newhuge"} {
		requireTwinExact(t, c, id)
	}
	requireNoTemp(t, c)
}

func keysOfIssues(m map[string]report.Issue) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestCatchUpMeetsBigRecordDuringApply: the whole apply, with the watch of
// other clients' writes: while the pass copies two records, another client
// grows them after they were read (beforeWrite), one to 3000 fields and a
// 3 MiB value, the other with a 12 MiB value. The catch-up re-copies the
// first piece by piece and names the second (key, field, size, limit):
// exit 4 MIGRATION_FAILED, not retryable, every other record migrated
// exactly. Over the same data the rerun of apply names the record again
// (exit 4); with the huge value removed, it applies and verify passes.
func TestCatchUpMeetsBigRecordDuringApply(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(30)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacyTenant(t, c, "hookgrown")
	legacyTenant(t, c, "hookhuge")
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", limitLow).Err())
	var mu sync.Mutex
	grown := map[string]bool{}
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			switch {
			case k == "tenant:{hookgrown}:tenant" && !grown[k]:
				noErr(t, c.HSet(ctx, "tenant:hookgrown", append(wideFields(3000), "blob", blob(3<<20))...).Err())
			case k == "tenant:{hookhuge}:tenant" && !grown[k]:
				noErr(t, c.HSet(ctx, "tenant:hookhuge", "blob", blob(12<<20)).Err())
			default:
				continue
			}
			grown[k] = true
		}
	})
	lines, err := phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
	restore()
	require.Len(t, grown, 2, "both were grown during the pass")
	require.Error(t, err)
	require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err))
	require.Equal(t, 4, report.ExitCode(report.CodeOf(err)))
	require.False(t, report.Retryable(report.CodeOf(err)))
	l := line(t, lines, redismigrations.HashTags)
	require.Len(t, l.Issues, 1, "%+v", l.Issues)
	require.Equal(t, "tenant:hookhuge", l.Issues[0].Key)
	requireLimitIssue(t, l.Issues[0], "blob", 12<<20)
	require.NotNil(t, l.Others)
	require.Equal(t, "client_tracking", l.Others.Detection, l.Others.Reason)
	require.GreaterOrEqual(t, l.Others.Recopied, int64(1), "hookgrown re-copied: %+v", *l.Others)
	requireTwinExact(t, c, "hookgrown")
	requireSeedExact(t, c, o, seedtest.Expect, "hook")
	requireNoTemp(t, c)

	// The same data: a rerun's pass counts a record whose twin exists as
	// done, but the rerun looks again at what the catch-up reported
	// (TestRerunLooksAgainAtReported), so it names the record again, and
	// records nothing applied (so verify has nothing applied to check);
	// once the record is fixed, the rerun applies and verify passes.
	for range 2 {
		lines, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
		require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "%v", err)
		l := line(t, lines, redismigrations.HashTags)
		require.Len(t, l.Issues, 1, "%+v", l.Issues)
		require.Equal(t, "tenant:hookhuge", l.Issues[0].Key)
		requireLimitIssue(t, l.Issues[0], "blob", 12<<20)
	}

	require.NoError(t, c.HDel(ctx, "tenant:hookhuge", "blob").Err())
	lines, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Equal(t, report.StateApplied, line(t, lines, redismigrations.HashTags).State)
	_, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Verify(ctx, runFor("verify"))
	require.NoError(t, err)
	requireTwinExact(t, c, "hookhuge")
	requireTwinExact(t, c, "hookgrown")
}

// TestRepairBigRecords: apply --repair over big records past the server's
// output limit: a twin that differs is re-copied piece by piece (3000
// fields; one 3 MiB value), a missing one is created, one that is not a
// hash is left alone and reported; a twin another
// client writes while it is being re-copied (beforeWrite, between the
// compare and the transaction) is kept and the record reported; a record
// with a 12 MiB value is named (key, field, size, limit) and the rest goes
// on. The run ends DRIFT (exit 3, not retryable) naming both; the rerun
// re-copies the first and names the second again; with the value removed
// the rerun completes and every twin is exact.
func TestRepairBigRecords(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", limitLow).Err())
	o := smallSeed(30)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacyTenant(t, c, "rwide", wideFields(3000)...)
	legacyTenant(t, c, "rfew", "metadata", blob(3<<20))
	legacyTenant(t, c, "rgone", wideFields(3000)...)
	require.NoError(t, c.PExpire(ctx, "tenant:rgone", time.Hour).Err())
	legacyTenant(t, c, "rrace", wideFields(3000)...)
	legacyTenant(t, c, "rtype", wideFields(3000)...)
	_, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)

	require.NoError(t, c.HSet(ctx, "tenant:{rwide}:tenant", "w00007", "wrong").Err())
	require.NoError(t, c.HSet(ctx, "tenant:{rfew}:tenant", "metadata", "short").Err())
	require.NoError(t, c.Del(ctx, "tenant:{rgone}:tenant").Err())
	require.NoError(t, c.HSet(ctx, "tenant:{rrace}:tenant", "w00001", "wrong").Err())
	require.NoError(t, c.Del(ctx, "tenant:{rtype}:tenant").Err())
	require.NoError(t, c.Set(ctx, "tenant:{rtype}:tenant", "not a hash", 0).Err())
	legacyTenant(t, c, "rhuge", "metadata", blob(12<<20))
	var once sync.Once
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		if len(keys) == 1 && keys[0] == "tenant:{rrace}:tenant" {
			once.Do(func() { noErr(t, c.HSet(ctx, keys[0], "note", "new-server").Err()) })
		}
	})
	repair := func() ([]report.Migration, error) {
		run := runFor("apply")
		run.Repair = true
		return phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, run)
	}
	lines, err := repair()
	restore()
	require.Equal(t, report.CodeDrift, report.CodeOf(err), "%v", err)
	require.Equal(t, 3, report.ExitCode(report.CodeOf(err)))
	require.False(t, report.Retryable(report.CodeOf(err)))
	l := line(t, lines, redismigrations.HashTags)
	require.Contains(t, l.Reason, "3 records redone")
	require.Contains(t, l.Reason, "3 could not be redone")
	issues := issueKeys(l.Issues)
	require.Len(t, issues, 3, "%+v", l.Issues)
	require.Contains(t, issues["tenant:rtype"].Reason, "not a hash")
	require.Equal(t, "not a hash", c.Get(ctx, "tenant:{rtype}:tenant").Val(), "never overwritten")
	requireLimitIssue(t, issues["tenant:rhuge"], "metadata", 12<<20)
	require.Contains(t, issues["tenant:rhuge"].Reason, "twin missing")
	require.Contains(t, issues, "tenant:rrace")
	require.Equal(t, "new-server", c.HGet(ctx, "tenant:{rrace}:tenant", "note").Val(), "not overwritten")
	for _, id := range []string{"rwide", "rfew", "rgone"} {
		requireTwinExact(t, c, id)
	}
	require.Equal(t, c.PExpireTime(ctx, "tenant:rgone").Val(), c.PExpireTime(ctx, "tenant:{rgone}:tenant").Val(), "the legacy key's expiry")
	require.Equal(t, time.Duration(-1), c.PTTL(ctx, "tenant:{rwide}:tenant").Val(), "none, as the legacy key")
	requireSeedExact(t, c, o, seedtest.Expect, "rwide", "rfew", "rgone", "rrace", "rhuge", "rtype")
	requireNoTemp(t, c)

	lines, err = repair()
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	issues = issueKeys(line(t, lines, redismigrations.HashTags).Issues)
	require.Len(t, issues, 2)
	requireLimitIssue(t, issues["tenant:rhuge"], "metadata", 12<<20)
	require.Contains(t, issues, "tenant:rtype")
	requireTwinExact(t, c, "rrace")

	require.NoError(t, c.HDel(ctx, "tenant:rhuge", "metadata").Err())
	require.NoError(t, c.Del(ctx, "tenant:{rtype}:tenant").Err())
	_, err = repair()
	require.NoError(t, err)
	for _, id := range []string{"rwide", "rfew", "rgone", "rrace", "rhuge", "rtype"} {
		requireTwinExact(t, c, id)
	}
	requireNoTemp(t, c)
}

// TestCleanupBigRecords: cleanup over big legacy records past the server's
// output limit (applied with the limit off): 3000 fields or one 3 MiB
// value, verified piece by piece, are deleted; one changed between its
// compare and its delete (beforeWrite) is kept and reported; one with a 12
// MiB value cannot be compared: kept, named (key, field, size, limit), the
// rest goes on. DRIFT, not retryable; the rerun names the 12 MiB one
// again; with the limit raised and the changed one reconciled, the rerun
// completes: the keyspace is the current layout.
func TestCleanupBigRecords(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(30)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacyTenant(t, c, "cwide", wideFields(3000)...)
	legacyTenant(t, c, "cfew", "metadata", blob(3<<20))
	legacyTenant(t, c, "crace", wideFields(3000)...)
	legacyTenant(t, c, "chuge", "metadata", blob(12<<20))
	_, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", limitLow).Err())

	var once sync.Once
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		if len(keys) == 1 && keys[0] == "tenant:crace" {
			once.Do(func() { noErr(t, c.HSet(ctx, keys[0], "note", "old-server").Err()) })
		}
	})
	cleanup := func() ([]report.Migration, error) {
		return phaseFor(c, "", redisphase.Options{ScanCount: 50}).Cleanup(ctx, runFor("cleanup"))
	}
	lines, err := cleanup()
	restore()
	require.Equal(t, report.CodeDrift, report.CodeOf(err), "%v", err)
	require.Equal(t, 3, report.ExitCode(report.CodeOf(err)))
	require.False(t, report.Retryable(report.CodeOf(err)))
	l := line(t, lines, redismigrations.HashTags)
	issues := issueKeys(l.Issues)
	require.Len(t, issues, 2, "%+v", l.Issues)
	requireLimitIssue(t, issues["tenant:chuge"], "metadata", 12<<20)
	require.Contains(t, issues["tenant:crace"].Reason, "changed after it was compared")
	require.EqualValues(t, 2, l.Counts.Failed)
	for _, k := range []string{"tenant:cwide", "tenant:cfew"} {
		require.Zero(t, c.Exists(ctx, k).Val(), "%s deleted", k)
	}
	require.EqualValues(t, 1, c.Exists(ctx, "tenant:crace").Val())
	require.EqualValues(t, 12<<20, c.HStrLen(ctx, "tenant:chuge", "metadata").Val(), "kept")
	requireNoTemp(t, c)

	lines, err = cleanup()
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	issues = issueKeys(line(t, lines, redismigrations.HashTags).Issues)
	require.Len(t, issues, 2)
	requireLimitIssue(t, issues["tenant:chuge"], "metadata", 12<<20)
	require.Equal(t, "note", issues["tenant:crace"].Field, "its extra field, found piece by piece")

	require.NoError(t, c.ConfigSet(ctx, "client-output-buffer-limit", "normal 0 0 0").Err())
	require.NoError(t, c.HDel(ctx, "tenant:crace", "note").Err())
	_, err = cleanup()
	require.NoError(t, err)
	for _, id := range []string{"cwide", "cfew", "crace", "chuge"} {
		require.Zero(t, c.Exists(ctx, "tenant:"+id).Val())
		require.EqualValues(t, 1, c.Exists(ctx, "tenant:{"+id+"}:tenant").Val())
	}
	requireSeedExact(t, c, o, seedtest.ExpectAfterCleanup, "cwide", "cfew", "crace", "chuge")
}

// TestBigRecordsCluster: on a 3-master cluster the catch-up, apply
// --repair and cleanup handle big records piece by piece too (a WATCH and
// a transaction in the twin's or the record's slot; the temporary key
// shares the twin's hash tag): grown records re-copied by the catch-up,
// damaged or missing twins redone by the repair, the records deleted by
// cleanup, every twin exact and no temporary key left on any master.
func TestBigRecordsCluster(t *testing.T) {
	ctx := context.Background()
	c := servertest.RedisCluster(t).Client(t)
	ids := []string{"kwide", "kfew", "kgrown", "kgone"}
	for _, id := range ids[:2] {
		legacyTenant(t, c, id)
	}
	legacyTenant(t, c, "kgrown")
	legacyTenant(t, c, "kgone", wideFields(3000)...)
	set := redismigrations.New(c, "")
	_, err := redisphase.New(c, "", ".outpost:migration_lock", set, redisphase.Options{}, nil).Apply(ctx, runFor("apply"))
	require.NoError(t, err)

	require.NoError(t, c.HSet(ctx, "tenant:kwide", wideFields(3000)...).Err())
	require.NoError(t, c.HSet(ctx, "tenant:kfew", "metadata", blob(3<<20)).Err())
	tally := scan.NewTally()
	require.NoError(t, set.CatchUp(ctx, all, nil, []string{"tenant:kwide", "tenant:kfew"}, tally))
	require.EqualValues(t, 2, tally.Counts(redismigrations.OthersRecopied).Changed)
	requireTwinExact(t, c, "kwide")
	requireTwinExact(t, c, "kfew")

	require.NoError(t, c.HSet(ctx, "tenant:kgrown", wideFields(3000)...).Err())
	require.NoError(t, c.Del(ctx, "tenant:{kgone}:tenant").Err())
	require.NoError(t, c.HSet(ctx, "tenant:{kwide}:tenant", "w00009", "wrong").Err())
	run := runFor("apply")
	run.Repair = true
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, run)
	require.NoError(t, err)
	require.Contains(t, line(t, lines, redismigrations.HashTags).Reason, "3 records redone")
	for _, id := range ids {
		requireTwinExact(t, c, id)
	}

	_, err = phaseFor(c, "", redisphase.Options{}).Cleanup(ctx, runFor("cleanup"))
	require.NoError(t, err)
	for _, id := range ids {
		require.Zero(t, c.Exists(ctx, "tenant:"+id).Val())
		require.EqualValues(t, 1, c.Exists(ctx, "tenant:{"+id+"}:tenant").Val())
	}
	require.NoError(t, c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		keys, err := m.Keys(ctx, "outpost:migrate:big:*").Result()
		if err == nil && len(keys) > 0 {
			err = fmt.Errorf("%s: temporary keys left: %v", m.Options().Addr, keys)
		}
		return err
	}))
}

// TestLimitsUnknownBigValue: a server whose limits the run cannot read (an
// ACL user without CONFIG, as the README's minimal user) and whose output
// buffer for normal clients is 8 MiB: a record with a 12 MiB value is
// copied piece by piece, the server closes the connection while sending
// that value alone, and the record fails on its own, naming the key, the
// field, its size and why (it stopped with 69, retryable, on every rerun):
// exit 4, not retryable, every other record exact, the same on the rerun;
// with the value gone the rerun applies.
func TestLimitsUnknownBigValue(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithConfig("client-output-buffer-limit", "normal", "8mb", "0", "0"),
		servertest.WithACLUser("migrator", "pw", "~tenant:*", "~outpost:*", "~.outpost:*", "~{.outpost:*",
			"-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction", "+info", "+ping"))
	c := srv.Client(t)
	require.Error(t, c.ConfigGet(ctx, "proto-max-bulk-len").Err(), "CONFIG is denied")
	o := smallSeed(30)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacyTenant(t, c, "ulimit", "metadata", blob(12<<20))
	for attempt := 1; attempt <= 2; attempt++ {
		lines, err := phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
		require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "attempt %d: %v", attempt, err)
		require.Equal(t, 4, report.ExitCode(report.CodeOf(err)))
		require.False(t, report.Retryable(report.CodeOf(err)))
		l := line(t, lines, redismigrations.HashTags)
		require.Len(t, l.Issues, 1, "%+v %v", lines, err)
		i := l.Issues[0]
		require.Equal(t, "tenant:ulimit", i.Key)
		require.Equal(t, "metadata", i.Field)
		require.Contains(t, i.Reason, fmt.Sprintf("%d bytes: the server closed the connection", 12<<20))
		require.Contains(t, i.Reason, "limits could not be read")
		require.Zero(t, c.Exists(ctx, "tenant:{ulimit}:tenant").Val())
		requireSeedExact(t, c, o, seedtest.Expect, "ulimit")
		requireNoTemp(t, c)
	}
	require.NoError(t, c.HDel(ctx, "tenant:ulimit", "metadata").Err())
	_, err = phaseFor(c, "", redisphase.Options{ScanCount: 50}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	requireTwinExact(t, c, "ulimit")
}
