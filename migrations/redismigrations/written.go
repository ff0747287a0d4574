package redismigrations

import (
	"hash/maphash"
	"sync/atomic"
)

// written remembers, in bounded memory, the twins one apply pass created
// and a digest of what it wrote in each. SCAN reaches about half of them
// later in the same pass (they land in buckets it has yet to visit); they
// are in their final form, so reading them again for 002/003 is wasted
// work (~1 in 3 of the pass's reads). The catch-up after the pass also
// asks it: a twin this pass created, that still holds what the pass wrote
// (holds) and that no other client was seen to touch, may be re-copied
// when its legacy record changed.
//
// The digest is what makes that exact. The watch of others' writes
// (scan.Others) misses one case by construction: another client's write
// of a key in the same event-loop iteration as the run's own script
// writing it reaches the run as a single invalidation, which the run
// spends as its own (see scan/ownscripts.go). The twin then holds that
// client's write and nothing named it; its digest no longer matches, so
// the catch-up reports it instead of overwriting it.
//
// Keys are 64-bit fingerprints (maphash with a seed drawn per pass) in an
// open-addressing table, not a Bloom filter: a wrong "written" needs
// two names with the same 64-bit hash, about 1 in 10^13 per key at its
// capacity, where a Bloom filter of the same memory is wrong 1 in 250 and
// every wrong answer would leave a key unconverted now that no confirming
// pass reads every key again. Digests are 32 bits (a changed twin taken
// for unchanged: 1 in 4*10^9). It stops taking keys at its capacity; keys
// created after that are read again, as without it, and are not
// re-copied by the catch-up (it reports them instead). Safe for concurrent
// use (the nodes of a cluster and the parts of a chunk run at once).
type written struct {
	slots   []atomic.Uint64
	digests []atomic.Uint32 // by slot; 0: unknown
	n       atomic.Int64
	seed    maphash.Seed
	limit   int64
}

const (
	writtenSlots = 1 << 20 // 8 MiB of fingerprints, 4 MiB of digests
	// writtenLimit keeps the table at most 2/3 full, so that probes stay
	// short.
	writtenLimit = writtenSlots * 2 / 3
)

func newWritten() *written {
	return &written{slots: make([]atomic.Uint64, writtenSlots), digests: make([]atomic.Uint32, writtenSlots),
		seed: maphash.MakeSeed(), limit: writtenLimit}
}

// fingerprint is never 0, which marks an empty slot.
func (w *written) fingerprint(key string) uint64 {
	return maphash.String(w.seed, key) | 1
}

// add records key as written by this pass with digest (of what was
// written, see digest; 0 when unknown), unless the set is full. A key
// written again (re-copied) gets the new digest.
func (w *written) add(key string, digest uint32) {
	if w == nil {
		return
	}
	if i, ok := w.slot(key); ok {
		w.digests[i].Store(digest)
		return
	}
	if w.n.Add(1) > w.limit {
		return
	}
	fp := w.fingerprint(key)
	for i := fp % writtenSlots; ; i = (i + 1) % writtenSlots {
		if w.slots[i].CompareAndSwap(0, fp) || w.slots[i].Load() == fp {
			w.digests[i].Store(digest)
			return
		}
	}
}

// has says whether key was written by this pass.
func (w *written) has(key string) bool {
	_, ok := w.slot(key)
	return ok
}

// holds says whether key was written by this pass and what it holds now
// has the digest of what was written.
func (w *written) holds(key string, digest uint32) bool {
	i, ok := w.slot(key)
	return ok && digest != 0 && w.digests[i].Load() == digest
}

// slot is where key is in the table.
func (w *written) slot(key string) (uint64, bool) {
	if w == nil {
		return 0, false
	}
	fp := w.fingerprint(key)
	for i := fp % writtenSlots; ; i = (i + 1) % writtenSlots {
		switch w.slots[i].Load() {
		case fp:
			return i, true
		case 0:
			return 0, false
		}
	}
}

// digest is the digester's value over fields: the digest of what a
// twin holds.
func (w *written) digest(fields map[string]string) uint32 {
	d := w.digester()
	for f, v := range fields {
		d.add(f, v)
	}
	return d.value()
}

// digester sums a hash of each field and value handed to it, so that the
// order the server returns them in (whole, or piece by piece for a big
// record) does not matter.
type digester struct {
	w   *written
	sum uint64
	h   maphash.Hash
}

func (w *written) digester() *digester {
	d := &digester{w: w}
	if w != nil {
		d.h.SetSeed(w.seed)
	}
	return d
}

func (d *digester) add(f, v string) {
	if d.w == nil {
		return
	}
	d.h.Reset()
	_, _ = d.h.WriteString(f)
	_ = d.h.WriteByte(0)
	_, _ = d.h.WriteString(v)
	d.sum += d.h.Sum64()
}

// value is the digest: never 0 (unknown), except without a set of twins
// written.
func (d *digester) value() uint32 {
	if d.w == nil {
		return 0
	}
	return uint32(d.sum^d.sum>>32) | 1
}
