package seed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outpost-migrate/outpost/migrations/seed"
	"github.com/outpost-migrate/outpost/migrations/seed/seedtest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// The recorded hashes of the layout-3 rendering of seedtest.SmallOptions
// with deployment id "dep" (its layout 0: seedtest.WantDumpV0) and of the
// PostgreSQL v4 log. If the generator changes on purpose, record the new
// values printed by the failing test.
const (
	wantDumpV3Dep = "e84433b9f94d747ba84b71ee2492a450b23a7b334bd2995961721e1f7062ea9e"
	wantPGDumpV4  = "91cc0fa285af625c71d41bbc8bedeaee,c0df550c753cbad0ff4198c1f5a9f564,3cf2e8fff16ba4897b1938b33ff69ed1"
	sevenDays     = 7 * 24 * time.Hour
)

// TestStableDump: the same options give the same keyspace in two fresh
// servers, equal to the recorded hash; a layout-3 prefixed rendering too.
func TestStableDump(t *testing.T) {
	ctx := seedtest.Ctx(t)
	o := seedtest.SmallOptions()
	var hashes []string
	for run := 0; run < 2; run++ {
		c := servertest.Redis(t).Client(t)
		st := seedtest.MustWrite(t, ctx, c, o)
		h, n := seedtest.Dump(t, ctx, c)
		assert.Equal(t, st.Keys, n)
		hashes = append(hashes, h)
	}
	assert.Equal(t, hashes[0], hashes[1], "two runs with the same seed")
	assert.Equal(t, seedtest.WantDumpV0, hashes[0], "recorded dump hash of smallOptions")

	o.Layout, o.DeploymentID = seed.LayoutV3, "dep"
	c := servertest.Redis(t).Client(t)
	seedtest.MustWrite(t, ctx, c, o)
	h, _ := seedtest.Dump(t, ctx, c)
	assert.Equal(t, wantDumpV3Dep, h, "recorded dump hash of smallOptions, layout 3, deployment dep")

	// Another seed is another dataset.
	o.Seed++
	c = servertest.Redis(t).Client(t)
	seedtest.MustWrite(t, ctx, c, o)
	h2, _ := seedtest.Dump(t, ctx, c)
	assert.NotEqual(t, h, h2)
}

type summaryEntry struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Topics   []string        `json:"topics"`
	Filter   json.RawMessage `json:"filter"`
	Disabled *bool           `json:"disabled"`
}

