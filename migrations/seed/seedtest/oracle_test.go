package seedtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-migrate/outpost/migrations/seed"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// The recorded dumps and paths of this package's tests (see WantDumpV0).
const (
	fixturePath = "testdata/redis-v0-to-current.json"
	sevenDays   = 7 * 24 * time.Hour
)

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
	tenants := map[string]*seed.Tenant{}
	var order []string
	tenantOf := func(tid string) *seed.Tenant {
		if tn, ok := tenants[tid]; ok {
			return tn
		}
		tenants[tid] = &seed.Tenant{ID: tid}
		order = append(order, tid)
		return tenants[tid]
	}
	var unrelated []seed.Key
	for _, b := range f.Before {
		k := seed.Key{Name: b.Key, Type: b.Type}
		if b.hasTTL() {
			ms, err := strconv.ParseInt(string(b.TTLMs), 10, 64)
			require.NoError(t, err)
			k.TTL = time.Duration(ms) * time.Millisecond
		}
		if b.Type == seed.TypeHash {
			for n, v := range b.fields(t) {
				k.Fields = append(k.Fields, seed.Field{Name: n, Value: v})
			}
		}
		rest, isTenant := strings.CutPrefix(b.Key, "tenant:")
		switch {
		case !isTenant:
			k.Kind = seed.KindUnrelated
			switch b.Type {
			case seed.TypeString:
				require.NoError(t, json.Unmarshal(b.Value, &k.Value))
			case seed.TypeSet:
				require.NoError(t, json.Unmarshal(b.Value, &k.Members))
			}
			unrelated = append(unrelated, k)
		case strings.Contains(rest, ":destination:"):
			i := strings.Index(rest, ":destination:")
			k.Kind = seed.KindDestination
			tn := tenantOf(rest[:i])
			tn.Destinations = append(tn.Destinations, seed.Destination{ID: rest[i+len(":destination:"):], Key: k})
		case strings.HasSuffix(rest, ":destinations"):
			k.Kind = seed.KindSummary
			tn := tenantOf(strings.TrimSuffix(rest, ":destinations"))
			tn.Summary = &k
		default:
			k.Kind = seed.KindTenant
			tenantOf(rest).Key = k
		}
	}
	got := map[string]ExpectedKey{}
	collect := func(key string, want ExpectedKey) error {
		_, dup := got[key]
		require.False(t, dup, key)
		got[key] = want
		return nil
	}
	for _, tid := range order {
		require.NoError(t, expectTenant(seed.LayoutV0, tenants[tid], false, collect))
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
		case seed.TypeHash:
			assert.Equal(t, a.fields(t), e.Fields, a.Key)
		case seed.TypeString:
			var v string
			require.NoError(t, json.Unmarshal(a.Value, &v))
			assert.Equal(t, v, e.Value, a.Key)
		case seed.TypeSet:
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
		require.NoError(t, expectTenant(seed.LayoutV0, tenants[tid], true, collect))
	}
	for k := range got {
		assert.Contains(t, k, "{", "v0 key %s after cleanup", k)
	}
}

// collectExpect gathers an expectation in a map.
func collectExpect(t *testing.T, ef ExpectFunc, o seed.Options) map[string]ExpectedKey {
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
	o := SmallOptions()
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
	st, err := seed.Count(o)
	require.NoError(t, err)
	assert.Equal(t, st.Keys-st.Unrelated, v0keys)
	assert.Equal(t, st.Keys, len(v0), "one twin per v0 key, plus unrelated keys")

	o1, o3 := o, o
	o1.Layout, o3.Layout = seed.LayoutV1, seed.LayoutV3
	assert.Equal(t, v0, collectExpect(t, Expect, o1))
	assert.Equal(t, v0, collectExpect(t, ExpectAfterCleanup, o1))
	o2 := o
	o2.Layout = seed.LayoutV2
	assert.Equal(t, v0, collectExpect(t, Expect, o2), "layout 2 gains only entity")
	// Layout 3 as written equals what is expected of it.
	as3 := map[string]ExpectedKey{}
	require.NoError(t, seed.ForEachKey(o3, func(k seed.Key) error { as3[k.Name] = expected(&k); return nil }))
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
			if k == "tenant_idx" && e.Type == seed.TypeHash {
				e.Fields = map[string]string{"stand_in": "tenant search index", "on": "HASH", "prefix": "dep:tenant:"}
			}
			assert.Equal(t, e, d, name)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	for name, o := range map[string]seed.Options{
		"layout 0 with deployment id": {Layout: 0, DeploymentID: "dep", Tenants: 1},
		"layout 4":                    {Layout: 4},
		"ratio above 1":               {SoftDeletedRatio: 1.5},
		"negative tenants":            {Tenants: -1},
		"bad zone":                    {Zones: []string{"Europe/Paris"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := seed.ForEachKey(o, func(seed.Key) error { return nil })
			require.Error(t, err)
			assert.Equal(t, report.CodeConfig, report.CodeOf(err))
			_, err = seed.Write(context.Background(), redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), o)
			assert.Equal(t, report.CodeConfig, report.CodeOf(err), "refused before touching Redis")
			assert.Equal(t, report.CodeConfig, report.CodeOf(Expect(o, func(string, ExpectedKey) error { return nil })))
		})
	}
	_, err := seed.WritePostgres(context.Background(), nil, seed.PGOptions{Version: 5})
	assert.Equal(t, report.CodeConfig, report.CodeOf(err))
}

