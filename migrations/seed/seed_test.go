package seed

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// smallOptions is a v0 dataset small enough to check key by key, with
// every kind of record present several times.
func smallOptions() Options {
	o := DefaultOptions()
	o.Tenants = 400
	o.SoftDeletedRatio = 0.1
	o.ColonIDRatio = 0.1
	o.MissingFromSummaryRatio = 0.1
	o.Seed = 42
	o.UnrelatedKeys = 40
	return o
}

// The recorded hashes of the sorted dumps of smallOptions (layout 0) and of
// its layout-3 rendering with deployment id "dep". If the generator changes
// on purpose, record the new values printed by the failing test.
const (
	wantDumpV0      = "83424a6fa6d38bcc209666e14845b381a6945013d9f7f555a000c9cf4269628d"
	wantDumpV3Dep   = "e84433b9f94d747ba84b71ee2492a450b23a7b334bd2995961721e1f7062ea9e"
	wantPGDumpV4    = "91cc0fa285af625c71d41bbc8bedeaee,c0df550c753cbad0ff4198c1f5a9f564,3cf2e8fff16ba4897b1938b33ff69ed1"
	fixturePath     = "testdata/redis-v0-to-current.json"
	sevenDays       = 7 * 24 * time.Hour
	testCallTimeout = 50 * time.Second
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dump hashes the whole keyspace in a canonical form: sorted keys, each
// with its type, TTL presence and content (hash fields and set members
// sorted), every string length-prefixed so binary values cannot collide.
func dump(t *testing.T, ctx context.Context, client redis.UniversalClient) (string, int) {
	t.Helper()
	var keys []string
	require.NoError(t, scanAll(ctx, client, func(k []string) error {
		keys = append(keys, k...)
		return nil
	}))
	sort.Strings(keys)
	keys = compactStrings(keys)
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		pipe := client.Pipeline()
		types := make([]*redis.StatusCmd, len(batch))
		ttls := make([]*redis.DurationCmd, len(batch))
		for i, k := range batch {
			types[i] = pipe.Type(ctx, k)
			ttls[i] = pipe.PTTL(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		pipe = client.Pipeline()
		contents := make([]redis.Cmder, len(batch))
		for i, k := range batch {
			switch types[i].Val() {
			case TypeHash:
				contents[i] = pipe.HGetAll(ctx, k)
			case TypeString:
				contents[i] = pipe.Get(ctx, k)
			case TypeSet:
				contents[i] = pipe.SMembers(ctx, k)
			case TypeZSet:
				contents[i] = pipe.ZRangeWithScores(ctx, k, 0, -1)
			default:
				t.Fatalf("key %q has type %s", k, types[i].Val())
			}
		}
		_, err = pipe.Exec(ctx)
		require.NoError(t, err)
		for i, k := range batch {
			put(k)
			put(types[i].Val())
			put(strconv.FormatBool(ttls[i].Val() > 0))
			switch c := contents[i].(type) {
			case *redis.MapStringStringCmd:
				m := c.Val()
				names := make([]string, 0, len(m))
				for n := range m {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					put(n)
					put(m[n])
				}
			case *redis.StringCmd:
				put(c.Val())
			case *redis.StringSliceCmd:
				m := c.Val()
				sort.Strings(m)
				for _, v := range m {
					put(v)
				}
			case *redis.ZSliceCmd:
				for _, z := range c.Val() {
					put(fmt.Sprint(z.Member))
					put(strconv.FormatFloat(z.Score, 'g', -1, 64))
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), len(keys)
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func mustWrite(t *testing.T, ctx context.Context, client redis.UniversalClient, o Options) Stats {
	t.Helper()
	st, err := Write(ctx, client, o)
	require.NoError(t, err)
	want, err := Count(o)
	require.NoError(t, err)
	assert.Equal(t, want.Keys, st.Keys)
	assert.GreaterOrEqual(t, st.Commands, st.Keys)
	st.Commands = 0
	assert.Equal(t, want, st, "Write's stats are the model's")
	return st
}

// TestStableDump: the same options give the same keyspace in two fresh
// servers, equal to the recorded hash; a layout-3 prefixed rendering too.
func TestStableDump(t *testing.T) {
	ctx := testCtx(t)
	o := smallOptions()
	var hashes []string
	for run := 0; run < 2; run++ {
		c := servertest.Redis(t).Client(t)
		st := mustWrite(t, ctx, c, o)
		h, n := dump(t, ctx, c)
		assert.Equal(t, st.Keys, n)
		hashes = append(hashes, h)
	}
	assert.Equal(t, hashes[0], hashes[1], "two runs with the same seed")
	assert.Equal(t, wantDumpV0, hashes[0], "recorded dump hash of smallOptions")

	o.Layout, o.DeploymentID = LayoutV3, "dep"
	c := servertest.Redis(t).Client(t)
	mustWrite(t, ctx, c, o)
	h, _ := dump(t, ctx, c)
	assert.Equal(t, wantDumpV3Dep, h, "recorded dump hash of smallOptions, layout 3, deployment dep")

	// Another seed is another dataset.
	o.Seed++
	c = servertest.Redis(t).Client(t)
	mustWrite(t, ctx, c, o)
	h2, _ := dump(t, ctx, c)
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
	ctx := testCtx(t)
	o := smallOptions()
	c := servertest.Redis(t).Client(t)
	st := mustWrite(t, ctx, c, o)
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
	require.NoError(t, ForEachTenant(o, func(tn Tenant) error {
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
			// Key order as Outpost marshals it.
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
					assert.Contains(t, allTopics, tp)
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
	assert.Len(t, zones, len(DefaultZones), "every zone used: %v", zones)
	for _, n := range []int{0, 3, 6, 9} {
		assert.True(t, fracs[n], "a timestamp with %d fractional digits (%v)", n, fracs)
	}

	// Unrelated keys, unprefixed in layout 0.
	typeOf := func(k string) string { return c.Type(ctx, k).Val() }
	assert.Equal(t, TypeString, typeOf("outpost:installation_id"))
	assert.Equal(t, TypeString, typeOf("outpost:log_retention_ttl"))
	assert.Contains(t, []string{TypeString, TypeHash}, typeOf("tenant_idx"))
	assert.Equal(t, TypeString, typeOf("outpost:lock"))
	kinds := map[string]string{}
	require.NoError(t, scanAll(ctx, c, func(keys []string) error {
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

// fixtureKey is one key of the worked example.
type fixtureKey struct {
	Key    string                     `json:"key"`
	Type   string                     `json:"type"`
	TTLMs  json.RawMessage            `json:"ttl_ms"`
	Fields map[string]json.RawMessage `json:"fields"`
	Value  json.RawMessage            `json:"value"`
}

type fixture struct {
	Before     []fixtureKey `json:"before"`
	AfterApply []fixtureKey `json:"after_apply"`
}

func loadFixture(t *testing.T) fixture {
	b, err := os.ReadFile(fixturePath)
	require.NoError(t, err)
	var f fixture
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotEmpty(t, f.Before)
	return f
}

// fields decodes a fixture hash: strings, or {"base64": ...} for binary.
func (k fixtureKey) fields(t *testing.T) map[string]string {
	out := map[string]string{}
	for n, raw := range k.Fields {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[n] = s
			continue
		}
		var b struct{ Base64 string }
		require.NoError(t, json.Unmarshal(raw, &b), "%s.%s", k.Key, n)
		v, err := base64.StdEncoding.DecodeString(b.Base64)
		require.NoError(t, err)
		out[n] = string(v)
	}
	return out
}

func (k fixtureKey) hasTTL() bool { return string(k.TTLMs) != "null" && len(k.TTLMs) > 0 }

// TestFixtureTimestamps: every created_at/updated_at of the worked example
// converts to the value its v1 twin holds after apply.
func TestFixtureTimestamps(t *testing.T) {
	f := loadFixture(t)
	after := map[string]fixtureKey{}
	for _, k := range f.AfterApply {
		after[k.Key] = k
	}
	n := 0
	for _, b := range f.Before {
		if !strings.HasPrefix(b.Key, "tenant:") || strings.HasSuffix(b.Key, ":destinations") {
			continue
		}
		twin := v0ToV1(b.Key)
		a, ok := after[twin]
		require.True(t, ok, "twin %s of %s", twin, b.Key)
		bf, af := b.fields(t), a.fields(t)
		for _, name := range []string{"created_at", "updated_at"} {
			v, ok := bf[name]
			if !ok {
				continue
			}
			ms, err := RFC3339ToUnixMilli(v)
			require.NoError(t, err, v)
			assert.Equal(t, af[name], strconv.FormatInt(ms, 10), "%s %s %s", b.Key, name, v)
			n++
		}
		for _, name := range []string{"disabled_at", "deleted_at"} {
			if v, ok := bf[name]; ok {
				assert.Equal(t, v, af[name], "%s is left as it is", name)
			}
		}
	}
	assert.Equal(t, 8, n, "timestamps converted in the fixture")
}

// v0ToV1 names the twin of a fixture v0 key (test only: the fixture's ids
// never contain ":destination").
func v0ToV1(k string) string {
	rest := strings.TrimPrefix(k, "tenant:")
	if i := strings.Index(rest, ":destination:"); i >= 0 {
		return "tenant:{" + rest[:i] + "}:destination:" + rest[i+len(":destination:"):]
	}
	if tid, ok := strings.CutSuffix(rest, ":destinations"); ok {
		return "tenant:{" + tid + "}:destinations"
	}
	return "tenant:{" + rest + "}:tenant"
}

// TestExpectFixture feeds the worked example's v0 records through Expect's
// per-tenant expectation and compares the result with its after_apply,
// key by key, field by field (the tool's migration state excepted).
func TestExpectFixture(t *testing.T) {
	f := loadFixture(t)
	tenants := map[string]*Tenant{}
	var order []string
	tenantOf := func(tid string) *Tenant {
		if tn, ok := tenants[tid]; ok {
			return tn
		}
		tenants[tid] = &Tenant{ID: tid}
		order = append(order, tid)
		return tenants[tid]
	}
	var unrelated []Key
	for _, b := range f.Before {
		k := Key{Name: b.Key, Type: b.Type}
		if b.hasTTL() {
			ms, err := strconv.ParseInt(string(b.TTLMs), 10, 64)
			require.NoError(t, err)
			k.TTL = time.Duration(ms) * time.Millisecond
		}
		if b.Type == TypeHash {
			for n, v := range b.fields(t) {
				k.Fields = append(k.Fields, Field{n, v})
			}
		}
		rest, isTenant := strings.CutPrefix(b.Key, "tenant:")
		switch {
		case !isTenant:
			k.Kind = KindUnrelated
			switch b.Type {
			case TypeString:
				require.NoError(t, json.Unmarshal(b.Value, &k.Value))
			case TypeSet:
				require.NoError(t, json.Unmarshal(b.Value, &k.Members))
			}
			unrelated = append(unrelated, k)
		case strings.Contains(rest, ":destination:"):
			i := strings.Index(rest, ":destination:")
			k.Kind = KindDestination
			tn := tenantOf(rest[:i])
			tn.Destinations = append(tn.Destinations, Destination{ID: rest[i+len(":destination:"):], Key: k})
		case strings.HasSuffix(rest, ":destinations"):
			k.Kind = KindSummary
			tn := tenantOf(strings.TrimSuffix(rest, ":destinations"))
			tn.Summary = &k
		default:
			k.Kind = KindTenant
			tenantOf(rest).Key = k
		}
	}
	got := map[string]ExpectedKey{}
	c := &config{Options: Options{Layout: LayoutV0}}
	collect := func(key string, want ExpectedKey) error {
		_, dup := got[key]
		require.False(t, dup, key)
		got[key] = want
		return nil
	}
	for _, tid := range order {
		require.NoError(t, c.expectTenant(tenants[tid], false, collect))
	}
	for i := range unrelated {
		require.NoError(t, collect(unrelated[i].Name, expected(&unrelated[i])))
	}

	wantKeys := 0
	for _, a := range f.AfterApply {
		if IsToolKey(a.Key) {
			continue
		}
		wantKeys++
		e, ok := got[a.Key]
		if !assert.True(t, ok, "Expect lacks %s", a.Key) {
			continue
		}
		assert.Equal(t, a.Type, e.Type, a.Key)
		assert.Equal(t, a.hasTTL(), e.HasTTL, "TTL of %s", a.Key)
		switch a.Type {
		case TypeHash:
			assert.Equal(t, a.fields(t), e.Fields, a.Key)
		case TypeString:
			var v string
			require.NoError(t, json.Unmarshal(a.Value, &v))
			assert.Equal(t, v, e.Value, a.Key)
		case TypeSet:
			var v []string
			require.NoError(t, json.Unmarshal(a.Value, &v))
			sort.Strings(v)
			assert.Equal(t, v, e.Value, a.Key)
		}
	}
	assert.Equal(t, wantKeys, len(got), "Expect lists exactly the fixture's keys")

	// After cleanup: no v0 tenant:* key.
	got = map[string]ExpectedKey{}
	for _, tid := range order {
		require.NoError(t, c.expectTenant(tenants[tid], true, collect))
	}
	for k := range got {
		assert.Contains(t, k, "{", "v0 key %s after cleanup", k)
	}
}

// collectExpect gathers an expectation in a map.
func collectExpect(t *testing.T, ef ExpectFunc, o Options) map[string]ExpectedKey {
	t.Helper()
	m := map[string]ExpectedKey{}
	require.NoError(t, ef(o, func(k string, e ExpectedKey) error {
		_, dup := m[k]
		require.False(t, dup, "key %q listed twice", k)
		m[k] = e
		return nil
	}))
	return m
}

// TestExpectLayoutsAgree: the v1 twins expected from v0 data, the v1 data
// converted in place and the current layout as written are the same keys
// (the layout-3 rendering computes milliseconds from the instant, Expect
// by parsing the RFC3339 string).
func TestExpectLayoutsAgree(t *testing.T) {
	o := smallOptions()
	v0 := collectExpect(t, ExpectAfterCleanup, o)
	full := collectExpect(t, Expect, o)
	v0keys := 0
	for k, e := range full {
		if _, ok := v0[k]; !ok {
			v0keys++
			assert.True(t, strings.HasPrefix(k, "tenant:") && !strings.Contains(k, "{"), k)
			_, hasEntity := e.Fields["entity"]
			assert.False(t, hasEntity, "v0 key %s unchanged", k)
		}
	}
	st, err := Count(o)
	require.NoError(t, err)
	assert.Equal(t, st.Keys-st.Unrelated, v0keys)
	assert.Equal(t, st.Keys, len(v0), "one twin per v0 key, plus unrelated keys")

	o1, o3 := o, o
	o1.Layout, o3.Layout = LayoutV1, LayoutV3
	assert.Equal(t, v0, collectExpect(t, Expect, o1))
	assert.Equal(t, v0, collectExpect(t, ExpectAfterCleanup, o1))
	o2 := o
	o2.Layout = LayoutV2
	assert.Equal(t, v0, collectExpect(t, Expect, o2), "layout 2 gains only entity")
	// Layout 3 as written equals what is expected of it.
	as3 := map[string]ExpectedKey{}
	require.NoError(t, ForEachKey(o3, func(k Key) error { as3[k.Name] = expected(&k); return nil }))
	assert.Equal(t, v0, as3)

	// Prefixed: the same keys under "dep:" (outpost:lock stays unprefixed).
	o1.DeploymentID = "dep"
	dep := collectExpect(t, Expect, o1)
	require.Len(t, dep, len(v0))
	for k, e := range v0 {
		name := "dep:" + k
		if k == "outpost:lock" {
			name = k
		}
		d, ok := dep[name]
		if assert.True(t, ok, name) {
			if k == "tenant_idx" && e.Type == TypeHash {
				e.Fields = map[string]string{"stand_in": "tenant search index", "on": "HASH", "prefix": "dep:tenant:"}
			}
			assert.Equal(t, e, d, name)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	for name, o := range map[string]Options{
		"layout 0 with deployment id": {Layout: 0, DeploymentID: "dep", Tenants: 1},
		"layout 4":                    {Layout: 4},
		"ratio above 1":               {SoftDeletedRatio: 1.5},
		"negative tenants":            {Tenants: -1},
		"bad zone":                    {Zones: []string{"Europe/Paris"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := ForEachKey(o, func(Key) error { return nil })
			require.Error(t, err)
			assert.Equal(t, report.CodeConfig, report.CodeOf(err))
			_, err = Write(context.Background(), redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), o)
			assert.Equal(t, report.CodeConfig, report.CodeOf(err), "refused before touching Redis")
			assert.Equal(t, report.CodeConfig, report.CodeOf(Expect(o, func(string, ExpectedKey) error { return nil })))
		})
	}
	_, err := WritePostgres(context.Background(), nil, PGOptions{Version: 5})
	assert.Equal(t, report.CodeConfig, report.CodeOf(err))
}

// writeMigrated writes v0 data plus its layout-3 rendering without a
// prefix: exactly the keyspace migrations 001-003 must leave behind.
func writeMigrated(t *testing.T, ctx context.Context, c redis.UniversalClient, o Options) {
	t.Helper()
	mustWrite(t, ctx, c, o)
	o3 := o
	o3.Layout, o3.UnrelatedKeys = LayoutV3, 0
	mustWrite(t, ctx, c, o3)
}

func TestCheckStandalone(t *testing.T) {
	ctx := testCtx(t)
	o := smallOptions()
	srv := servertest.Redis(t)
	c := srv.Client(t)

	// Not migrated yet: every twin is missing.
	mustWrite(t, ctx, c, o)
	diffs, checked, err := Check(ctx, c, o, Expect)
	require.NoError(t, err)
	st, _ := Count(o)
	assert.Equal(t, 2*st.Keys-st.Unrelated, checked)
	assert.Equal(t, st.Keys-st.Unrelated, diffTotal(diffs), "one missing twin per v0 key")
	assert.Len(t, diffs, maxDiffs+1, "capped list")
	assert.Contains(t, diffs[0], "missing key")

	o3 := o
	o3.Layout, o3.UnrelatedKeys = LayoutV3, 0
	mustWrite(t, ctx, c, o3)
	// The tool's own keys are ignored.
	require.NoError(t, c.HSet(ctx, "outpost:migration:001_hash_tags", "status", "applied").Err())
	require.NoError(t, c.Set(ctx, ".outpost:migration_lock", "tok", time.Hour).Err())
	require.NoError(t, c.HSet(ctx, "{.outpost:migration_lock}:checkpoint:x", "cursor", "0").Err())
	diffs, checked, err = Check(ctx, c, o, Expect)
	require.NoError(t, err)
	assert.Empty(t, diffs)
	assert.Equal(t, 2*st.Keys-st.Unrelated, checked)

	// Every kind of difference is reported.
	var tn, deleted Tenant
	require.NoError(t, ForEachTenant(o, func(x Tenant) error {
		if tn.ID == "" && !x.Deleted && len(x.Destinations) > 0 && !x.Destinations[0].Deleted {
			tn = x
		}
		if deleted.ID == "" && x.Deleted {
			deleted = x
		}
		return nil
	}))
	twin := "tenant:{" + tn.ID + "}:tenant"
	dest := "tenant:{" + tn.ID + "}:destination:" + tn.Destinations[0].ID
	require.NoError(t, c.HSet(ctx, twin, "created_at", "2025-01-01T00:00:00Z", "extra", "x").Err())
	require.NoError(t, c.HDel(ctx, dest, "entity").Err())
	require.NoError(t, c.Persist(ctx, "tenant:{"+deleted.ID+"}:tenant").Err())
	require.NoError(t, c.Del(ctx, "outpost:installation_id").Err())
	require.NoError(t, c.Set(ctx, "tenant:stray", "x", 0).Err())
	require.NoError(t, c.Del(ctx, "outpost:log_retention_ttl").Err())
	require.NoError(t, c.SAdd(ctx, "outpost:log_retention_ttl", "x").Err())
	diffs, _, err = Check(ctx, c, o, Expect)
	require.NoError(t, err)
	all := strings.Join(diffs, "\n")
	for _, want := range []string{
		fmt.Sprintf("key %q: field \"created_at\" = \"2025-01-01T00:00:00Z\", want", twin),
		fmt.Sprintf("key %q: unexpected field \"extra\"", twin),
		fmt.Sprintf("key %q: field \"entity\" missing, want \"destination\"", dest),
		fmt.Sprintf("key %q: has no TTL, want one", "tenant:{"+deleted.ID+"}:tenant"),
		`missing key "outpost:installation_id"`,
		`extra key "tenant:stray"`,
		`key "outpost:log_retention_ttl": type set, want string`,
	} {
		assert.Contains(t, all, want)
	}
	assert.Len(t, diffs, 7, all)

	// A TTL reset to a full 7 days is above the one written.
	require.NoError(t, c.PExpire(ctx, "tenant:{"+deleted.ID+"}:tenant", sevenDays).Err())
	diffs, _, _ = Check(ctx, c, o, Expect)
	assert.Contains(t, strings.Join(diffs, "\n"), "is above the")
}

func TestCheckAfterCleanup(t *testing.T) {
	ctx := testCtx(t)
	o := smallOptions()
	c := servertest.Redis(t).Client(t)
	writeMigrated(t, ctx, c, o)
	st, _ := Count(o)
	diffs, checked, err := Check(ctx, c, o, ExpectAfterCleanup)
	require.NoError(t, err)
	assert.Equal(t, st.Keys, checked)
	assert.Equal(t, st.Keys-st.Unrelated, diffTotal(diffs), "every v0 key is extra")
	assert.True(t, strings.HasPrefix(diffs[0], "extra key \"tenant:"), diffs[0])

	require.NoError(t, ForEachKey(o, func(k Key) error {
		if k.Kind != KindUnrelated {
			return c.Del(ctx, k.Name).Err()
		}
		return nil
	}))
	diffs, _, err = Check(ctx, c, o, ExpectAfterCleanup)
	require.NoError(t, err)
	assert.Empty(t, diffs)
}

// diffTotal is the number of differences a capped list stands for.
func diffTotal(diffs []string) int {
	if n := len(diffs); n > 0 {
		var more int
		if _, err := fmt.Sscanf(diffs[n-1], "... and %d more differences", &more); err == nil {
			return n - 1 + more
		}
	}
	return len(diffs)
}

// TestCluster: Write spreads the keys over the three masters, and Check
// scans every master; the keyspace is the one written to a standalone
// server.
func TestCluster(t *testing.T) {
	ctx := testCtx(t)
	o := smallOptions()
	cl := servertest.RedisCluster(t).Client(t)
	st := mustWrite(t, ctx, cl, o)

	h, n := dump(t, ctx, cl)
	assert.Equal(t, st.Keys, n)
	assert.Equal(t, wantDumpV0, h, "same keyspace as on a standalone server")
	var (
		sizes []int64
		mu    sync.Mutex
	)
	require.NoError(t, cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		sz, err := m.DBSize(ctx).Result()
		mu.Lock() // ForEachMaster calls concurrently
		sizes = append(sizes, sz)
		mu.Unlock()
		return err
	}))
	require.Len(t, sizes, 3)
	var total int64
	for _, s := range sizes {
		assert.Positive(t, s, "every master holds keys: %v", sizes)
		total += s
	}
	assert.EqualValues(t, st.Keys, total)

	o3 := o
	o3.Layout, o3.UnrelatedKeys = LayoutV3, 0
	mustWrite(t, ctx, cl, o3)
	diffs, checked, err := Check(ctx, cl, o, Expect)
	require.NoError(t, err)
	assert.Empty(t, diffs)
	assert.Equal(t, 2*st.Keys-st.Unrelated, checked)
	// An extra key on any master is found.
	for i := 0; i < 6; i++ {
		require.NoError(t, cl.Set(ctx, fmt.Sprintf("stray:%d", i), "x", 0).Err())
	}
	diffs, _, err = Check(ctx, cl, o, Expect)
	require.NoError(t, err)
	assert.Len(t, diffs, 6)
}

// TestWriteSpeed writes about 500k keys (100k tenants, 3 destinations on
// average) and reports the rate; the target is under ~5 s on 2 cores.
func TestWriteSpeed(t *testing.T) {
	ctx := testCtx(t)
	c := servertest.Redis(t).Client(t)
	o := DefaultOptions()
	o.Tenants = 100_000
	start := time.Now()
	st, err := Write(ctx, c, o)
	require.NoError(t, err)
	d := time.Since(start)
	t.Logf("wrote %d keys (%d commands) in %v: %.0f keys/s", st.Keys, st.Commands, d, float64(st.Keys)/d.Seconds())
	assert.Greater(t, st.Keys, 450_000)
	assert.Less(t, d, 15*time.Second, "far off the ~5 s target")
	assert.EqualValues(t, st.Keys, c.DBSize(ctx).Val())
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
	ctx := testCtx(t)
	o := PGOptions{Version: 4, Events: 20_000, DeliveriesPerEvent: 3, OrphanRatio: 0.05, Seed: 7}
	var dumps []string
	for run := 0; run < 2; run++ {
		conn := pgSetup(t, ctx, 4)
		start := time.Now()
		st, err := WritePostgres(ctx, conn, o)
		require.NoError(t, err)
		t.Logf("wrote %+v in %v", st, time.Since(start))
		n := int64(o.Events * o.DeliveriesPerEvent)
		orphans := n * 5 / 100
		assert.Equal(t, PGStats{Events: int64(o.Events), Deliveries: n, Orphans: orphans, IndexRows: n - orphans}, st)
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
	ctx := testCtx(t)
	for v := 1; v <= 3; v++ {
		conn := pgSetup(t, ctx, v)
		o := PGOptions{Version: v, Events: 500, DeliveriesPerEvent: 2, OrphanRatio: 0.1, Seed: 1}
		st, err := WritePostgres(ctx, conn, o)
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
	_, err := WritePostgres(ctx, conn, PGOptions{Version: 4, Events: 10, DeliveriesPerEvent: 1})
	require.Error(t, err)
	assert.Equal(t, report.CodeDataRefused, report.CodeOf(err), "%v", err)
}
