package redismigrations_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

var all = []string{redismigrations.HashTags, redismigrations.Timestamps, redismigrations.Entity}

// recorder keeps the progress events of a run.
type recorder struct {
	mu     sync.Mutex
	events []progress.Event
}

func (r *recorder) Emit(e progress.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if string(e.Event) == kind {
			n++
		}
	}
	return n
}

func smallSeed(tenants int) seed.Options {
	o := seed.DefaultOptions()
	o.Tenants = tenants
	o.Seed = 11
	o.SoftDeletedRatio = 0.1
	o.ColonIDRatio = 0.2
	o.MissingFromSummaryRatio = 0.1
	o.UnrelatedKeys = 40
	return o
}

func TestFreshInstallOnePass(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	// Other Outpost keys, no tenant key at all.
	o := smallSeed(0)
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)

	p := phaseFor(c, "", redisphase.Options{})
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	for _, l := range plan {
		require.Equal(t, report.State("pending"), l.State)
		require.Zero(t, l.Estimate.Value, l.Name)
	}
	rec := &recorder{}
	run := runFor("apply")
	run.Events = rec
	start := time.Now()
	lines, err := p.Apply(ctx, run)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	for _, name := range all {
		l := line(t, lines, name)
		require.Equal(t, report.State("applied"), l.State)
		require.Equal(t, report.Counts{}, *l.Counts)
		requireApplied(t, ctx, c, "", name)
	}
	require.Equal(t, 1, rec.count(string(progress.PassStarted)), "one pass, no confirming pass")
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "fresh install")
}

// TestTTLs: a v0 key with a TTL keeps a TTL (no longer than what remained)
// on its twin; one without has none on its twin.
func TestTTLs(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.HSet(ctx, "tenant:t1:destination:soon", "deleted_at", "2025-08-05T00:00:00Z").Err())
	require.NoError(t, c.PExpire(ctx, "tenant:t1:destination:soon", 30*time.Second).Err())
	require.NoError(t, c.HSet(ctx, "tenant:t1:destination:week", "id", "week", "type", "webhook", "created_at", "2025-01-02T03:04:05Z", "deleted_at", "2025-08-05T00:00:00Z").Err())
	require.NoError(t, c.PExpire(ctx, "tenant:t1:destination:week", 7*24*time.Hour).Err())

	_, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	ttl := func(k string) time.Duration {
		d, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		return d
	}
	require.Less(t, ttl("tenant:{t1}:tenant"), time.Duration(0), "no TTL on the v0 key, none on the twin")
	soon := ttl("tenant:{t1}:destination:soon")
	require.Positive(t, soon)
	require.LessOrEqual(t, soon, 30*time.Second)
	week := ttl("tenant:{t1}:destination:week")
	require.Greater(t, week, 7*24*time.Hour-time.Minute)
	require.LessOrEqual(t, week, 7*24*time.Hour)
	// 002/003 wrote the soft-deleted twin in its final form, TTL kept.
	got, err := c.HGetAll(ctx, "tenant:{t1}:destination:week").Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "week", "type": "webhook", "created_at": "1735787045000", "deleted_at": "2025-08-05T00:00:00Z", "entity": "destination"}, got)

	// A v1 record with a TTL edited in place by 002/003 keeps it.
	require.NoError(t, c.HSet(ctx, "tenant:{t2}:tenant", "id", "t2", "created_at", "2025-01-02T03:04:05Z", "deleted_at", "x").Err())
	require.NoError(t, c.PExpire(ctx, "tenant:{t2}:tenant", time.Hour).Err())
	for _, name := range []string{redismigrations.Timestamps, redismigrations.Entity} {
		require.NoError(t, c.Del(ctx, "outpost:migration:"+name).Err())
	}
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.EqualValues(t, 1, line(t, lines, redismigrations.Timestamps).Counts.Changed)
	require.Equal(t, "1735787045000", c.HGet(ctx, "tenant:{t2}:tenant", "created_at").Val())
	require.Greater(t, ttl("tenant:{t2}:tenant"), 59*time.Minute)
}

