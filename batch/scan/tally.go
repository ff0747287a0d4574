package scan

import (
	"sort"
	"sync"

	"github.com/outpost-migrate/outpost/report"
)

// Tally accumulates exact counts and the first issues, per label (a
// migration name). It is safe for concurrent use.
type Tally struct {
	mu     sync.Mutex
	counts map[string]*report.Counts
	issues map[string][]report.Issue
	totals map[string]int64
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{counts: map[string]*report.Counts{}, issues: map[string][]report.Issue{}, totals: map[string]int64{}}
}

// Add changes the counts of label under the tally's lock.
func (t *Tally) Add(label string, f func(c *report.Counts)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts[label]
	if c == nil {
		c = &report.Counts{}
		t.counts[label] = c
	}
	f(c)
}

// Fail records a per-key failure of label: the failed count grows and the
// issue is kept if fewer than report.MaxIssues are.
func (t *Tally) Fail(label string, i report.Issue) {
	t.Add(label, func(c *report.Counts) { c.Failed++ })
	t.Issue(label, i)
}

// Issue records an issue without touching counts.
func (t *Tally) Issue(label string, i report.Issue) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.totals[label]++
	if len(t.issues[label]) < report.MaxIssues {
		t.issues[label] = append(t.issues[label], i)
	}
}

// Counts returns a copy of label's counts.
func (t *Tally) Counts(label string) report.Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.counts[label]; c != nil {
		return *c
	}
	return report.Counts{}
}

// Issues returns label's first issues and their exact total.
func (t *Tally) Issues(label string) ([]report.Issue, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]report.Issue(nil), t.issues[label]...), t.totals[label]
}

// Labels lists the labels seen, sorted.
func (t *Tally) Labels() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	for k := range t.counts {
		seen[k] = true
	}
	for k := range t.totals {
		seen[k] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Merge adds o into t.
func (t *Tally) Merge(o *Tally) {
	if o == nil {
		return
	}
	for _, l := range o.Labels() {
		c := o.Counts(l)
		t.Add(l, func(d *report.Counts) { addCounts(d, c) })
		is, total := o.Issues(l)
		t.mu.Lock()
		t.totals[l] += total
		for _, i := range is {
			if len(t.issues[l]) < report.MaxIssues {
				t.issues[l] = append(t.issues[l], i)
			}
		}
		t.mu.Unlock()
	}
}

// snapshot returns a copy of every label's counts, for checkpoints.
func (t *Tally) snapshot() map[string]report.Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]report.Counts, len(t.counts))
	for k, v := range t.counts {
		out[k] = *v
	}
	return out
}

func addCounts(d *report.Counts, c report.Counts) {
	d.Scanned += c.Scanned
	d.Changed += c.Changed
	d.Unchanged += c.Unchanged
	d.Failed += c.Failed
	d.Checked += c.Checked
	d.Passed += c.Passed
	d.Deleted += c.Deleted
	d.Skipped += c.Skipped
	d.Rows += c.Rows
}

// Sum adds every label's counts.
func (t *Tally) Sum() report.Counts {
	var s report.Counts
	for _, c := range t.snapshot() {
		addCounts(&s, c)
	}
	return s
}