// TestShapes reads back every key of a v0 dataset and checks it has the
// shape the storage spec gives, and that every kind of record is there.
func TestShapes(t *testing.T) {
	ctx := seedtest.Ctx(t)
	o := seedtest.SmallOptions()
	c := servertest.Redis(t).Client(t)
	st := seedtest.MustWrite(t, ctx, c, o)
	for name, n := range map[string]int{
		"live tenants": st.Tenants, "soft-deleted tenants": st.SoftDeletedTenants,
		"summaries": st.Summaries, "destinations": st.Destinations,
		"soft-deleted destinations": st.SoftDeletedDestinations, "disabled": st.DisabledDestinations,
		"missing from summary": st.MissingFromSummary, "colon tenant ids": st.ColonTenantIDs,
		"colon destination ids": st.ColonDestinationIDs, "binary fields": st.BinaryFields,
		"unrelated": st.Unrelated,
	} {
		assert.Positive(t, n, name)
	}

	isTime := func(s string) bool { _, err := time.Parse(time.RFC3339Nano, s); return err == nil }
	zones := map[string]bool{}
	fracs := map[int]bool{}
	noteStamp := func(s string) {
		if strings.HasSuffix(s, "Z") {
			zones["Z"] = true
		} else {
			zones[s[len(s)-6:]] = true
		}
		frac := 0
		if i := strings.IndexByte(s, '.'); i >= 0 {
			frac = strings.IndexAny(s[i:], "Z+-") - 1
		}
		fracs[frac] = true
	}
	var sawColonT, sawColonD, sawMissing, sawDisabled, sawSoftT, sawSoftD bool
	require.NoError(t, seed.ForEachTenant(o, func(tn seed.Tenant) error {
		th, err := c.HGetAll(ctx, "tenant:"+tn.ID).Result()
		require.NoError(t, err)
		ttl := c.PTTL(ctx, "tenant:"+tn.ID).Val()
		if tn.Deleted {
			sawSoftT = true
			assert.Len(t, th, 1, tn.ID)
			assert.True(t, isTime(th["deleted_at"]), th)
			assert.True(t, ttl > 0 && ttl <= sevenDays, "soft-deleted tenant TTL %v", ttl)
			assert.Zero(t, c.Exists(ctx, "tenant:"+tn.ID+":destinations").Val(), "deleted tenant has no summary")
		} else {
			assert.Equal(t, tn.ID, th["id"])
			assert.True(t, isTime(th["created_at"]), th)
			noteStamp(th["created_at"])
			assert.Less(t, ttl, time.Duration(0), "live tenant without TTL")
			for f, v := range th {
				switch f {
				case "id", "created_at":
				case "updated_at":
					assert.True(t, isTime(v))
				case "metadata":
					assert.True(t, json.Valid([]byte(v)))
				default:
					t.Errorf("tenant %q: unexpected field %q", tn.ID, f)
				}
			}
		}
		if strings.Contains(tn.ID, ":") {
			sawColonT = true
		}
		summary, err := c.HGetAll(ctx, "tenant:"+tn.ID+":destinations").Result()
		require.NoError(t, err)
		for did, raw := range summary {
			var e summaryEntry
			require.NoError(t, json.Unmarshal([]byte(raw), &e), raw)
			assert.Equal(t, did, e.ID)
			assert.NotEmpty(t, e.Type)
			assert.NotEmpty(t, e.Topics)
			assert.NotNil(t, e.Disabled, raw)
			if e.Filter != nil {
				assert.True(t, strings.HasPrefix(string(e.Filter), "{") && string(e.Filter) != "{}", raw)
			}
			// seed.Key order as Outpost marshals it.
			assert.True(t, strings.HasPrefix(raw, `{"id":`) && strings.HasSuffix(raw, `"disabled":`+strconv.FormatBool(*e.Disabled)+`}`), raw)
		}
		listed := 0
		for _, d := range tn.Destinations {
			key := "tenant:" + tn.ID + ":destination:" + d.ID
			h, err := c.HGetAll(ctx, key).Result()
			require.NoError(t, err)
			ttl := c.PTTL(ctx, key).Val()
			if strings.Contains(d.ID, ":") {
				sawColonD = true
			}
			_, inSummary := summary[d.ID]
			if inSummary {
				listed++
			}
			if d.Deleted {
				sawSoftD = true
				assert.Len(t, h, 1, key)
				assert.True(t, isTime(h["deleted_at"]), h)
				assert.True(t, ttl > 0 && ttl <= sevenDays, "soft-deleted destination TTL %v", ttl)
				assert.False(t, inSummary, "deleted destination listed")
				continue
			}
			assert.Less(t, ttl, time.Duration(0), "live destination without TTL")
			assert.Equal(t, d.ID, h["id"])
			assert.NotEmpty(t, h["type"])
			if h["topics"] != "*" {
				for _, tp := range strings.Split(h["topics"], ",") {
					assert.Contains(t, []string{"user.created", "user.updated", "user.deleted", "order.placed", "order.shipped", "invoice.paid", "payment.failed"}, tp)
				}
			}
			var cfg map[string]string
			assert.NoError(t, json.Unmarshal([]byte(h["config"]), &cfg), h["config"])
			assert.True(t, isTime(h["created_at"]))
			noteStamp(h["created_at"])
			// Binary fields: not UTF-8, with a NUL, and byte-identical to the model.
			for _, f := range d.Key.Fields {
				if f.Name == "credentials" || f.Name == "delivery_metadata" {
					assert.False(t, utf8.ValidString(h[f.Name]), "%s of %s is valid UTF-8", f.Name, key)
					assert.Contains(t, h[f.Name], "\x00")
					assert.Equal(t, f.Value, h[f.Name], "%s of %s read back", f.Name, key)
				}
			}
			if v, ok := h["disabled_at"]; ok {
				sawDisabled = true
				assert.True(t, isTime(v))
			}
			if inSummary {
				var e summaryEntry
				require.NoError(t, json.Unmarshal([]byte(summary[d.ID]), &e))
				assert.Equal(t, h["type"], e.Type)
				assert.Equal(t, h["topics"], strings.Join(e.Topics, ","))
				_, disabled := h["disabled_at"]
				assert.Equal(t, disabled, *e.Disabled)
				if e.Filter != nil {
					assert.JSONEq(t, h["filter"], string(e.Filter))
				}
			} else {
				sawMissing = true
			}
			for f := range h {
				switch f {
				case "id", "type", "topics", "config", "credentials", "created_at", "updated_at",
					"disabled_at", "delivery_metadata", "metadata", "filter":
				default:
					t.Errorf("%s: unexpected field %q", key, f)
				}
			}
		}
		assert.Equal(t, len(summary), listed, "summary of %q lists only its destinations", tn.ID)
		return nil
	}))
	for name, ok := range map[string]bool{"colon tenant": sawColonT, "colon destination": sawColonD,
		"missing from summary": sawMissing, "disabled": sawDisabled, "soft-deleted tenant": sawSoftT,
		"soft-deleted destination": sawSoftD} {
		assert.True(t, ok, name)
	}
	assert.Len(t, zones, len(seed.DefaultZones), "every zone used: %v", zones)
	for _, n := range []int{0, 3, 6, 9} {
		assert.True(t, fracs[n], "a timestamp with %d fractional digits (%v)", n, fracs)
	}

	// Unrelated keys, unprefixed in layout 0.
	typeOf := func(k string) string { return c.Type(ctx, k).Val() }
	assert.Equal(t, seed.TypeString, typeOf("outpost:installation_id"))
	assert.Equal(t, seed.TypeString, typeOf("outpost:log_retention_ttl"))
	assert.Contains(t, []string{seed.TypeString, seed.TypeHash}, typeOf("tenant_idx"))
	assert.Equal(t, seed.TypeString, typeOf("outpost:lock"))
	kinds := map[string]string{}
	require.NoError(t, seedtest.ScanAll(ctx, c, func(keys []string) error {
		for _, k := range keys {
			for _, p := range []string{"idempotency:", "alert:", "rsmq:"} {
				if strings.HasPrefix(k, p) {
					kinds[p+typeOf(k)] = k
				}
			}
		}
		return nil
	}))
	for _, want := range []string{"idempotency:string", "alert:set", "rsmq:hash", "rsmq:zset"} {
		assert.Contains(t, kinds, want)
	}
	assert.Positive(t, c.PTTL(ctx, kinds["idempotency:string"]).Val(), "idempotency keys have a TTL")
}