// TestUpdateScriptCompareAndSet calls the update script directly, as the
// apply step would after reading a value that has changed since.
func TestUpdateScriptCompareAndSet(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	const key = "tenant:{t1}:tenant"
	const read, newer = "2025-01-02T03:04:05Z", "2025-06-01T00:00:00.250Z"
	require.NoError(t, c.HSet(ctx, key, "id", "t1", "created_at", newer).Err())
	require.NoError(t, c.PExpire(ctx, key, time.Hour).Err())

	// Stale: the script expects the value read before the change.
	n, err := redismigrations.UpdateScript.Run(ctx, c, []string{key}, "tenant", "created_at", read, "1735787045000").Int64()
	require.NoError(t, err)
	require.EqualValues(t, -2, n)
	got, err := c.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "t1", "created_at": newer}, got, "nothing written, not even entity")

	// Current: converted, entity set, TTL kept.
	n, err = redismigrations.UpdateScript.Run(ctx, c, []string{key}, "tenant", "created_at", newer, "1748736000250").Int64()
	require.NoError(t, err)
	require.EqualValues(t, 3, n, "timestamps and entity written")
	got, err = c.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "t1", "created_at": "1748736000250", "entity": "tenant"}, got)
	require.Positive(t, c.PTTL(ctx, key).Val())

	// A field that was absent when read and appeared since: stale too.
	n, err = redismigrations.UpdateScript.Run(ctx, c, []string{key}, "", "updated_at", read, "1735787045000").Int64()
	require.NoError(t, err)
	require.EqualValues(t, -2, n)

	// Gone between read and write (expired, deleted): not re-created.
	require.NoError(t, c.Del(ctx, key).Err())
	n, err = redismigrations.UpdateScript.Run(ctx, c, []string{key}, "tenant", "created_at", newer, "1748736000250").Int64()
	require.NoError(t, err)
	require.EqualValues(t, -1, n)
	require.EqualValues(t, 0, c.Exists(ctx, key).Val(), "no stub re-created")

	// The copy never overwrites a twin that exists.
	require.NoError(t, c.HSet(ctx, key, "id", "t1", "created_at", "1").Err())
	n, err = redismigrations.CopyScript.Run(ctx, c, []string{key}, 0, "id", "t1", "created_at", "2").Int64()
	require.NoError(t, err)
	require.EqualValues(t, 0, n)
	require.Equal(t, "1", c.HGet(ctx, key, "created_at").Val())

	// Cleanup deletes a legacy key only if it holds exactly what was compared.
	require.NoError(t, c.HSet(ctx, "tenant:t1", "id", "t1", "created_at", read).Err())
	n, err = redismigrations.DeleteIfSameScript.Run(ctx, c, []string{"tenant:t1"}, "id", "t1").Int64()
	require.NoError(t, err)
	require.EqualValues(t, 0, n, "a field more than compared: kept")
	n, err = redismigrations.DeleteIfSameScript.Run(ctx, c, []string{"tenant:t1"}, "id", "t1", "created_at", newer).Int64()
	require.NoError(t, err)
	require.EqualValues(t, 0, n, "a value other than compared: kept")
	n, err = redismigrations.DeleteIfSameScript.Run(ctx, c, []string{"tenant:t1"}, "id", "t1", "created_at", read).Int64()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.EqualValues(t, 0, c.Exists(ctx, "tenant:t1").Val())
}

