package redismigrations

import (
	"context"
)

// The passes other than the main one (the catch-up after it, apply
// --repair, cleanup, verify's twins) read records the same way: sized
// first (recordSizes), those within the limits read whole in groups, the
// big ones left to the caller, which handles them one by one, piece by
// piece, or names them (issue #22: they read every record whole, stopped
// with exit 69 naming no key past a server limit, and held a huge record
// whole in memory).

// recordBytes is the bytes of a record as read: its field names and values.
func recordBytes(r record) int64 {
	var n int64
	for f, v := range r.fields {
		n += int64(len(f) + len(v))
	}
	return n
}

// readGroup reads keys whole (readRecords): big[i] says record i turned
// out over bigAt bytes (it grew since it was sized, or it was not): its
// fields are dropped, for the caller to handle piece by piece. A lost
// connection is readRecords's error (see lostOverReply).
func (s *Set) readGroup(ctx context.Context, keys []string) ([]record, []bool, error) {
	recs, err := s.readRecords(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	at := s.serverLimits(ctx).bigAt()
	big := make([]bool, len(keys))
	for i := range recs {
		if recordBytes(recs[i]) > at {
			big[i], recs[i] = true, record{}
		}
	}
	return recs, big, nil
}

// readSized reads keys whole where they are within the limits: big[i]
// says record i was not read (over bigFields fields or bigAt bytes, or in
// a group whose connection the server closed over a reply too big), for
// the caller to handle piece by piece.
func (s *Set) readSized(ctx context.Context, keys []string) ([]record, []bool, error) {
	recs := make([]record, len(keys))
	big := make([]bool, len(keys))
	if len(keys) == 0 {
		return recs, big, nil
	}
	sizes, err := s.recordSizes(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	groups, bigIdx := splitBySize(sizes, s.serverLimits(ctx))
	for _, i := range bigIdx {
		big[i] = true
	}
	for _, g := range groups {
		rs, bs, err := s.readGroup(ctx, pick(keys, g))
		if err != nil && s.lostOverReply(ctx, err) {
			for _, i := range g {
				big[i] = true
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		for j, i := range g {
			recs[i], big[i] = rs[j], bs[j]
		}
	}
	return recs, big, nil
}
