package redismigrations_test

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"
	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"
	"github.com/outpost-migrate/outpost/report"
)

const writerTenants = 3000

// seedWriters writes writerTenants legacy tenants, each with one
// destination, with RFC3339 timestamps.
func seedWriters(t *testing.T, ctx context.Context, c goredis.UniversalClient) {
	t.Helper()
	pipe := c.Pipeline()
	for i := range writerTenants {
		tid := "w" + strconv.Itoa(i)
		pipe.HSet(ctx, "tenant:"+tid, "id", tid, "created_at", "2024-05-06T07:08:09Z", "updated_at", "2024-05-06T07:08:09Z")
		pipe.HSet(ctx, "tenant:"+tid+":destination:d"+tid, "id", "d"+tid, "type", "webhook", "topics", "*", "created_at", "2024-05-06T07:08:09Z")
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
}

// twinIfExists changes a twin only if it exists, as Outpost's new server
// does to a record it has.
var twinIfExists = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])`)

// writer plays an old Outpost (writing legacy records, creating new ones)
// and a new one (changing twins) until stop is closed.
type writer struct {
	mu            sync.Mutex
	legacy        map[string]string // legacy key -> its twin's name
	twinNote      map[string]string // twin -> the last note the new server wrote
	legacyWrites  int
	twinWrites    int
	createdLegacy int
	// conflicts: the new server also changes twins of records the old one
	// just changed; else the two work on different tenants.
	conflicts bool
}

func (w *writer) run(ctx context.Context, c goredis.UniversalClient, stop <-chan struct{}, done chan<- error) {
	rng := rand.New(rand.NewSource(7))
	last := "0"
	for i := 0; ; i++ {
		select {
		case <-stop:
			done <- nil
			return
		default:
		}
		j := strconv.Itoa(rng.Intn(writerTenants / 2))
		if i%4 == 2 {
			j = strconv.Itoa(writerTenants/2 + rng.Intn(writerTenants/2))
			if w.conflicts && i%8 == 2 {
				j = last
			}
		}
		if i%4 == 0 {
			last = j
		}
		now := time.Now().UTC().Format(time.RFC3339Nano)
		var err error
		w.mu.Lock()
		switch i % 4 {
		case 0:
			k := "tenant:w" + j
			err = c.HSet(ctx, k, "updated_at", now, "note", "old-"+strconv.Itoa(i)).Err()
			w.legacy[k] = "tenant:{w" + j + "}:tenant"
			w.legacyWrites++
		case 1:
			tid := "n" + strconv.Itoa(i)
			err = c.HSet(ctx, "tenant:"+tid, "id", tid, "created_at", now).Err()
			w.legacy["tenant:"+tid] = "tenant:{" + tid + "}:tenant"
			w.createdLegacy++
		case 2:
			twin := "tenant:{w" + j + "}:tenant"
			note := "new-" + strconv.Itoa(i)
			var n int64
			n, err = twinIfExists.Run(ctx, c, []string{twin}, "note", note).Int64()
			if err == nil && n >= 0 {
				w.twinNote[twin] = note
				w.twinWrites++
			}
		case 3:
			k := "tenant:w" + j + ":destination:dw" + j
			err = c.HSet(ctx, k, "topics", "t-"+strconv.Itoa(i)).Err()
			w.legacy[k] = "tenant:{w" + j + "}:destination:dw" + j
			w.legacyWrites++
		}
		w.mu.Unlock()
		if err != nil {
			done <- err
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// expectTwin is, independently of the code under test, what the twin of a
// legacy record must hold after 001-003: the same fields, timestamps in
// Unix milliseconds, entity by kind.
func expectTwin(t *testing.T, legacyKey string, fields map[string]string) map[string]string {
	out := map[string]string{}
	for f, v := range fields {
		if f == "created_at" || f == "updated_at" {
			ts, err := time.Parse(time.RFC3339Nano, v)
			require.NoError(t, err)
			v = strconv.FormatInt(ts.UnixMilli(), 10)
		}
		out[f] = v
	}
	out["entity"] = "tenant"
	if strings.Contains(legacyKey, ":destination:") {
		out["entity"] = "destination"
	}
	return out
}

// stopOnCatchUp stops the writer when the catch-up starts, as an old
// server stopped before apply completes: its last writes land while the
// first round runs, so a later round must catch them.
type stopOnCatchUp struct {
	once sync.Once
	stop chan struct{}
	done chan error
	err  error
}

func (s *stopOnCatchUp) Emit(e progress.Event) {
	if e.Event == progress.PassStarted && strings.Contains(e.Msg, "catch-up round") {
		s.once.Do(func() {
			close(s.stop)
			s.err = <-s.done
		})
	}
}

// runWithWriter applies 001-003 on c while a writer changes legacy keys,
// creates new ones and changes twins, then checks every record the writer
// touched, key by key.
func runWithWriter(t *testing.T, c, wc goredis.UniversalClient, conflicts bool) {
	ctx := context.Background()
	seedWriters(t, ctx, c)
	w := &writer{legacy: map[string]string{}, twinNote: map[string]string{}, conflicts: conflicts}
	sink := &stopOnCatchUp{stop: make(chan struct{}), done: make(chan error, 1)}
	go w.run(ctx, wc, sink.stop, sink.done)
	time.Sleep(20 * time.Millisecond) // the writer is under way before apply
	run := runFor("apply")
	run.Events = sink
	lines, applyErr := phaseFor(c, "", redisphase.Options{ScanCount: 100, Parallel: 2, Window: 1}).Apply(ctx, run)
	sink.once.Do(func() { close(sink.stop); sink.err = <-sink.done })
	require.NoError(t, sink.err)
	t.Logf("writer: %d legacy changes, %d new legacy keys, %d twin changes; apply: %v", w.legacyWrites, w.createdLegacy, w.twinWrites, applyErr)
	require.Greater(t, w.legacyWrites, 20, "the writer ran during the pass")

	named := map[string]bool{}
	for _, l := range lines {
		for _, i := range l.Issues {
			named[i.Key] = true
		}
	}
	others := line(t, lines, all[0]).Others
	require.NotNil(t, others)
	require.Equal(t, "client_tracking", others.Detection, others.Reason)
	require.False(t, others.ConfirmingPass)
	require.Positive(t, others.KeysChanged)
	var sum int64
	for _, n := range others.PerMaster {
		sum += n
	}
	require.Equal(t, others.KeysChanged, sum, "per master adds up")
	if _, ok := c.(*goredis.ClusterClient); ok {
		require.Len(t, others.PerMaster, 3, "every master watched")
	}
	require.Positive(t, others.Recopied+others.Migrated, "changed records were made right")
	require.Less(t, len(named), 50, "every reported key is named")

	stale := 0
	for legacyKey, twin := range w.legacy {
		fields := c.HGetAll(ctx, legacyKey).Val()
		got := c.HGetAll(ctx, twin).Val()
		if note, ok := w.twinNote[twin]; ok {
			// The new server changed this twin: never overwritten.
			require.Equal(t, note, got["note"], "%s: a twin the new server changed was overwritten", twin)
		}
		want := expectTwin(t, legacyKey, fields)
		if fmt.Sprint(want) == fmt.Sprint(got) {
			continue
		}
		stale++
		require.True(t, named[legacyKey], "%s changed during apply and its twin %s is stale (%v, want %v) but the report does not name it", legacyKey, twin, got, want)
	}
	require.Equal(t, conflicts, stale > 0, "conflicts, and only they, are reported")
	if stale > 0 {
		require.Error(t, applyErr, "a stale twin with apply applied")
		require.Equal(t, report.CodeMigrationFailed, report.CodeOf(applyErr))
		require.Equal(t, int64(stale), others.Reported)
	} else {
		require.NoError(t, applyErr)
		require.Equal(t, report.StateApplied, line(t, lines, all[0]).State)
	}
	t.Logf("others: %+v; stale and reported: %d", *others, stale)
}

// TestWriterDuringApplyStandalone: a concurrent old and new server on a
// standalone Redis, on different tenants: every record the old one changed
// or created is right in its twin (re-copied, copied) and apply applies;
// no twin the new one changed is overwritten.
func TestWriterDuringApplyStandalone(t *testing.T) {
	srv := servertest.Redis(t)
	runWithWriter(t, srv.Client(t), srv.Client(t), false)
}

// TestWriterDuringApplyStandaloneConflicts: the new server also changes
// twins of records the old one changed after their copy: those are named
// in the report and apply fails (exit 4), nothing overwritten.
func TestWriterDuringApplyStandaloneConflicts(t *testing.T) {
	srv := servertest.Redis(t)
	runWithWriter(t, srv.Client(t), srv.Client(t), true)
}

// TestWriterDuringApplyCluster: the same on a 3-master cluster, without
// and with conflicts.
func TestWriterDuringApplyCluster(t *testing.T) {
	for _, conflicts := range []bool{false, true} {
		t.Run(fmt.Sprint("conflicts=", conflicts), func(t *testing.T) {
			cl := servertest.RedisCluster(t)
			runWithWriter(t, cl.Client(t), cl.Client(t), conflicts)
		})
	}
}

// scansOfOnePass is how many SCAN calls one pass over the keyspace as it
// is now takes with COUNT 100.
func scansOfOnePass(t *testing.T, ctx context.Context, c *goredis.Client) int64 {
	var n int64
	var cursor uint64
	for {
		_, next, err := c.Scan(ctx, cursor, "tenant:*", 100).Result()
		require.NoError(t, err)
		n++
		if next == 0 {
			return n
		}
		cursor = next
	}
}

// applyCountingScans seeds a legacy keyspace, applies 001-003 with COUNT
// 100 (hook runs before the first chunk's writes) and returns the run's
// lines, its SCAN calls and those of one pass over the final keyspace.
func applyCountingScans(t *testing.T, hook func(ctx context.Context, c *goredis.Client)) ([]report.Migration, int64, int64, *goredis.Client) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	o := smallSeed(400)
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	if hook != nil {
		var once sync.Once
		defer redismigrations.SetBeforeWrite(func(ctx context.Context, _ []string) { once.Do(func() { hook(ctx, c) }) })()
	}
	require.NoError(t, c.ConfigResetStat(ctx).Err())
	lines, err := phaseFor(c, "", redisphase.Options{ScanCount: 100}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	scans := calls(t, c.Info(ctx, "commandstats").Val(), "scan")
	for _, name := range all {
		require.Equal(t, report.StateApplied, line(t, lines, name).State, name)
	}
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)
	return lines, scans, scansOfOnePass(t, ctx, c), c
}

// TestQuietApplyOnePass: with no other client writing, apply walks the
// keyspace once: no confirming pass (commandstats: no more SCAN calls than
// one pass over the final keyspace takes).
func TestQuietApplyOnePass(t *testing.T) {
	lines, scans, onePass, _ := applyCountingScans(t, nil)
	others := line(t, lines, all[0]).Others
	require.Equal(t, "client_tracking", others.Detection, others.Reason)
	require.False(t, others.ConfirmingPass)
	require.Zero(t, others.KeysChanged)
	require.LessOrEqual(t, scans, onePass, "SCAN calls of apply against one pass")
	t.Logf("apply: %d SCAN calls; one pass over the final keyspace: %d", scans, onePass)
}

// TestFallbackWhenDetectionLost: the connection that receives the
// server's reports of others' writes is killed during the pass; writes in
// between may be lost, so apply says so and runs the full confirming pass
// (commandstats: more SCAN calls than one pass).
func TestFallbackWhenDetectionLost(t *testing.T) {
	lines, scans, onePass, _ := applyCountingScans(t, func(ctx context.Context, c *goredis.Client) {
		require.NoError(t, c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	})
	others := line(t, lines, all[0]).Others
	require.Equal(t, "unavailable", others.Detection)
	require.Contains(t, others.Reason, "stopped")
	require.True(t, others.ConfirmingPass)
	require.Greater(t, scans, onePass, "a confirming pass ran")
	t.Logf("apply: %d SCAN calls; one pass over the final keyspace: %d; reason: %s", scans, onePass, others.Reason)
}

// TestFallbackWhenTrackingRefused: an ACL user with the permissions the
// README lists (no CLIENT, no SUBSCRIBE): writes by others cannot be
// watched, apply says why and runs the full confirming pass, and applies.
func TestFallbackWhenTrackingRefused(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithACLUser("migrator", "pw", "~tenant:*", "~outpost:*", "~.outpost:*", "~{.outpost:*",
		"-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction", "+info", "+ping"))
	c := srv.Client(t)
	o := smallSeed(100)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	others := line(t, lines, all[0]).Others
	require.Equal(t, "unavailable", others.Detection)
	require.Contains(t, others.Reason, "NOPERM")
	require.True(t, others.ConfirmingPass)
	for _, name := range all {
		require.Equal(t, report.StateApplied, line(t, lines, name).State, name)
	}
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)
}

// TestCatchUpDeletedLegacy: a legacy record deleted after its copy leaves
// a twin behind: reported when the twin has no TTL, not when it has one
// (it expires with the record, as soft-deleted records do).
func TestCatchUpDeletedLegacy(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	require.NoError(t, c.HSet(ctx, "tenant:x", "id", "x").Err())
	require.NoError(t, c.HSet(ctx, "tenant:y", "deleted_at", "2024-01-01T00:00:00Z").Err())
	require.NoError(t, c.PExpire(ctx, "tenant:y", time.Hour).Err())
	set := redismigrations.New(c, "")
	_, err := redisphase.New(c, "", ".outpost:migration_lock", set, redisphase.Options{}, nil).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.NoError(t, c.Del(ctx, "tenant:x", "tenant:y").Err())
	tally := scan.NewTally()
	require.NoError(t, set.CatchUp(ctx, all, nil, []string{"tenant:x", "tenant:y"}, tally))
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersReported).Changed)
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersGone).Changed)
	issues, _ := tally.Issues(redismigrations.HashTags)
	require.Len(t, issues, 1)
	require.Equal(t, "tenant:x", issues[0].Key)
	require.Equal(t, "tenant:{x}:tenant", issues[0].Object)
}

// TestCatchUpTrustsOnlyWhatItWrote: the catch-up re-copies a twin over
// its changed legacy record only while the twin holds what the pass wrote.
// A write the watch could not name (another client's in the same
// event-loop iteration as the run's own script, which the run spends as
// its own) is played here by writing the twin and not naming it: the
// twin is kept and the record reported. A twin re-copied is trusted again
// with its new content.
func TestCatchUpTrustsOnlyWhatItWrote(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, c.HSet(ctx, "tenant:"+id, "id", id, "created_at", "2024-05-06T07:08:09Z").Err())
	}
	set := redismigrations.New(c, "")
	_, err := redisphase.New(c, "", ".outpost:migration_lock", set, redisphase.Options{}, nil).Apply(ctx, runFor("apply"))
	require.NoError(t, err)

	// b's twin was written by another client unseen; both legacy records
	// change.
	require.NoError(t, c.HSet(ctx, "tenant:{b}:tenant", "note", "new-server").Err())
	for _, id := range []string{"a", "b"} {
		require.NoError(t, c.HSet(ctx, "tenant:"+id, "note", "old-server").Err())
	}
	tally := scan.NewTally()
	require.NoError(t, set.CatchUp(ctx, all, nil, []string{"tenant:a", "tenant:b"}, tally))
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersRecopied).Changed)
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersReported).Changed)
	require.Equal(t, "old-server", c.HGet(ctx, "tenant:{a}:tenant", "note").Val(), "a re-copied")
	require.Equal(t, "new-server", c.HGet(ctx, "tenant:{b}:tenant", "note").Val(), "b's twin kept")
	issues, _ := tally.Issues(redismigrations.HashTags)
	require.Len(t, issues, 1)
	require.Equal(t, "tenant:b", issues[0].Key)

	// a changes again: its twin holds the re-copy, so it is re-copied
	// again; an unseen write after the re-copy makes it reported.
	require.NoError(t, c.HSet(ctx, "tenant:a", "note", "old-server-2").Err())
	tally = scan.NewTally()
	require.NoError(t, set.CatchUp(ctx, all, nil, []string{"tenant:a"}, tally))
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersRecopied).Changed)
	require.Equal(t, "old-server-2", c.HGet(ctx, "tenant:{a}:tenant", "note").Val())
	require.NoError(t, c.HSet(ctx, "tenant:{a}:tenant", "note", "new-server").Err())
	require.NoError(t, c.HSet(ctx, "tenant:a", "note", "old-server-3").Err())
	tally = scan.NewTally()
	require.NoError(t, set.CatchUp(ctx, all, nil, []string{"tenant:a"}, tally))
	require.EqualValues(t, 0, tally.Counts(redismigrations.OthersRecopied).Changed)
	require.EqualValues(t, 1, tally.Counts(redismigrations.OthersReported).Changed)
	require.Equal(t, "new-server", c.HGet(ctx, "tenant:{a}:tenant", "note").Val())
}

// TestRerunLooksAgainAtReported: a record the catch-up reported (changed
// by the old server after its copy while the new server wrote its twin)
// keeps a rerun from recording the migrations applied as long as the two
// still differ: a rerun's pass counts a record whose twin exists as done,
// so it must remember. Once reconciled (here: the twin deleted), the rerun
// copies it, applies, and forgets it.
func TestRerunLooksAgainAtReported(t *testing.T) {
	ctx := context.Background()
	c := servertest.Redis(t).Client(t)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, c.HSet(ctx, "tenant:"+id, "id", id, "created_at", "2024-05-06T07:08:09Z").Err())
	}
	var once sync.Once
	restore := redismigrations.SetBeforeWrite(func(ctx context.Context, keys []string) {
		for _, k := range keys {
			if k == "tenant:{a}:tenant" {
				once.Do(func() {
					require.NoError(t, c.HSet(ctx, "tenant:a", "note", "old-server").Err())
					require.NoError(t, c.HSet(ctx, "tenant:{a}:tenant", "id", "a", "note", "new-server").Err())
				})
			}
		}
	})
	named := func(lines []report.Migration) bool {
		for _, i := range line(t, lines, all[0]).Issues {
			if i.Key == "tenant:a" {
				return true
			}
		}
		return false
	}
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	restore()
	require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "%v", err)
	require.True(t, named(lines))
	require.EqualValues(t, 1, line(t, lines, all[0]).Others.Reported)

	for range 2 {
		lines, err = phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
		require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "a rerun over the same data fails the same way: %v", err)
		require.True(t, named(lines))
		require.Equal(t, "new-server", c.HGet(ctx, "tenant:{a}:tenant", "note").Val(), "the twin is never overwritten")
	}
	require.Equal(t, []string{"tenant:a"}, c.SMembers(ctx, "{.outpost:migration_lock}:reported").Val())

	// A rerun whose writers cannot be watched (an ACL user without
	// +client) settles by the confirming pass, which checks that twins
	// exist and are converted, not that they agree: it looks again too.
	require.NoError(t, c.Do(ctx, "ACL", "SETUSER", "notrack", "on", ">pw", "~tenant:*", "~outpost:*", "~.outpost:*", "~{.outpost:*",
		"-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction", "+info", "+ping").Err())
	opt := *c.Options()
	opt.Username, opt.Password = "notrack", "pw"
	nc := goredis.NewClient(&opt)
	defer nc.Close()
	lines, err = phaseFor(nc, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.Equal(t, report.CodeMigrationFailed, report.CodeOf(err), "%v", err)
	require.True(t, line(t, lines, all[0]).Others.ConfirmingPass)
	require.True(t, named(lines))
	require.Equal(t, []string{"tenant:a"}, c.SMembers(ctx, "{.outpost:migration_lock}:reported").Val())

	require.NoError(t, c.Del(ctx, "tenant:{a}:tenant").Err())
	lines, err = phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	require.Equal(t, report.StateApplied, line(t, lines, all[0]).State)
	require.Equal(t, "old-server", c.HGet(ctx, "tenant:{a}:tenant", "note").Val())
	require.Zero(t, c.Exists(ctx, "{.outpost:migration_lock}:reported").Val(), "nothing left to look at again")
}

// TestTrackingWithACLUser: the minimal ACL user plus the rules the README
// names (+client +subscribe &__redis__:invalidate) is watched: no
// confirming pass.
func TestTrackingWithACLUser(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t, servertest.WithACLUser("migrator", "pw", "~tenant:*", "~outpost:*", "~.outpost:*", "~{.outpost:*",
		"-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@transaction", "+info", "+ping",
		"+client", "+subscribe", "&__redis__:invalidate"))
	c := srv.Client(t)
	o := smallSeed(100)
	o.UnrelatedKeys = 0
	_, err := seed.Write(ctx, c, o)
	require.NoError(t, err)
	lines, err := phaseFor(c, "", redisphase.Options{}).Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	others := line(t, lines, all[0]).Others
	require.Equal(t, "client_tracking", others.Detection, others.Reason)
	require.False(t, others.ConfirmingPass)
	diffs, _, err := seedtest.Check(ctx, c, o, seedtest.Expect)
	require.NoError(t, err)
	require.Empty(t, diffs)
}
