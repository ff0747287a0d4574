package redismigrations

import (
	"context"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Cleanup removes legacy keys whose twins verify, each with a script that
// deletes it only if it still holds exactly what was compared (a record
// changed since is kept and reported). It requires 001 applied. Counts:
// every legacy key is Checked once, Passed or Failed; Deleted counts the
// removed ones, Skipped the ones gone since SCAN.
func (s *Set) Cleanup() (scan.Step, []string) {
	step := func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, true, false, nil, func(k, reason string) {
			t.Issue(HashTags, report.Issue{Key: k, Reason: reason + "; kept"})
			tallyCheck(t, HashTags, false)
		})
		if err != nil {
			return err
		}
		v0 := srt.v0
		if len(v0) == 0 {
			return nil
		}
		// Compare as verify does once every migration is applied: the
		// allowances of every field transform (timestamps equal as
		// instants, an entity field) hold whether they ran or not, and
		// nothing else may differ.
		pairs, err := s.compareTwins(ctx, v0, s.fieldTransforms(), t, HashTags)
		if err != nil {
			return err
		}
		var del []pair
		for _, p := range pairs {
			if p.ok {
				del = append(del, p)
			}
		}
		if len(del) == 0 {
			return nil
		}
		aboutToWrite(ctx, len(del), func(i int) string { return del[i].key })
		results, err := s.runScript(ctx, deleteIfSameScript, len(del), func(i int) ([]string, []any) {
			args := make([]any, 0, 2*len(del[i].fields))
			for f, v := range del[i].fields {
				args = append(args, f, v)
			}
			return []string{del[i].key}, args
		})
		if err != nil {
			return err
		}
		for i, r := range results {
			switch {
			case r.err != nil:
				t.Add(HashTags, func(c *report.Counts) { c.Passed--; c.Failed++ })
				t.Issue(HashTags, report.Issue{Key: del[i].key, Reason: "delete: " + r.err.Error()})
			case r.val == 1:
				t.Add(HashTags, func(c *report.Counts) { c.Deleted++ })
			case r.val == 0:
				// Counted as checked and passed by compareTwins: it fails
				// now instead.
				t.Add(HashTags, func(c *report.Counts) { c.Passed--; c.Failed++ })
				t.Issue(HashTags, report.Issue{Key: del[i].key, Reason: "changed after it was compared with its twin; kept (rerun cleanup)"})
			case r.val == -1:
				t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
			}
		}
		return nil
	}
	return step, []string{HashTags}
}