// BenchmarkWrite writes about 500k keys (100k tenants, 3 destinations on
// average) and reports the rate (the speed target is shown by a benchmark,
// not asserted by a timed test that flakes on a busy machine):
// go test ./migrations/seed -run '^$' -bench Write -benchtime 1x
func BenchmarkWrite(b *testing.B) {
	o := seed.DefaultOptions()
	o.Tenants = 100_000
	for b.Loop() {
		b.StopTimer()
		srv := servertest.Redis(b)
		c := srv.Client(b)
		ctx := context.Background()
		b.StartTimer()
		start := time.Now()
		st, err := seed.Write(ctx, c, o)
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if n := c.DBSize(ctx).Val(); n != int64(st.Keys) {
			b.Fatalf("wrote %d keys, DBSIZE %d", st.Keys, n)
		}
		b.ReportMetric(float64(st.Keys)/d.Seconds(), "keys/s")
	}
}

// pgDDL creates the log tables at version v (1-4) the way the storage spec
// describes each migration step; version tracking as golang-migrate does.
func pgDDL(v int) []string {
	timeID := func(ts, id string) string {
		return "lpad(floor(extract(epoch from (" + ts + " at time zone 'UTC')))::bigint::text, 10, '0') || '_' || " + id
	}
	s := []string{
		`CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`,
		`CREATE TABLE events (id text NOT NULL, tenant_id text NOT NULL, destination_id text NOT NULL,
			time timestamptz NOT NULL, topic text NOT NULL, eligible_for_retry boolean NOT NULL,
			data jsonb NOT NULL, metadata jsonb NOT NULL,
			time_id text GENERATED ALWAYS AS (` + timeID("time", "id") + `) STORED,
			PRIMARY KEY (time, id)) PARTITION BY RANGE (time)`,
		`CREATE TABLE events_default PARTITION OF events DEFAULT`,
		`CREATE INDEX ON events (tenant_id, time_id DESC)`,
		`CREATE INDEX ON events (tenant_id, destination_id)`,
		`CREATE TABLE deliveries (id text NOT NULL, event_id text NOT NULL, destination_id text NOT NULL,
			status text NOT NULL, time timestamptz NOT NULL, PRIMARY KEY (time, id)) PARTITION BY RANGE (time)`,
		`CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT`,
		`CREATE INDEX ON deliveries (event_id)`,
		`CREATE INDEX ON deliveries (event_id, status)`,
	}
	if v >= 2 {
		s = append(s, `ALTER TABLE deliveries ADD COLUMN code text, ADD COLUMN response_data jsonb`)
	}
	if v >= 3 {
		s = append(s,
			`CREATE TABLE event_delivery_index (event_id text NOT NULL, delivery_id text NOT NULL,
				tenant_id text NOT NULL, destination_id text NOT NULL, event_time timestamptz NOT NULL,
				delivery_time timestamptz NOT NULL, topic text NOT NULL, status text NOT NULL,
				time_event_id text GENERATED ALWAYS AS (`+timeID("event_time", "event_id")+`) STORED,
				time_delivery_id text GENERATED ALWAYS AS (`+timeID("delivery_time", "delivery_id")+`) STORED,
				PRIMARY KEY (delivery_time, event_id, delivery_id)) PARTITION BY RANGE (delivery_time)`,
			`CREATE TABLE event_delivery_index_default PARTITION OF event_delivery_index DEFAULT`,
			`CREATE INDEX idx_event_delivery_index_main ON event_delivery_index (tenant_id, destination_id,
				topic, status, event_time DESC, delivery_time DESC, time_event_id, time_delivery_id)`)
	}
	if v >= 4 {
		for _, tbl := range []string{"deliveries", "event_delivery_index"} {
			s = append(s, `ALTER TABLE `+tbl+` ADD COLUMN manual boolean NOT NULL DEFAULT false,
				ADD COLUMN attempt integer NOT NULL DEFAULT 0`)
		}
	}
	return append(s, fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, false)`, v))
}

func pgSetup(t *testing.T, ctx context.Context, v int) *pgx.Conn {
	conn := servertest.Postgres(t).Connect(t)
	for _, q := range pgDDL(v) {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	return conn
}

func pgCount(t *testing.T, ctx context.Context, conn *pgx.Conn, q string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, conn.QueryRow(ctx, q).Scan(&n), q)
	return n
}

// pgDump is an md5 of every row of the three tables in key order.
func pgDump(t *testing.T, ctx context.Context, conn *pgx.Conn) string {
	// Row text renders timestamptz in the session zone: pin it.
	_, err := conn.Exec(ctx, `SET TimeZone = 'UTC'`)
	require.NoError(t, err)
	var out []string
	for _, q := range []string{
		`SELECT md5(coalesce(string_agg(e::text, E'\n' ORDER BY time, id), '')) FROM events e`,
		`SELECT md5(coalesce(string_agg(d::text, E'\n' ORDER BY time, id), '')) FROM deliveries d`,
		`SELECT md5(coalesce(string_agg(x::text, E'\n' ORDER BY delivery_time, event_id, delivery_id), '')) FROM event_delivery_index x`,
	} {
		var s string
		require.NoError(t, conn.QueryRow(ctx, q).Scan(&s), q)
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

func TestPostgresV4(t *testing.T) {
	ctx := seedtest.Ctx(t)
	o := seed.PGOptions{Version: 4, Events: 20_000, DeliveriesPerEvent: 3, OrphanRatio: 0.05, Seed: 7}
	var dumps []string
	for run := 0; run < 2; run++ {
		conn := pgSetup(t, ctx, 4)
		start := time.Now()
		st, err := seed.WritePostgres(ctx, conn, o)
		require.NoError(t, err)
		t.Logf("wrote %+v in %v", st, time.Since(start))
		n := int64(o.Events * o.DeliveriesPerEvent)
		orphans := n * 5 / 100
		assert.Equal(t, seed.PGStats{Events: int64(o.Events), Deliveries: n, Orphans: orphans, IndexRows: n - orphans}, st)
		assert.Equal(t, st.Events, pgCount(t, ctx, conn, `SELECT count(*) FROM events`))
		assert.Equal(t, st.Deliveries, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries`))
		assert.Equal(t, orphans, pgCount(t, ctx, conn,
			`SELECT count(*) FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)`))
		assert.Equal(t, st.IndexRows, pgCount(t, ctx, conn, `SELECT count(*) FROM event_delivery_index`))
		assert.Zero(t, pgCount(t, ctx, conn, `SELECT count(*) FROM event_delivery_index x
			WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = x.event_id AND e.time = x.event_time AND e.tenant_id = x.tenant_id)`))
		assert.Zero(t, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries WHERE attempt < 1 OR attempt > 3`))
		assert.Positive(t, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries WHERE manual`))
		assert.Positive(t, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries WHERE response_data IS NULL`))
		assert.Positive(t, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries WHERE status = 'success'`))
		assert.Zero(t, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.time <= e.time`))
		// Generated time_id: 10-digit epoch seconds.
		assert.Zero(t, pgCount(t, ctx, conn, `SELECT count(*) FROM events WHERE time_id !~ '^[0-9]{10}_evt_'`))
		dumps = append(dumps, pgDump(t, ctx, conn))
	}
	assert.Equal(t, dumps[0], dumps[1], "same seed, same rows")
	assert.Equal(t, wantPGDumpV4, dumps[0], "recorded dump of the v4 log")
}

// TestPostgresEarlierVersions: versions 1-3 write only their columns.
func TestPostgresEarlierVersions(t *testing.T) {
	ctx := seedtest.Ctx(t)
	for v := 1; v <= 3; v++ {
		conn := pgSetup(t, ctx, v)
		o := seed.PGOptions{Version: v, Events: 500, DeliveriesPerEvent: 2, OrphanRatio: 0.1, Seed: 1}
		st, err := seed.WritePostgres(ctx, conn, o)
		require.NoError(t, err, "version %d", v)
		assert.EqualValues(t, 1000, pgCount(t, ctx, conn, `SELECT count(*) FROM deliveries`))
		assert.EqualValues(t, 100, st.Orphans)
		if v >= 3 {
			assert.EqualValues(t, 900, st.IndexRows)
		} else {
			assert.Zero(t, st.IndexRows)
		}
	}
	// A database behind the version asked for is refused as such.
	conn := pgSetup(t, ctx, 1)
	_, err := seed.WritePostgres(ctx, conn, seed.PGOptions{Version: 4, Events: 10, DeliveriesPerEvent: 1})
	require.Error(t, err)
	assert.Equal(t, report.CodeDataRefused, report.CodeOf(err), "%v", err)
}
