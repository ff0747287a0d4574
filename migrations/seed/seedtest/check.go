package seedtest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outpost-migrate/outpost/migrations/seed"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/report"
)

const (
	// maxDiffs caps the differences Check lists; the last entry then says
	// how many more there were.
	maxDiffs   = 1000
	checkBatch = 500
	scanCount  = 1000
	// ttlSlack absorbs PEXPIRE/PTTL rounding when a live TTL is compared
	// with the TTL the key was written with.
	ttlSlack = time.Second
)

// IsToolKey tells whether a key belongs to the migration tool itself (the
// lock P.outpost:migration_lock, checkpoints and run records under
// {P.outpost:migration_lock}:..., and the state P+outpost:migration:<id>):
// Check ignores them.
func IsToolKey(name string) bool {
	// The restore probe (rdb.go) lives only inside one MULTI/EXEC, so a key
	// of it left behind is litter: it is not a tool key, and Check reports it.
	return strings.Contains(name, "outpost:migration") || strings.Contains(name, ".outpost:migration_lock")
}

// Check compares the live keyspace with the expectation expect(opts)
// (Expect or ExpectAfterCleanup) and returns the differences, each one line
// naming the key: missing keys, keys of the wrong type, missing, extra or
// different fields (values quoted, so binary shows), different values,
// TTL present or absent, a TTL above the one written, and extra keys
// (every key of every master, through SCAN; the tool's own keys are
// ignored, see IsToolKey). checked is the number of expected keys compared.
//
// Memory stays bounded when the keyspace matches: expected keys are read in
// batches by name, and extra keys are found by counting; only when the
// count differs is the set of expected names held to name the extras.
// err is for a store that failed, not for a difference.
func Check(ctx context.Context, client redis.UniversalClient, opts seed.Options, expect ExpectFunc) (diffs []string, checked int, err error) {
	var (
		d       diffList
		present int
		batch   []expectedEntry
	)
	flushBatch := func() error {
		n, err := compareBatch(ctx, client, batch, &d)
		present += n
		checked += len(batch)
		batch = batch[:0]
		return err
	}
	err = expect(opts, func(key string, want ExpectedKey) error {
		batch = append(batch, expectedEntry{key, want})
		if len(batch) >= checkBatch {
			return flushBatch()
		}
		return nil
	})
	if err == nil {
		err = flushBatch()
	}
	if err != nil {
		return d.list(), checked, err
	}

	live := 0
	if err := ScanAll(ctx, client, func(keys []string) error {
		for _, k := range keys {
			if !IsToolKey(k) {
				live++
			}
		}
		return nil
	}); err != nil {
		return d.list(), checked, err
	}
	if live != present {
		// Some key is not expected (or SCAN returned one twice): name them.
		want := make(map[string]struct{}, checked)
		if err := expect(opts, func(key string, _ ExpectedKey) error {
			want[key] = struct{}{}
			return nil
		}); err != nil {
			return d.list(), checked, err
		}
		var extra []string
		seen := map[string]struct{}{}
		if err := ScanAll(ctx, client, func(keys []string) error {
			for _, k := range keys {
				if _, ok := want[k]; ok || IsToolKey(k) {
					continue
				}
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					extra = append(extra, k)
				}
			}
			return nil
		}); err != nil {
			return d.list(), checked, err
		}
		sort.Strings(extra)
		for _, k := range extra {
			d.add("extra key %q", k)
		}
	}
	return d.list(), checked, nil
}

type expectedEntry struct {
	key  string
	want ExpectedKey
}

type diffList struct {
	items []string
	more  int
}

func (d *diffList) add(format string, args ...any) {
	if len(d.items) >= maxDiffs {
		d.more++
		return
	}
	d.items = append(d.items, fmt.Sprintf(format, args...))
}

func (d *diffList) list() []string {
	if d.more > 0 {
		return append(d.items, fmt.Sprintf("... and %d more differences", d.more))
	}
	return d.items
}

