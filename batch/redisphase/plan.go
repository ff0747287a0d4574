package redisphase

import (
	"context"
	"fmt"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

func (p *Phase) dbsize(ctx context.Context) (int64, error) {
	nodes, err := scan.Nodes(ctx, p.c)
	if err != nil {
		return 0, err
	}
	return scan.KeyCount(ctx, nodes)
}

// Plan implements batch.Phase: pending migrations with the number of keys
// each would change, counted exactly on a small keyspace and estimated from
// a sample on a large one.
func (p *Phase) Plan(ctx context.Context) ([]report.Migration, error) {
	lines, states, err := p.lines(ctx)
	if err != nil {
		return nil, err
	}
	todo, done := p.pending(states, "")
	if len(todo) > 0 {
		size, err := p.dbsize(ctx)
		if err != nil {
			return lines, err
		}
		ex := p.executor(nil, "", nil)
		sampled := size > p.opts.CountLimit
		if sampled {
			ex.Limit = p.opts.SampleSize
			// One chunk at a time: a sample stops at its size.
			ex.Window = 1
			// Sample without MATCH so that the share of matching keys can be
			// scaled to the whole keyspace.
			ex.Spec.Match = ""
		}
		res, err := ex.Pass(ctx, p.set.Check(todo, done))
		if err != nil {
			return lines, err
		}
		var seen int64
		for _, n := range res.Nodes {
			seen += n.Scanned
		}
		for i := range lines {
			if !has(todo, lines[i].Name) {
				continue
			}
			c := res.Tally.Counts(lines[i].Name)
			est := &report.Estimate{Units: "keys", Value: c.Changed, Method: "counted",
				Note: fmt.Sprintf("%d keys to %s, %d already right and kept as they are", c.Changed, verbOf(lines[i].Name, p.set), c.Unchanged)}
			if sampled && seen > 0 {
				est = &report.Estimate{Units: "keys", Method: "sampled", Sampled: seen,
					Value: int64(float64(c.Changed) / float64(seen) * float64(size)),
					Note:  fmt.Sprintf("%d of %d sampled keys need work; scaled to %d keys", c.Changed, seen, size)}
			}
			lines[i].Estimate = est
			if lines[i].Name == todo[0] {
				others := &report.Others{}
				p.warnClients(ctx, progress.Nop, others)
				if len(others.Clients) > 0 {
					lines[i].Others = others
				}
			}
			lines[i].Issues, lines[i].IssuesTotal = res.Tally.Issues(lines[i].Name)
			if c.Failed > 0 {
				lines[i].Reason = fmt.Sprintf("%d keys cannot be converted (see issues); apply will report them and not mark the migration applied", c.Failed)
			}
		}
		if err := p.examples(ctx, lines, todo, done); err != nil {
			return lines, err
		}
		if err := p.planMemory(ctx, lines, todo, done); err != nil {
			return lines, err
		}
	}
	return lines, p.attachCheckpoint(ctx, lines, "apply")
}

// planMemory attaches the copies' memory impact to the line of the first
// copying migration.
func (p *Phase) planMemory(ctx context.Context, lines []report.Migration, todo, done []string) error {
	m, err := p.memoryImpact(ctx, todo, done)
	if err != nil || m == nil {
		return err
	}
	grows := p.growing(todo)
	for i := range lines {
		if lines[i].Name == grows[0] {
			lines[i].Memory = m
		}
	}
	return nil
}

// verbOf says what a migration does to the keys it counts: 001 creates
// copies, the others change keys in place.
func verbOf(name string, set Set) string {
	for _, m := range set.Migrations() {
		if m.Name == name && m.Copies {
			return "create (copies)"
		}
	}
	return "change in place"
}

// Exampler is implemented by sets that can show real records before and
// after their pending migrations (plan --show-examples).
type Exampler interface {
	// Examples returns a read-only step collecting up to n records of each
	// kind per migration of todo, and the function that returns them by
	// migration name.
	Examples(todo, done []string, n int) (scan.Step, func() map[string][]report.Example)
}

// exampleScanLimit bounds the keys plan reads to find examples: a keyspace
// where the pending migrations change nothing in the first keys shows
// fewer examples rather than a full pass.
const exampleScanLimit = 20_000

// examples attaches plan --show-examples records to the lines of todo.
func (p *Phase) examples(ctx context.Context, lines []report.Migration, todo, done []string) error {
	ex, ok := p.set.(Exampler)
	if !ok || p.opts.Examples <= 0 {
		return nil
	}
	step, result := ex.Examples(todo, done, p.opts.Examples)
	e := p.executor(nil, "", nil)
	e.Limit, e.Window = exampleScanLimit, 1
	if _, err := e.Pass(ctx, step); err != nil {
		return err
	}
	got := result()
	for i := range lines {
		lines[i].Examples = got[lines[i].Name]
	}
	return nil
}
