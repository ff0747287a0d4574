package ansible

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// snapshot is everything the stores hold: each Redis key's type, content
// and whether it has a TTL, and PostgreSQL's schema_migrations rows, the
// columns of every table and the number of events.
func (s *stores) snapshot(t *testing.T, pg *servertest.PGDatabase) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	iter := s.client.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		ttl, _ := s.client.PTTL(ctx, k).Result()
		// A TTL ticks down; whether there is one is what a write would
		// change.
		out = append(out, fmt.Sprintf("redis %q %s ttl>0:%v", k, s.content(t, k), ttl > 0))
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if pg != nil {
		conn := pg.Connect(t)
		for _, q := range []string{
			`SELECT version::text || ' ' || dirty::text FROM schema_migrations`,
			`SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = current_schema()`,
			`SELECT 'rows ' || count(*)::text FROM events`,
		} {
			rows, err := conn.Query(ctx, q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				out = append(out, "pg "+v)
			}
			rows.Close()
		}
	}
	slices.Sort(out)
	return out
}

// content is a key's type and value in an order that does not depend on
// the server's encoding (a hash's DUMP follows its dict's order, which
// rehashing changes without any write).
func (s *stores) content(t *testing.T, k string) string {
	t.Helper()
	ctx := context.Background()
	typ, err := s.client.Type(ctx, k).Result()
	if err != nil {
		t.Fatal(err)
	}
	var v any
	switch typ {
	case "hash":
		m, err := s.client.HGetAll(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		v = m // fmt prints a map's keys sorted
	case "string":
		v, err = s.client.Get(ctx, k).Result()
	case "set":
		var m []string
		m, err = s.client.SMembers(ctx, k).Result()
		slices.Sort(m)
		v = m
	default:
		v, err = s.client.Dump(ctx, k).Result()
	}
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s %q", typ, fmt.Sprint(v))
}

// changes lists the snapshot entries only one side has (at most 20).
func changes(before, after []string) string {
	var out []string
	for _, b := range before {
		if !slices.Contains(after, b) {
			out = append(out, "- "+b)
		}
	}
	for _, a := range after {
		if !slices.Contains(before, a) {
			out = append(out, "+ "+a)
		}
	}
	return strings.Join(out[:min(len(out), 20)], "\n")
}

// diffOf returns the diff Ansible handed to the callback for the task, in
// diff mode.
func diffOf(t *testing.T, p playResult, prefix string) (before, after string) {
	t.Helper()
	for _, e := range p.events {
		if e.Event == "diff" && strings.HasPrefix(taskName(e), prefix) {
			d, _ := e.Result["diff"].(map[string]any)
			before, _ = d["before"].(string)
			after, _ = d["after"].(string)
			return before, after
		}
	}
	t.Fatalf("no diff for %q (was --diff passed?):\n%s", prefix, p.output)
	return "", ""
}

// TestAnsibleCheckAndDiff runs the role's example playbook with the real
// ansible-playbook, binary and servers:
//   - `--check --diff` on stores that need every migration: plan runs, apply
//     reports what it would apply (changed, with a diff pending -> applied)
//     and runs nothing, verify is skipped; the stores are exactly as before,
//     key by key and row by row;
//   - `--diff`: the real run, whose diff shows the states apply left;
//   - `--check --diff` again, up to date: nothing changed, verify runs.
func TestAnsibleCheckAndDiff(t *testing.T) {
	t.Parallel()
	s := newStores(t, true)
	pg := s.pg
	argv := []string{outpostBinary(t)}
	before := s.snapshot(t, pg)

	p := runPlaybook(t, argv, s.env, nil, nil, "--check", "--diff")
	if p.exitCode != 0 {
		t.Fatalf("--check failed (exit %d):\n%s", p.exitCode, p.output)
	}
	checkStep(t, p.final(t, "Plan"), "ok", 2, "pending", true)
	apply := p.final(t, "Apply")
	would, _ := apply.Result["would_apply"].([]any)
	if apply.Event != "ok" || !boolOf(apply, "changed") || len(would) == 0 || numOf(apply, "rc") != 0 {
		t.Fatalf("apply in check mode: %s %v", apply.Event, apply.Result)
	}
	if !slices.Contains(would, any("redis/001_hash_tags")) || !strings.Contains(fmt.Sprint(would), "sql/0000") {
		t.Fatalf("would apply %v", would)
	}
	if msg, _ := apply.Result["msg"].(string); !strings.HasPrefix(msg, fmt.Sprintf("would apply %d migrations", len(would))) {
		t.Fatalf("msg %q", msg)
	}
	if _, ok := apply.Result["stdout"]; ok {
		t.Fatal("apply ran a command in check mode")
	}
	b, a := diffOf(t, p, "Apply")
	if !strings.Contains(b, "redis/001_hash_tags: pending") || !strings.Contains(a, "redis/001_hash_tags: applied") || strings.Contains(a, ": pending") {
		t.Fatalf("diff in check mode:\n--- before\n%s--- after\n%s", b, a)
	}
	if v := p.final(t, "Verify"); v.Event != "skipped" {
		t.Fatalf("verify ran on data check mode did not migrate: %+v", v)
	}
	if _, changed, failures := p.stats(t); changed != 2 || failures != 0 {
		t.Fatalf("check mode stats: changed %d failures %d", changed, failures)
	}
	if msg, _ := p.final(t, "Report").Result["msg"].(string); !strings.Contains(msg, "would apply") {
		t.Fatalf("report: %q", msg)
	}
	if after := s.snapshot(t, pg); !slices.Equal(before, after) {
		t.Fatalf("check mode changed the stores:\n%s", changes(before, after))
	}

	// The real run, with --diff: the diff is the states apply left.
	p = runPlaybook(t, argv, s.env, nil, nil, "--diff")
	if p.exitCode != 0 {
		t.Fatalf("run failed (exit %d):\n%s", p.exitCode, p.output)
	}
	checkStep(t, p.final(t, "Apply"), "ok", 0, "applied", true)
	b, a = diffOf(t, p, "Apply")
	if !strings.Contains(b, "redis/001_hash_tags: pending") || !strings.Contains(a, "redis/001_hash_tags: applied") || strings.Contains(a, ": pending") {
		t.Fatalf("diff of the run:\n--- before\n%s--- after\n%s", b, a)
	}
	checkStep(t, p.final(t, "Verify"), "ok", 0, "verified", false)
	s.checkMigrated(t)

	// Up to date: check mode changes nothing and verifies.
	migrated := s.snapshot(t, pg)
	if slices.Equal(before, migrated) {
		t.Fatal("the snapshot does not see what apply changed")
	}
	p = runPlaybook(t, argv, s.env, nil, nil, "--check", "--diff")
	if p.exitCode != 0 {
		t.Fatalf("second --check failed (exit %d):\n%s", p.exitCode, p.output)
	}
	checkStep(t, p.final(t, "Plan"), "ok", 0, "up_to_date", false)
	if apply := p.final(t, "Apply"); apply.Event != "skipped" {
		t.Fatalf("apply: %+v", apply)
	}
	checkStep(t, p.final(t, "Verify"), "ok", 0, "verified", false)
	if _, changed, failures := p.stats(t); changed != 0 || failures != 0 {
		t.Fatalf("up to date, check mode: changed %d failures %d", changed, failures)
	}
	if after := s.snapshot(t, pg); !slices.Equal(migrated, after) {
		t.Fatalf("check mode changed migrated stores:\n%s", changes(migrated, after))
	}
}