// compareBatch reads the keys of batch (TYPE, PTTL and the content for the
// expected type) in one pipeline and records differences. It returns how
// many of the keys exist.
func compareBatch(ctx context.Context, client redis.UniversalClient, batch []expectedEntry, d *diffList) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	type reads struct {
		typ     *redis.StatusCmd
		ttl     *redis.DurationCmd
		content redis.Cmder
	}
	rs := make([]reads, len(batch))
	pipe := client.Pipeline()
	for i, e := range batch {
		rs[i].typ = pipe.Type(ctx, e.key)
		rs[i].ttl = pipe.PTTL(ctx, e.key)
		switch e.want.Type {
		case seed.TypeHash:
			rs[i].content = pipe.HGetAll(ctx, e.key)
		case seed.TypeString:
			rs[i].content = pipe.Get(ctx, e.key)
		case seed.TypeSet:
			rs[i].content = pipe.SMembers(ctx, e.key)
		case seed.TypeZSet:
			rs[i].content = pipe.ZRangeWithScores(ctx, e.key, 0, -1)
		default:
			return 0, report.E(report.CodeInternal, "seed: expected key %q has unknown type %q", e.key, e.want.Type)
		}
	}
	_, _ = pipe.Exec(ctx)
	present := 0
	for i, e := range batch {
		r := rs[i]
		if err := r.typ.Err(); err != nil {
			return present, fmt.Errorf("seed: check: TYPE %q: %w", e.key, err)
		}
		typ := r.typ.Val()
		if typ == "none" {
			d.add("missing key %q (%s)", e.key, e.want.Type)
			continue
		}
		present++
		if typ != e.want.Type {
			d.add("key %q: type %s, want %s", e.key, typ, e.want.Type)
			continue
		}
		if err := r.ttl.Err(); err != nil {
			return present, fmt.Errorf("seed: check: PTTL %q: %w", e.key, err)
		}
		if err := r.content.Err(); err != nil && err != redis.Nil {
			return present, fmt.Errorf("seed: check: read %q: %w", e.key, err)
		}
		compareTTL(e, r.ttl.Val(), d)
		switch e.want.Type {
		case seed.TypeHash:
			compareFields(e.key, r.content.(*redis.MapStringStringCmd).Val(), e.want.Fields, d)
		case seed.TypeString:
			if got, want := r.content.(*redis.StringCmd).Val(), e.want.Value.(string); got != want {
				d.add("key %q: value %q, want %q", e.key, got, want)
			}
		case seed.TypeSet:
			got := r.content.(*redis.StringSliceCmd).Val()
			sort.Strings(got)
			want := e.want.Value.([]string)
			if !slices.Equal(got, want) {
				d.add("key %q: members %q, want %q", e.key, got, want)
			}
		case seed.TypeZSet:
			zs := r.content.(*redis.ZSliceCmd).Val()
			got := make([]seed.ZMember, len(zs))
			for j, z := range zs {
				got[j] = seed.ZMember{Member: fmt.Sprint(z.Member), Score: z.Score}
			}
			want := e.want.Value.([]seed.ZMember)
			if !slices.Equal(got, want) {
				d.add("key %q: members %v, want %v", e.key, got, want)
			}
		}
	}
	return present, nil
}

// compareTTL checks TTL presence, and that a live TTL is not above the one
// written (a copy that reset the TTL to a full 7 days would be).
func compareTTL(e expectedEntry, ttl time.Duration, d *diffList) {
	has := ttl > 0 // PTTL -1 (none) comes back as a negative duration
	switch {
	case has && !e.want.HasTTL:
		d.add("key %q: has a TTL (%d ms), want none", e.key, ttl.Milliseconds())
	case !has && e.want.HasTTL:
		d.add("key %q: has no TTL, want one (written with %d ms)", e.key, e.want.TTLMs)
	case has && e.want.TTLMs > 0 && ttl > time.Duration(e.want.TTLMs)*time.Millisecond+ttlSlack:
		d.add("key %q: TTL %d ms is above the %d ms it was written with", e.key, ttl.Milliseconds(), e.want.TTLMs)
	}
}

func compareFields(key string, got, want map[string]string, d *diffList) {
	names := make([]string, 0, len(want)+len(got))
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		g, gok := got[n]
		w, wok := want[n]
		switch {
		case !gok:
			d.add("key %q: field %q missing, want %q", key, n, w)
		case !wok:
			d.add("key %q: unexpected field %q = %q", key, n, g)
		case g != w:
			d.add("key %q: field %q = %q, want %q", key, n, g, w)
		}
	}
}

// ScanAll SCANs every master (ForEachMaster on a cluster, never a random
// node) and hands each batch of names to fn, serialised.
func ScanAll(ctx context.Context, client redis.UniversalClient, fn func(keys []string) error) error {
	var mu sync.Mutex
	scanNode := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, "", scanCount).Result()
			if err != nil {
				return fmt.Errorf("seed: check: SCAN %s: %w", c.Options().Addr, err)
			}
			mu.Lock()
			err = fn(keys)
			mu.Unlock()
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		// ForEachMaster returns the first error without stopping the
		// others: cancel them.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			err := scanNode(ctx, n)
			if err != nil {
				cancel()
			}
			return err
		})
	case *redis.Client:
		return scanNode(ctx, c)
	default:
		return report.E(report.CodeConfig, "seed: check: unsupported Redis client %T (want *redis.Client or *redis.ClusterClient)", client)
	}
}
