package scan

import (
	"sort"
	"strings"
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
	// keys holds every key an issue was recorded for (up to maxIssueKeys),
	// so that a later look at the same keys (the catch-up) does not report
	// them twice; ids every issue (label, key, field, reason), so that
	// the same problem of the same key counts once.
	keys map[string]struct{}
	ids  map[string]struct{}
}

// maxIssueKeys bounds the memory HasIssue uses: past it, keys are not
// remembered (and may be reported again).
const maxIssueKeys = 1_000_000

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{counts: map[string]*report.Counts{}, issues: map[string][]report.Issue{}, totals: map[string]int64{}, keys: map[string]struct{}{}, ids: map[string]struct{}{}}
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
	if t.Issue(label, i) {
		t.Add(label, func(c *report.Counts) { c.Failed++ })
	}
}

// Issue records an issue without touching counts, and says whether it was
// new: the same problem of the same key seen twice in one run (a key read
// once as a legacy record's twin and again by SCAN) counts once.
func (t *Tally) Issue(label string, i report.Issue) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i.Key != "" {
		id := label + "\x00" + i.Key + "\x00" + i.Field + "\x00" + i.Reason
		if _, dup := t.ids[id]; dup {
			return false
		}
		if len(t.ids) < maxIssueKeys {
			t.ids[id], t.keys[i.Key] = struct{}{}, struct{}{}
		}
	}
	t.totals[label]++
	if len(t.issues[label]) < report.MaxIssues {
		t.issues[label] = append(t.issues[label], i)
	}
	return true
}

// HasIssue tells whether an issue was recorded for key.
func (t *Tally) HasIssue(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.keys[key]
	return ok
}

// IssueKeys lists, sorted, the keys issues were recorded for (up to the
// bound HasIssue keeps).
func (t *Tally) IssueKeys() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.keys))
	for k := range t.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
	o.mu.Lock()
	ids := make([]string, 0, len(o.ids))
	for id := range o.ids {
		ids = append(ids, id)
	}
	keys := make([]string, 0, len(o.keys))
	for k := range o.keys {
		keys = append(keys, k)
	}
	o.mu.Unlock()
	// Issues o holds that t already has (the same key's same problem seen
	// by two chunks of one run) count once.
	t.mu.Lock()
	dups := map[string]int64{}
	seen := map[string]bool{}
	for _, id := range ids {
		if _, ok := t.ids[id]; ok {
			label, _, _ := strings.Cut(id, "\x00")
			dups[label]++
			seen[id] = true
		} else if len(t.ids) < maxIssueKeys {
			t.ids[id] = struct{}{}
		}
	}
	for _, k := range keys {
		if len(t.keys) < maxIssueKeys {
			t.keys[k] = struct{}{}
		}
	}
	t.mu.Unlock()
	for _, l := range o.Labels() {
		c := o.Counts(l)
		c.Failed -= min(c.Failed, dups[l])
		t.Add(l, func(d *report.Counts) { addCounts(d, c) })
		is, total := o.Issues(l)
		t.mu.Lock()
		t.totals[l] += total - dups[l]
		for _, i := range is {
			if seen[l+"\x00"+i.Key+"\x00"+i.Field+"\x00"+i.Reason] {
				continue
			}
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
