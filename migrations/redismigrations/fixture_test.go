package redismigrations_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/redismigrations"

	"github.com/outpost-migrate/outpost/report"
)

func TestMain(m *testing.M) { servertest.Main(m) }

type fixtureKey struct {
	Why    string          `json:"why"`
	Key    string          `json:"key"`
	Type   string          `json:"type"`
	TTLMs  any             `json:"ttl_ms"`
	Fields map[string]any  `json:"fields"`
	Value  json.RawMessage `json:"value"`
}

type fixture struct {
	Before     []fixtureKey `json:"before"`
	AfterApply []fixtureKey `json:"after_apply"`
}

func loadFixture(t *testing.T) fixture {
	b, err := os.ReadFile(filepath.Join("testdata", "redis-v0-to-current.json"))
	require.NoError(t, err)
	var f fixture
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

func fieldValue(t *testing.T, v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		b, err := base64.StdEncoding.DecodeString(x["base64"].(string))
		require.NoError(t, err)
		return string(b)
	}
	t.Fatalf("unexpected field value %#v", v)
	return ""
}

func seedFixture(t *testing.T, ctx context.Context, c goredis.UniversalClient, keys []fixtureKey) {
	for _, k := range keys {
		switch k.Type {
		case "hash":
			args := []any{}
			for f, v := range k.Fields {
				args = append(args, f, fieldValue(t, v))
			}
			require.NoError(t, c.HSet(ctx, k.Key, args...).Err())
		case "string":
			var s string
			require.NoError(t, json.Unmarshal(k.Value, &s))
			require.NoError(t, c.Set(ctx, k.Key, s, 0).Err())
		case "set":
			var s []string
			require.NoError(t, json.Unmarshal(k.Value, &s))
			for _, m := range s {
				require.NoError(t, c.SAdd(ctx, k.Key, m).Err())
			}
		}
		if ms, ok := k.TTLMs.(float64); ok {
			require.NoError(t, c.PExpire(ctx, k.Key, msDuration(ms)).Err())
		}
	}
}

func checkAfterApply(t *testing.T, ctx context.Context, c goredis.UniversalClient, f fixture) {
	for _, k := range f.AfterApply {
		if k.Type != "hash" {
			continue
		}
		got, err := c.HGetAll(ctx, k.Key).Result()
		require.NoError(t, err)
		want := map[string]string{}
		for fld, v := range k.Fields {
			if fld == "..." {
				continue
			}
			want[fld] = fieldValue(t, v)
		}
		if _, isState := k.Fields["status"]; isState {
			require.Equal(t, "applied", got["status"], k.Key)
			require.NotEmpty(t, got["applied_at"], k.Key)
			continue
		}
		require.Equal(t, want, got, "%s (%s)", k.Key, k.Why)
		ttl, err := c.PTTL(ctx, k.Key).Result()
		require.NoError(t, err)
		if k.TTLMs == nil {
			require.Less(t, ttl, time.Duration(0), "%s must have no TTL", k.Key)
		} else {
			require.Greater(t, ttl.Milliseconds(), int64(604800000-60000), "%s must keep its TTL", k.Key)
		}
	}
}

func TestFixtureStandalone(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Redis(t)
	c := srv.Client(t)
	f := loadFixture(t)
	seedFixture(t, ctx, c, f.Before)
	p := phaseFor(c, "", redisphase.Options{ScanCount: 3})

	plan, err := p.Plan(ctx)
	require.NoError(t, err)
	require.Len(t, plan, 3)
	require.Equal(t, report.State("pending"), plan[0].State)
	require.Equal(t, int64(9), plan[0].Estimate.Value, "nine v0 keys to copy")

	lines, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	for _, l := range lines {
		require.Equal(t, report.State("applied"), l.State, l.Name)
	}
	checkAfterApply(t, ctx, c, f)

	v, err := p.Verify(ctx, runFor("verify"))
	require.NoError(t, err)
	for _, l := range v {
		require.Equal(t, report.State("verified"), l.State, l.Name)
		require.Zero(t, l.IssuesTotal)
		require.Positive(t, l.Counts.Checked)
	}
	// Apply again: up to date, nothing changes.
	lines, err = p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	for _, l := range lines {
		require.Nil(t, l.Counts, l.Name)
	}

	_, err = p.Cleanup(ctx, runFor("cleanup"))
	require.NoError(t, err)
	keys, err := c.Keys(ctx, "tenant:*").Result()
	require.NoError(t, err)
	sort.Strings(keys)
	for _, k := range keys {
		_, ok := redismigrations.ParseV1("", k)
		require.True(t, ok, "after cleanup only hash-tagged keys remain, found %s", k)
	}
	require.Len(t, keys, 9)
	for _, k := range []string{"idempotency:publishmq:evt_1", "alert:t1:d1:cf", "outpost:installation_id"} {
		require.EqualValues(t, 1, c.Exists(ctx, k).Val(), k)
	}
}

func TestFixtureCluster(t *testing.T) {
	ctx := context.Background()
	cl := servertest.RedisCluster(t)
	c := cl.Client(t)
	f := loadFixture(t)
	seedFixture(t, ctx, c, f.Before)
	p := phaseFor(c, "", redisphase.Options{ScanCount: 3})
	lines, err := p.Apply(ctx, runFor("apply"))
	require.NoError(t, err)
	for _, l := range lines {
		require.Equal(t, report.State("applied"), l.State, l.Name)
		require.Len(t, l.Progress.Nodes, 3)
	}
	checkAfterApply(t, ctx, c, f)
	v, err := p.Verify(ctx, runFor("verify"))
	require.NoError(t, err)
	for _, l := range v {
		require.Equal(t, report.State("verified"), l.State)
	}
}
