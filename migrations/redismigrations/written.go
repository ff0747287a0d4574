package redismigrations

import (
	"hash/maphash"
	"sync/atomic"
)

// written remembers, in bounded memory, the twins one apply pass created.
// SCAN reaches about half of them later in the same pass (they land in
// buckets it has yet to visit); they are in their final form, so reading
// them again for 002/003 is wasted work (~1 in 3 of the pass's reads). The
// catch-up after the pass also asks it: a twin this pass created, and that
// no other client touched since, still holds what the pass wrote, so it may
// be re-copied when its legacy record changed.
//
// It is a set of 64-bit fingerprints (maphash with a seed drawn per pass)
// in an open-addressing table, not a Bloom filter: a wrong "written" needs
// two names with the same 64-bit hash, about 1 in 10^13 per key at its
// capacity, where a Bloom filter of the same memory is wrong 1 in 250 and
// every wrong answer would leave a key unconverted now that no confirming
// pass reads every key again. It stops taking keys at its capacity; keys
// created after that are read again, as without it, and are not
// re-copied by the catch-up (it reports them instead). Safe for concurrent
// use (the nodes of a cluster and the parts of a chunk run at once).
type written struct {
	slots []atomic.Uint64
	n     atomic.Int64
	seed  maphash.Seed
	limit int64
}

const (
	writtenSlots = 1 << 20 // 8 MiB
	// writtenLimit keeps the table at most 2/3 full, so that probes stay
	// short.
	writtenLimit = writtenSlots * 2 / 3
)

func newWritten() *written {
	return &written{slots: make([]atomic.Uint64, writtenSlots), seed: maphash.MakeSeed(), limit: writtenLimit}
}

// fingerprint is never 0, which marks an empty slot.
func (w *written) fingerprint(key string) uint64 {
	return maphash.String(w.seed, key) | 1
}

// add records key as written by this pass, unless the set is full.
func (w *written) add(key string) {
	if w == nil {
		return
	}
	fp := w.fingerprint(key)
	if w.has(key) || w.n.Add(1) > w.limit {
		return
	}
	for i := fp % writtenSlots; ; i = (i + 1) % writtenSlots {
		if w.slots[i].CompareAndSwap(0, fp) || w.slots[i].Load() == fp {
			return
		}
	}
}

// has says whether key was written by this pass.
func (w *written) has(key string) bool {
	if w == nil {
		return false
	}
	fp := w.fingerprint(key)
	for i := fp % writtenSlots; ; i = (i + 1) % writtenSlots {
		switch w.slots[i].Load() {
		case fp:
			return true
		case 0:
			return false
		}
	}
}