// TestChangeBetweenReadAndWrite drives apply with records changed and
// deleted between the step's read and its write: the newer value is what
// is kept (converted), the deleted record is not re-created.
func TestChangeBetweenReadAndWrite(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(50)
	o.Layout = seed.LayoutV1
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	var changedKey, deletedKey string
	require.NoError(t, seed.ForEachTenant(o, func(tn seed.Tenant) error {
		switch {
		case tn.Deleted:
		case changedKey == "":
			changedKey = tn.Key.Name
		case deletedKey == "":
			deletedKey = tn.Key.Name
		}
		return nil
	}))
	const newer = "2025-06-01T00:00:00.250+02:00"
	var calls atomic.Int32
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		for _, k := range keys {
			switch k {
			case changedKey:
				if calls.Add(1) == 1 {
					noErr(t, c.HSet(ctx, k, "created_at", newer).Err())
				}
			case deletedKey:
				noErr(t, c.Del(ctx, k).Err())
			}
		}
	})
	defer restore()
	lines, err := phaseFor(c, "", redisphase.Options{ScanCount: 20}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.EqualValues(t, 2, calls.Load(), "the changed key was about to be written twice: the stale write refused, then the retry")
	l002 := line(t, lines, redismigrations.Timestamps)
	require.Equal(t, report.State("applied"), l002.State)
	require.EqualValues(t, 1, l002.Counts.Skipped, "the deleted key")
	require.Equal(t, "1748728800250", c.HGet(ctx, changedKey, "created_at").Val(), "the newer instant is kept")
	require.EqualValues(t, 0, c.Exists(ctx, deletedKey).Val(), "not re-created")
	require.Equal(t, "tenant", c.HGet(ctx, changedKey, "entity").Val())
	restore()

	// A record that changes at every attempt is reported, never overwritten
	// with a stale value.
	require.NoError(t, c.Del(ctx, "outpost:migration:"+redismigrations.Timestamps, "outpost:migration:"+redismigrations.Entity).Err())
	require.NoError(t, c.HSet(ctx, changedKey, "created_at", newer).Err())
	var n atomic.Int64
	restore = redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		for _, k := range keys {
			if k == changedKey {
				v := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n.Add(1)) * time.Second).Format(time.RFC3339)
				noErr(t, c.HSet(ctx, k, "created_at", v).Err())
			}
		}
	})
	defer restore()
	lines, err = phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.Error(t, err)
	require.Equal(t, report.ExitFailed, report.ExitCode(report.CodeOf(err)))
	l002 = line(t, lines, redismigrations.Timestamps)
	require.Equal(t, report.State("failed"), l002.State)
	require.EqualValues(t, "", c.HGet(ctx, "outpost:migration:"+redismigrations.Timestamps, "status").Val())
	last := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n.Load()) * time.Second).Format(time.RFC3339)
	require.Equal(t, last, c.HGet(ctx, changedKey, "created_at").Val(), "the last value written by the other writer stands")
}

// TestNewerValueAfterTargetStop: 001 alone (--target), then a twin changes
// (a new RFC3339 value, another to Unix ms), then 002 and 003: the newer
// values are what is kept; verify then names exactly the twins that
// differ from their legacy keys.
func TestNewerValueAfterTargetStop(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	f := loadFixture(t)
	seedFixture(t, ctx, c, f.Before)
	p := phaseFor(c, "", redisphase.Options{})
	run := runFor("apply")
	run.Target = "redis/001_hash_tags"
	lines, err := p.Apply(ctx, run)
	require.NoError(t, err)
	require.Equal(t, report.State("applied"), line(t, lines, redismigrations.HashTags).State)
	require.Equal(t, report.State("pending"), line(t, lines, redismigrations.Timestamps).State)
	require.Equal(t, "2025-08-01T10:30:00.123456789+07:00", c.HGet(ctx, "tenant:{t1}:tenant", "created_at").Val(), "001 alone copies as is")

	require.NoError(t, c.HSet(ctx, "tenant:{t1}:tenant", "created_at", "2025-09-09T09:09:09.999+00:00").Err())
	require.NoError(t, c.HSet(ctx, "tenant:{t2}:tenant", "created_at", "1767225600000").Err())
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	// t1, t2 (updated_at), org:acme:7, d1, d2, dest:9: six records with RFC3339.
	require.EqualValues(t, 6, line(t, plan, redismigrations.Timestamps).Estimate.Value)

	lines, err = p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Equal(t, report.State("applied"), line(t, lines, redismigrations.Timestamps).State)
	require.Equal(t, "1757408949999", c.HGet(ctx, "tenant:{t1}:tenant", "created_at").Val())
	require.Equal(t, "1767225600000", c.HGet(ctx, "tenant:{t2}:tenant", "created_at").Val())

	v, err := p.Verify(ctx, runFor("verify"))
	require.Equal(t, report.ExitDrift, report.ExitCode(report.CodeOf(err)))
	l := line(t, v, redismigrations.HashTags)
	require.Equal(t, report.State("drift"), l.State)
	require.EqualValues(t, 9, l.Counts.Checked)
	require.EqualValues(t, 7, l.Counts.Passed)
	require.EqualValues(t, 2, l.Counts.Failed)
	require.EqualValues(t, 2, l.IssuesTotal)
	keys := []string{l.Issues[0].Key, l.Issues[1].Key}
	require.ElementsMatch(t, []string{"tenant:t1", "tenant:t2"}, keys)
	for _, i := range l.Issues {
		require.Equal(t, "created_at", i.Field)
		require.Equal(t, "field differs", i.Reason)
	}
	require.Equal(t, report.State("verified"), line(t, v, redismigrations.Timestamps).State)
	require.Equal(t, report.State("verified"), line(t, v, redismigrations.Entity).State)
}

