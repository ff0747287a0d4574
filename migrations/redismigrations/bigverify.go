package redismigrations

import (
	"context"
	"fmt"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// verifyLegacy is compareTwins for verify with its memory bounded: big
// legacy records or twins (see splitBySize) are compared piece by piece
// (compareBig), the others in groups; a
// group whose read lost its connection before anything was counted is
// redone record by record, piece by piece.
func (s *Set) verifyLegacy(ctx context.Context, keys []string, allow []*transform, t *scan.Tally, label string) error {
	if len(keys) == 0 {
		return nil
	}
	groups, big, err := s.splitKeys(ctx, keys)
	if err != nil {
		return err
	}
	l := s.serverLimits(ctx)
	for _, g := range groups {
		before := t.Counts(label).Scanned
		_, more, err := s.compareTwins(ctx, g, allow, t, label)
		if err != nil && t.Counts(label).Scanned == before && s.lostOverReply(ctx, err) {
			big = append(big, g...)
			continue
		}
		if err != nil {
			return err
		}
		big = append(big, more...)
	}
	for _, k := range big {
		if _, err := s.compareBig(ctx, k, allow, t, label, l); err != nil {
			return rediserr.Classify(err, "compare the big record "+k+" with its twin piece by piece")
		}
	}
	return nil
}

// compareBig checks one big legacy record against its twin as twinDiff
// does (fields in HSCAN order rather than name order), records the check
// under label and says whether it passed.
func (s *Set) compareBig(ctx context.Context, k string, allow []*transform, t *scan.Tally, label string, l serverLimits) (bool, error) {
	fail := func(i report.Issue) {
		i.Key = k
		t.Issue(label, i)
		tallyCheck(t, label, false)
	}
	e, gone, err := s.expiryOf(ctx, k)
	if err != nil || gone {
		if gone {
			t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
		}
		return false, err
	}
	r, field, why, err := s.readHead(ctx, k, l)
	switch {
	case err != nil:
		return false, err
	case why != "":
		fail(report.Issue{Field: field, Reason: "cannot be verified: " + why})
		return false, nil
	case r.err != nil:
		fail(report.Issue{Reason: "not a hash: " + r.err.Error()})
		return false, nil
	}
	key, err := ClassifyV0(k, r.fields)
	if err != nil {
		fail(report.Issue{Reason: err.Error()})
		return false, nil
	}
	twin := key.V1(s.prefix)
	te, twinGone, err := s.expiryOf(ctx, twin)
	if err != nil {
		return false, err
	}
	if twinGone {
		if still, err := s.exists(ctx, []string{k}); err != nil || (e.has() && !still[0]) {
			if err == nil {
				t.Add(label, func(c *report.Counts) { c.Scanned++; c.Skipped++ })
			}
			return false, err
		}
		// Say why apply did not copy it when a limit keeps it from it.
		field, why, err := s.blocker(ctx, k, l)
		if err != nil {
			return false, err
		}
		if why != "" {
			why = "; it cannot be copied: " + why
		}
		fail(report.Issue{Object: twin, Field: field, Reason: "twin missing" + why})
		return false, nil
	}
	issue, field, why, err := s.diffBig(ctx, k, twin, key, r.fields, allow, l)
	switch {
	case err != nil:
		return false, err
	case why != "":
		issue = &report.Issue{Object: twin, Field: field, Reason: "cannot be verified: " + why}
	case issue == nil:
		issue = ttlIssue(twin, e, te)
	}
	if issue != nil {
		fail(*issue)
		return false, nil
	}
	tallyCheck(t, label, true)
	return true, nil
}

// ttlIssue is twinDiff's verdict on the expiries of a legacy record (e)
// and its twin (te), or nil.
func ttlIssue(twin string, e, te expiry) *report.Issue {
	if e.has() != te.has() {
		return &report.Issue{Object: twin, Field: "ttl", Reason: "TTL differs", Expected: formatTTL(e.pttl), Actual: formatTTL(te.pttl)}
	}
	if e.has() && abs(te.at-e.at) > ttlSlackMS {
		return &report.Issue{Object: twin, Field: "ttl", Reason: fmt.Sprintf("TTL differs by more than %ds", ttlSlackMS/1000), Expected: formatTTL(e.pttl), Actual: formatTTL(te.pttl)}
	}
	return nil
}

// eachPiece lists the fields of record k (names and lengths only,
// hscanStep) and hands their names to fn in pieces of at most pieceAt
// bytes and maxPieceFields fields, until fn says stop. field and why name
// a field that cannot cross the limits (closedOnValue): the walk stops
// there.
func (s *Set) eachPiece(ctx context.Context, k string, l serverLimits, fn func(names []string) (stop bool, err error)) (field, why string, err error) {
	var pend []string
	var pendBytes int64
	stopped := false
	flush := func() (string, string, error) {
		if len(pend) == 0 || stopped {
			return "", "", nil
		}
		var err error
		stopped, err = fn(pend)
		if err != nil && len(pend) == 1 && pendBytes > l.pieceAt() {
			n := pendBytes - int64(len(pend[0]))
			if why := s.closedOnValue(ctx, err, n, l); why != "" {
				s.rememberClosed(k, closedValue{field: pend[0], why: why, n: n})
				return pend[0], why, nil
			}
		}
		pend, pendBytes = nil, 0
		return "", "", err
	}
	for cursor := "0"; !stopped; {
		next, names, nameLens, valueLens, err := s.hscanStep(ctx, k, cursor, l)
		if err != nil {
			return "", "", err
		}
		for i, name := range names {
			if field, why := limitFor(name, nameLens[i], valueLens[i], l); why != "" {
				return field, why, nil
			}
			n := nameLens[i] + valueLens[i]
			if len(pend) > 0 && (pendBytes+n > l.pieceAt() || len(pend) >= maxPieceFields) {
				if field, why, err := flush(); err != nil || why != "" {
					return field, why, err
				}
			}
			pend, pendBytes = append(pend, name), pendBytes+n
		}
		if next == "0" || next == "" {
			break
		}
		cursor = next
	}
	return flush()
}

// closedOnValue says why a value of n bytes, read alone, cannot be copied
// when the server closed the connection while sending it and its limits
// could not be read (l.unknown): its output buffer limit, most likely,
// which this tool could not take into account. "" otherwise (known
// limits: a lost connection is a failure of the run, retryable).
func (s *Set) closedOnValue(ctx context.Context, err error, n int64, l serverLimits) string {
	if l.unknown == "" || isServerReply(err) || ctx.Err() != nil || s.c.Ping(ctx).Err() != nil {
		return ""
	}
	return fmt.Sprintf("%d bytes: the server closed the connection while sending it, most likely over its output buffer limit for normal clients (client-output-buffer-limit), which could not be read; raise the limit and rerun; the record is not copied", n)
}

// diffBig compares the fields of legacy record k (head: its v1Fields) and
// its twin piece by piece: the first field missing on the twin or
// different in a way no transform of allow keeps, else an issue when the
// twin has more fields than the legacy record and those they may add.
// field and why name a field that cannot be read within the limits.
func (s *Set) diffBig(ctx context.Context, k, twin string, key Key, head map[string]string, allow []*transform, l serverLimits) (found *report.Issue, field, why string, err error) {
	field, why, err = s.eachPiece(ctx, k, l, func(pend []string) (bool, error) {
		a, b, err := s.piecePair(ctx, k, twin, pend)
		if isKeyError(err) {
			found = &report.Issue{Object: twin, Reason: "twin is not a hash"}
			return true, nil
		}
		if err != nil {
			return true, err
		}
		for i, f := range pend {
			v, ok := a[i].(string)
			if !ok {
				continue // gone from the legacy record since it was listed
			}
			tv, ok := b[i].(string)
			switch {
			case !ok:
				found = &report.Issue{Object: twin, Field: f, Reason: "field missing on twin", Expected: shown(f, v)}
			case tv != v && !keptBy(allow, key, f, v, true, tv):
				found = &report.Issue{Object: twin, Field: f, Reason: "field differs", Expected: shown(f, v), Actual: shown(f, tv)}
			}
			if found != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil || why != "" || found != nil {
		return found, field, why, err
	}
	found, err = s.extraFields(ctx, k, twin, key, head, allow)
	return found, "", "", err
}

// piecePair reads the fields names of legacy record k and of its twin
// (HMGET each); err is the twin's WRONGTYPE when it is not a hash.
func (s *Set) piecePair(ctx context.Context, k, twin string, names []string) (legacy, tw []any, err error) {
	if legacy, err = s.c.HMGet(ctx, k, names...).Result(); err != nil {
		if isKeyError(err) {
			// The legacy record is no hash any more: as if its fields
			// were gone.
			return make([]any, len(names)), make([]any, len(names)), nil
		}
		return nil, nil, err
	}
	tw, err = s.c.HMGet(ctx, twin, names...).Result()
	return legacy, tw, err
}

// extraFields is an issue when twin has more fields than legacy record k
// (head: its v1Fields) beyond those the transforms of allow may add.
func (s *Set) extraFields(ctx context.Context, k, twin string, key Key, head map[string]string, allow []*transform) (*report.Issue, error) {
	n, err := s.c.HLen(ctx, k).Result()
	if err != nil {
		return nil, err
	}
	tn, err := s.c.HLen(ctx, twin).Result()
	if err != nil {
		return nil, err
	}
	for _, f := range s.v1Fields() {
		if _, inLegacy := head[f]; inLegacy {
			continue
		}
		if tv, err := s.c.HGet(ctx, twin, f).Result(); err == nil && keptBy(allow, key, f, "", false, tv) {
			tn--
		}
	}
	if tn > n {
		return &report.Issue{Object: twin, Reason: fmt.Sprintf("extra field on twin: it has %d fields more than the legacy record", tn-n)}, nil
	}
	return nil, nil
}

// checkLegacy is checkV0 with big records (see splitBySize) counted
// one by one from their head (checkBig), so that Check reads no record
// whole and names those that apply cannot copy.
func (s *Set) checkLegacy(ctx context.Context, keys []string, p pass, t *scan.Tally) error {
	if len(keys) == 0 {
		return nil
	}
	groups, big, err := s.splitKeys(ctx, keys)
	if err != nil {
		return err
	}
	l := s.serverLimits(ctx)
	for _, k := range big {
		if err := s.checkBig(ctx, k, p, t, l); err != nil {
			return rediserr.Classify(err, "check the big record "+k+" piece by piece")
		}
	}
	for _, g := range groups {
		if err := s.checkV0(ctx, g, p, t); err != nil {
			return err
		}
	}
	return nil
}

// checkBig counts what apply would do with one big legacy record: nothing
// when its twin exists, else a copy (Changed), or a failure naming the
// field a limit keeps from being copied. A summary's content is checked
// by apply as it copies it, not here.
func (s *Set) checkBig(ctx context.Context, k string, p pass, t *scan.Tally, l serverLimits) error {
	r, field, why, err := s.readHead(ctx, k, l)
	switch {
	case err != nil:
		return err
	case why != "":
		t.Add(HashTags, func(c *report.Counts) { c.Scanned++ })
		s.failBig(t, k, field, why, l)
		return nil
	}
	tp, ok := s.planTwin(t, p, k, r)
	if !ok {
		return nil
	}
	exists, err := s.exists(ctx, []string{tp.twin})
	if err != nil || exists[0] {
		if err == nil {
			t.Add(HashTags, func(c *report.Counts) { c.Unchanged++ })
		}
		return err
	}
	if field, why, err = s.blocker(ctx, k, l); err != nil || why != "" {
		if why != "" {
			s.failBig(t, k, field, why, l)
		}
		return err
	}
	t.Add(HashTags, func(c *report.Counts) { c.Changed++ })
	tp.countFinal(t, p)
	return nil
}

// bigBlocker finds the first field name or value of record k that cannot
// be copied (see serverLimits.tooBig), listing names and lengths only.
func (s *Set) bigBlocker(ctx context.Context, k string, l serverLimits) (field, why string, err error) {
	for cursor := "0"; ; {
		next, names, nameLens, valueLens, err := s.hscanStep(ctx, k, cursor, l)
		if err != nil {
			return "", "", err
		}
		for i, name := range names {
			if field, why := limitFor(name, nameLens[i], valueLens[i], l); why != "" {
				return field, why, nil
			}
		}
		if next == "0" || next == "" {
			return "", "", nil
		}
		cursor = next
	}
}

// limitFor says why a field (its name, the name's and the value's length)
// cannot be copied, and how to name it ("": it can).
func limitFor(name string, nameLen, valueLen int64, l serverLimits) (field, why string) {
	if nameLen > l.pieceAt() {
		return fmt.Sprintf("<a field name of %d bytes>", nameLen), fmt.Sprintf("a field name of %d bytes: longer than this tool copies (%d bytes); the record is not copied", nameLen, l.pieceAt())
	}
	return name, l.tooBig(valueLen)
}