// writeMigrated writes v0 data plus its layout-3 rendering without a
// prefix: exactly the keyspace migrations 001-003 must leave behind.
func writeMigrated(t *testing.T, ctx context.Context, c redis.UniversalClient, o seed.Options) {
	t.Helper()
	MustWrite(t, ctx, c, o)
	o3 := o
	o3.Layout, o3.UnrelatedKeys = seed.LayoutV3, 0
	MustWrite(t, ctx, c, o3)
}

func TestCheckStandalone(t *testing.T) {
	ctx := Ctx(t)
	o := SmallOptions()
	srv := servertest.Redis(t)
	c := srv.Client(t)

	// Not migrated yet: every twin is missing.
	MustWrite(t, ctx, c, o)
	diffs, checked, err := Check(ctx, c, o, Expect)
	require.NoError(t, err)
	st, _ := seed.Count(o)
	assert.Equal(t, 2*st.Keys-st.Unrelated, checked)
	assert.Equal(t, st.Keys-st.Unrelated, diffTotal(diffs), "one missing twin per v0 key")
	assert.Len(t, diffs, maxDiffs+1, "capped list")
	assert.Contains(t, diffs[0], "missing key")

	o3 := o
	o3.Layout, o3.UnrelatedKeys = seed.LayoutV3, 0
	MustWrite(t, ctx, c, o3)
	// The tool's own keys are ignored.
	require.NoError(t, c.HSet(ctx, "outpost:migration:001_hash_tags", "status", "applied").Err())
	require.NoError(t, c.Set(ctx, ".outpost:migration_lock", "tok", time.Hour).Err())
	require.NoError(t, c.HSet(ctx, "{.outpost:migration_lock}:checkpoint:x", "cursor", "0").Err())
	diffs, checked, err = Check(ctx, c, o, Expect)
	require.NoError(t, err)
	assert.Empty(t, diffs)
	assert.Equal(t, 2*st.Keys-st.Unrelated, checked)

	// Every kind of difference is reported.
	var tn, deleted seed.Tenant
	require.NoError(t, seed.ForEachTenant(o, func(x seed.Tenant) error {
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
	ctx := Ctx(t)
	o := SmallOptions()
	c := servertest.Redis(t).Client(t)
	writeMigrated(t, ctx, c, o)
	st, _ := seed.Count(o)
	diffs, checked, err := Check(ctx, c, o, ExpectAfterCleanup)
	require.NoError(t, err)
	assert.Equal(t, st.Keys, checked)
	assert.Equal(t, st.Keys-st.Unrelated, diffTotal(diffs), "every v0 key is extra")
	assert.True(t, strings.HasPrefix(diffs[0], "extra key \"tenant:"), diffs[0])

	require.NoError(t, seed.ForEachKey(o, func(k seed.Key) error {
		if k.Kind != seed.KindUnrelated {
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

// TestCluster: seed.Write spreads the keys over the three masters, and Check
// scans every master; the keyspace is the one written to a standalone
// server.
func TestCluster(t *testing.T) {
	ctx := Ctx(t)
	o := SmallOptions()
	cl := servertest.RedisCluster(t).Client(t)
	st := MustWrite(t, ctx, cl, o)

	h, n := Dump(t, ctx, cl)
	assert.Equal(t, st.Keys, n)
	assert.Equal(t, WantDumpV0, h, "same keyspace as on a standalone server")
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
	o3.Layout, o3.UnrelatedKeys = seed.LayoutV3, 0
	MustWrite(t, ctx, cl, o3)
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
