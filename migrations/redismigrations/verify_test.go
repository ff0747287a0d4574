package redismigrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/report"
)

// TestPlanSampled: on a keyspace above CountLimit, plan estimates from a
// bounded sample and says so.
func TestPlanSampled(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(1500)
	o.UnrelatedKeys = 2000
	st, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	legacy := float64(st.Keys - st.Unrelated)
	p := phaseFor(c, "", redisphase.Options{CountLimit: 1000, SampleSize: 3000})
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	e := line(t, plan, redismigrations.HashTags).Estimate
	require.Equal(t, "sampled", e.Method)
	require.GreaterOrEqual(t, e.Sampled, int64(3000))
	require.Less(t, e.Sampled, int64(st.Keys), "a bounded sample, not the whole keyspace")
	require.InDelta(t, legacy, float64(e.Value), legacy*0.25, "estimate %d for %v keys: %s", e.Value, legacy, e.Note)
	require.Contains(t, e.Note, "sampled")
}

// TestVerifyReportsEveryKind checks verify's exact counts and issues on a
// migrated fixture after hand edits of every kind.
func TestVerifyReportsEveryKind(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	f := loadFixture(t)
	seedFixture(t, ctx, c, f.Before)
	p := phaseFor(c, "", redisphase.Options{})
	_, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)

	require.NoError(t, c.HSet(ctx, "tenant:{t1}:destination:d1", "credentials", "\x00tampered\xff").Err())    // binary field differs
	require.NoError(t, c.Persist(ctx, "tenant:{t3}:tenant").Err())                                            // TTL lost
	require.NoError(t, c.Del(ctx, "tenant:{t2}:destination:dest:9").Err())                                    // twin missing
	require.NoError(t, c.HSet(ctx, "tenant:{org:acme:7}:tenant", "updated_at", "2025-01-01T00:00:00Z").Err()) // extra field, RFC3339 left
	require.NoError(t, c.HDel(ctx, "tenant:{t1}:destination:d2", "entity").Err())                             // entity missing

	v, err := p.Verify(ctx, runFor("verify"))
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	byKey := func(l report.Migration) map[string]report.Issue {
		out := map[string]report.Issue{}
		for _, i := range l.Issues {
			out[i.Key] = i
		}
		return out
	}
	l := line(t, v, redismigrations.HashTags)
	require.EqualValues(t, report.Counts{Checked: 9, Passed: 5, Failed: 4, Scanned: 9}, *l.Counts)
	is := byKey(l)
	require.Len(t, is, 4)
	require.Equal(t, "credentials", is["tenant:t1:destination:d1"].Field)
	require.NotContains(t, is["tenant:t1:destination:d1"].Actual, "tampered", "binary values are shown as a digest")
	require.Contains(t, is["tenant:t1:destination:d1"].Actual, "sha256")
	require.Equal(t, "ttl", is["tenant:t3"].Field)
	require.Equal(t, "twin missing", is["tenant:t2:destination:dest:9"].Reason)
	require.Equal(t, "updated_at", is["tenant:org:acme:7"].Field)
	l = line(t, v, redismigrations.Timestamps)
	require.EqualValues(t, report.Counts{Checked: 7, Passed: 6, Failed: 1, Scanned: 7}, *l.Counts)
	require.Equal(t, "tenant:{org:acme:7}:tenant", l.Issues[0].Key)
	l = line(t, v, redismigrations.Entity)
	require.EqualValues(t, report.Counts{Checked: 7, Passed: 6, Failed: 1, Scanned: 7}, *l.Counts, "8 twins, one deleted")
	require.Equal(t, "tenant:{t1}:destination:d2", l.Issues[0].Key)

	// A sample checks fewer keys and says so.
	run := runFor("verify")
	run.Sample = 3
	v, _ = p.Verify(ctx, run)
	l = line(t, v, redismigrations.HashTags)
	require.Less(t, l.Counts.Checked, int64(9))
	require.Contains(t, l.Reason, "spot check")
}

// TestExistingTwinNotOverwritten: a twin that exists before apply (written
// by the new server) is never overwritten by the copy; 002/003 still bring
// it to the current layout; verify names the difference and cleanup keeps
// the legacy key.
func TestExistingTwinNotOverwritten(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z", "metadata", `{"plan":"free"}`).Err())
	require.NoError(t, c.HSet(ctx, "tenant:{t1}:tenant", "id", "t1", "created_at", "2025-01-02T03:04:05Z", "metadata", `{"plan":"pro"}`).Err())
	p := phaseFor(c, "", redisphase.Options{})
	lines, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	c001 := line(t, lines, redismigrations.HashTags).Counts
	require.EqualValues(t, 0, c001.Changed)
	require.EqualValues(t, 1, c001.Unchanged)
	got, err := c.HGetAll(ctx, "tenant:{t1}:tenant").Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "t1", "created_at": "1735787045000", "metadata": `{"plan":"pro"}`, "entity": "tenant"}, got)

	v, err := p.Verify(ctx, runFor("verify"))
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	l := line(t, v, redismigrations.HashTags)
	require.Equal(t, "metadata", l.Issues[0].Field)
	require.NotContains(t, l.Issues[0].Expected, "free", "metadata is shown as a digest")
	_, err = p.Cleanup(ctx, runFor("cleanup"))
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	require.EqualValues(t, 1, c.Exists(ctx, "tenant:t1").Val(), "kept: its twin does not verify")
}