// TestCorruptedLegacyData: keys of the wrong type, a summary that is not
// JSON, timestamps that parse as nothing: each a per-key issue, apply
// exits 4 and marks nothing it could not finish, nothing is overwritten,
// the rest is migrated; a 50k-field hash copies correctly. Once the keys
// are fixed, a rerun finishes.
func TestCorruptedLegacyData(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(200)
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)

	require.NoError(t, c.RPush(ctx, "tenant:badlist", "a", "b").Err())
	require.NoError(t, c.Set(ctx, "tenant:badstr", "oops", 0).Err())
	require.NoError(t, c.Set(ctx, "tenant:{badv1}:tenant", "oops", 0).Err())
	require.NoError(t, c.HSet(ctx, "tenant:tj", "id", "tj", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.HSet(ctx, "tenant:tj:destinations", "d1", "{not json").Err())
	require.NoError(t, c.HSet(ctx, "tenant:tbad", "id", "tbad", "created_at", "yesterday").Err())
	require.NoError(t, c.HSet(ctx, "tenant:tbad:destination:d1", "id", "d1", "type", "webhook", "created_at", "2025-01-02T03:04:05Z", "updated_at", "2025-13-45T00:00:00Z").Err())
	big := make([]any, 0, 100_000)
	for i := 0; i < 50_000; i++ {
		did := "des_" + strconv.Itoa(i)
		big = append(big, did, `{"id":"`+did+`","type":"webhook","topics":["*"],"disabled":false}`)
	}
	require.NoError(t, c.HSet(ctx, "tenant:tbig", "id", "tbig", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.HSet(ctx, "tenant:tbig:destinations", big...).Err())
	before := dumpLegacy(t, ctx, c)

	p := phaseFor(c, "", redisphase.Options{})
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, line(t, plan, redismigrations.HashTags).IssuesTotal, "plan lists the keys apply will refuse")

	lines, err := p.Apply(ctx, runFor("apply"))
	require.Error(t, err)
	require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err))
	require.Equal(t, report.ExitFailed, report.ExitCode(report.CodeOf(err)))

	issueKeys := func(l report.Migration) []string {
		var out []string
		for _, i := range l.Issues {
			out = append(out, i.Key)
		}
		return out
	}
	l001 := line(t, lines, redismigrations.HashTags)
	require.Equal(t, report.State("failed"), l001.State)
	require.EqualValues(t, 3, l001.Counts.Failed)
	require.ElementsMatch(t, []string{"tenant:badlist", "tenant:badstr", "tenant:tj:destinations"}, issueKeys(l001))
	for _, i := range l001.Issues {
		if i.Key == "tenant:tj:destinations" {
			require.Contains(t, i.Reason, `field "d1" is not a JSON object`)
		} else {
			require.Contains(t, i.Reason, "not a hash")
		}
	}
	l002 := line(t, lines, redismigrations.Timestamps)
	require.Equal(t, report.State("pending"), l002.State, "blocked by 001")
	require.ElementsMatch(t, []string{"tenant:{badv1}:tenant", "tenant:{tbad}:tenant", "tenant:{tbad}:destination:d1"}, issueKeys(l002))
	for _, name := range all {
		require.Empty(t, c.HGet(ctx, "outpost:migration:"+name, "status").Val(), "%s not marked", name)
	}

	// Nothing overwritten: the legacy keys are as they were, the bad ones
	// too, the v1 key of the wrong type is still a string, and no twin was
	// made for the summary that is not one.
	require.Equal(t, before, dumpLegacy(t, ctx, c))
	require.Equal(t, "oops", c.Get(ctx, "tenant:{badv1}:tenant").Val())
	require.EqualValues(t, 0, c.Exists(ctx, "tenant:{tj}:destinations").Val())
	// A faithful copy keeps a value 002 cannot convert; the other field is
	// converted.
	require.Equal(t, "yesterday", c.HGet(ctx, "tenant:{tbad}:tenant", "created_at").Val())
	require.Equal(t, "1735787045000", c.HGet(ctx, "tenant:{tbad}:destination:d1", "created_at").Val())
	require.Equal(t, "2025-13-45T00:00:00Z", c.HGet(ctx, "tenant:{tbad}:destination:d1", "updated_at").Val())
	// The big hash copied exactly.
	bigV0, err := c.HGetAll(ctx, "tenant:tbig:destinations").Result()
	require.NoError(t, err)
	bigV1, err := c.HGetAll(ctx, "tenant:{tbig}:destinations").Result()
	require.NoError(t, err)
	require.Len(t, bigV1, 50_000)
	require.Equal(t, bigV0, bigV1)

	// The rest is migrated: with the planted keys and their twins set
	// aside, the keyspace is exactly the expected one.
	planted := []string{"tenant:badlist", "tenant:badstr", "tenant:{badv1}:tenant", "tenant:tj", "tenant:{tj}:tenant", "tenant:tj:destinations",
		"tenant:tbad", "tenant:{tbad}:tenant", "tenant:tbad:destination:d1", "tenant:{tbad}:destination:d1",
		"tenant:tbig", "tenant:{tbig}:tenant", "tenant:tbig:destinations", "tenant:{tbig}:destinations"}
	saved := map[string]string{}
	for _, k := range planted {
		d, err := c.Dump(ctx, k).Result()
		require.NoError(t, err, k)
		saved[k] = d
	}
	require.NoError(t, c.Del(ctx, planted...).Err())
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "the rest after a failed apply")
	for k, d := range saved {
		require.NoError(t, c.Restore(ctx, k, 0, d).Err(), k)
	}

	// Fix the records and rerun: done work is kept, the rest finishes.
	require.NoError(t, c.Del(ctx, "tenant:badlist", "tenant:badstr", "tenant:{badv1}:tenant").Err())
	require.NoError(t, c.HSet(ctx, "tenant:tj:destinations", "d1", `{"id":"d1","type":"webhook","topics":["*"],"disabled":false}`).Err())
	require.NoError(t, c.HSet(ctx, "tenant:{tbad}:tenant", "created_at", "2025-01-02T03:04:05Z").Err())
	require.NoError(t, c.HSet(ctx, "tenant:{tbad}:destination:d1", "updated_at", "2025-01-03T03:04:05Z").Err())
	lines, err = p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	for _, name := range all {
		require.Equal(t, report.State("applied"), line(t, lines, name).State, name)
		requireApplied(t, ctx, c, "", name)
	}
	require.Equal(t, "1735873445000", c.HGet(ctx, "tenant:{tbad}:destination:d1", "updated_at").Val())
	v, err := p.Verify(ctx, runFor("verify"))
	// tenant:tbad and its destination were fixed on the twin only: verify
	// says so, and cleanup keeps them.
	require.Equal(t, report.CodeDrift, report.CodeOf(err))
	require.ElementsMatch(t, []string{"tenant:tbad", "tenant:tbad:destination:d1"}, issueKeys(line(t, v, redismigrations.HashTags)))
	require.Equal(t, report.State("verified"), line(t, v, redismigrations.Timestamps).State)
	require.Equal(t, report.State("verified"), line(t, v, redismigrations.Entity).State)
}

