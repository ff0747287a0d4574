package redismigrations

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Cleanup removes legacy keys whose twins verify, each with a script that
// deletes it only if it still holds exactly what was compared (a record
// changed since is kept and reported). It requires 001 applied. Counts:
// every legacy key is Checked once, Passed or Failed; Deleted counts the
// removed ones, Skipped the ones gone since SCAN. Records too big to read
// whole (see readSized) are compared piece by piece and deleted under
// WATCH (cleanupBig); the others in groups.
func (s *Set) Cleanup() (scan.Step, []string) {
	step := func(ctx context.Context, keys []string, t *scan.Tally) error {
		srt, err := s.sortKeys(ctx, keys, true, false, nil, func(k, reason string) {
			t.Issue(HashTags, report.Issue{Key: k, Reason: reason + "; kept"})
			tallyCheck(t, HashTags, false)
		})
		if err != nil {
			return err
		}
		if len(srt.v0) == 0 {
			return nil
		}
		groups, big, err := s.splitKeys(ctx, srt.v0)
		if err != nil {
			return err
		}
		for _, g := range groups {
			before := t.Counts(HashTags).Scanned
			more, err := s.cleanupGroup(ctx, g, t)
			if err != nil && t.Counts(HashTags).Scanned == before && s.lostOverReply(ctx, err) {
				big = append(big, g...)
				continue
			}
			if err != nil {
				return err
			}
			big = append(big, more...)
		}
		l := s.serverLimits(ctx)
		for _, k := range big {
			if err := s.cleanupBig(ctx, k, t, l); err != nil {
				return rediserr.Classify(err, "clean up the big record "+k+" piece by piece")
			}
		}
		return nil
	}
	return step, []string{HashTags}
}

// cleanupGroup compares legacy records read whole with their twins and
// deletes those that verify; it returns the keys too big to read whole.
func (s *Set) cleanupGroup(ctx context.Context, keys []string, t *scan.Tally) ([]string, error) {
	// Compare as verify does once every migration is applied: the
	// allowances of every field transform (timestamps equal as instants,
	// an entity field) hold whether they ran or not, and nothing else may
	// differ.
	pairs, big, err := s.compareTwins(ctx, keys, s.fieldTransforms(), t, HashTags)
	if err != nil {
		return nil, err
	}
	var del []pair
	for _, p := range pairs {
		if p.ok {
			del = append(del, p)
		}
	}
	if len(del) == 0 {
		return big, nil
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
		return nil, err
	}
	for i, r := range results {
		switch {
		case r.err != nil:
			failDelete(t, del[i].key, "delete: "+r.err.Error())
		case r.val == 1:
			t.Add(HashTags, func(c *report.Counts) { c.Deleted++ })
		case r.val == 0:
			failDelete(t, del[i].key, changedSinceCompared)
		case r.val == -1:
			t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
		}
	}
	return big, nil
}

// changedSinceCompared is why cleanup keeps a record that verified.
const changedSinceCompared = "changed after it was compared with its twin; kept (rerun cleanup)"

// failDelete fails a record counted as checked and passed, which is not
// deleted after all.
func failDelete(t *scan.Tally, k, reason string) {
	t.Add(HashTags, func(c *report.Counts) { c.Passed--; c.Failed++ })
	t.Issue(HashTags, report.Issue{Key: k, Reason: reason})
}

// deleteBigScript deletes KEYS[1] (run inside MULTI after a WATCH of it
// and a compare). Returns 1 deleted, -1 gone.
var deleteBigScript = goredis.NewScript(fencePrelude + `
if redis.call('DEL', KEYS[1]) == 0 then return -1 end
return 1
`)

// cleanupBig compares big legacy record k with its twin piece by piece
// (compareBig, counted as verify counts it) under WATCH of k and, when
// it verifies, deletes it in one transaction, which the server aborts
// when anyone modified k since the WATCH (then it is kept and reported).
func (s *Set) cleanupBig(ctx context.Context, k string, t *scan.Tally, l serverLimits) error {
	res, wrote, aborted, err := s.watchedScript(ctx, k, deleteBigScript, func(ctx context.Context) ([]string, []any, bool, error) {
		passed, err := s.compareBig(ctx, k, s.fieldTransforms(), t, HashTags, l)
		if err != nil || !passed {
			return nil, nil, false, err
		}
		aboutToWrite(ctx, 1, func(int) string { return k })
		return []string{k}, nil, true, nil
	})
	switch {
	case err != nil:
		return err
	case aborted:
		failDelete(t, k, changedSinceCompared)
	case !wrote:
	case res == 1:
		t.Add(HashTags, func(c *report.Counts) { c.Deleted++ })
	default:
		t.Add(HashTags, func(c *report.Counts) { c.Skipped++ })
	}
	return nil
}