func noErr(t *testing.T, err error) {
	if err != nil {
		t.Error(err)
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDeploymentPrefix: a prefixed layout-1 keyspace on a cluster. 001 is
// recorded not_applicable with checked_at and reason; 002 and 003 convert
// in place; keys of other deployments and unprefixed legacy keys are
// left alone.
func TestDeploymentPrefix(t *testing.T) {
	ctx := context.Background()
	c := servertest.RedisCluster(t).Client(t)
	o := smallSeed(1500)
	o.Layout = seed.LayoutV1
	o.DeploymentID = "dep"
	st, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	entities := int64(st.Tenants + st.SoftDeletedTenants + st.Destinations + st.SoftDeletedDestinations)
	foreign := map[string][]any{
		"tenant:t1":                      {"id", "t1", "created_at", "2025-01-02T03:04:05Z"},
		"tenant:{t1}:tenant":             {"id", "t1", "created_at", "2025-01-02T03:04:05Z"},
		"other:tenant:{t1}:tenant":       {"id", "t1", "created_at", "2025-01-02T03:04:05Z"},
		"dep:tenant:{x}:unknown":         {"created_at", "2025-01-02T03:04:05Z"},
		"dep2:tenant:{t1}:destination:d": {"id", "d", "created_at", "2025-01-02T03:04:05Z"},
	}
	for k, v := range foreign {
		require.NoError(t, c.HSet(ctx, k, v...).Err())
	}

	p := phaseFor(c, "dep:", redisphase.Options{})
	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	l := line(t, plan, redismigrations.HashTags)
	require.Equal(t, report.State("not_applicable"), l.State)
	require.EqualValues(t, st.Tenants+st.Destinations, line(t, plan, redismigrations.Timestamps).Estimate.Value)
	require.EqualValues(t, entities, line(t, plan, redismigrations.Entity).Estimate.Value)

	lines, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Equal(t, report.State("not_applicable"), line(t, lines, redismigrations.HashTags).State)
	state, err := c.HGetAll(ctx, "dep:outpost:migration:"+redismigrations.HashTags).Result()
	require.NoError(t, err)
	require.Equal(t, "not_applicable", state["status"])
	require.Contains(t, state["reason"], "DEPLOYMENT_ID")
	_, err = time.Parse(time.RFC3339, state["checked_at"])
	require.NoError(t, err)
	for _, name := range []string{redismigrations.Timestamps, redismigrations.Entity} {
		require.Equal(t, report.State("applied"), line(t, lines, name).State)
		requireApplied(t, ctx, c, "dep:", name)
		require.EqualValues(t, 0, c.Exists(ctx, "outpost:migration:"+name).Val(), "state lives under the prefix only")
	}
	for k, v := range foreign {
		got, err := c.HGetAll(ctx, k).Result()
		require.NoError(t, err)
		want := map[string]string{}
		for i := 0; i < len(v); i += 2 {
			want[v[i].(string)] = v[i+1].(string)
		}
		require.Equal(t, want, got, "%s is not this deployment's: untouched", k)
		require.NoError(t, c.Del(ctx, k).Err())
	}
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	requireNoDiffs(t, diffs, "prefixed keyspace")

	v, err := p.Verify(ctx, runFor("verify"))
	require.NoError(t, err)
	for _, name := range []string{redismigrations.Timestamps, redismigrations.Entity} {
		l := line(t, v, name)
		require.Equal(t, report.State("verified"), l.State)
		require.Equal(t, entities, l.Counts.Checked)
		require.Equal(t, entities, l.Counts.Passed)
	}
	require.Equal(t, report.State("not_applicable"), line(t, v, redismigrations.HashTags).State)
	cl, err := p.Cleanup(ctx, runFor("cleanup"))
	require.NoError(t, err)
	require.Contains(t, line(t, cl, redismigrations.HashTags).Reason, "nothing to clean")
}
