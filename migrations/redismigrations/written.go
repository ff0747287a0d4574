package redismigrations

import (
	"hash/maphash"
	"sync/atomic"
)

// written remembers, in bounded memory, the twins one apply pass created.
// SCAN reaches about half of them later in the same pass (they land in
// buckets it has yet to visit); they are in their final form, so reading
// them again for 002/003 is wasted work (~1 in 3 of the pass's reads).
//
// It is a Bloom filter: "maybe written" can be wrong, "not written" never
// is. A key wrongly taken as written is skipped by this pass only: the
// confirming pass reads every key and finds it, and apply runs another
// pass. To keep that rare, it stops taking keys at its capacity (the false
// positive rate then is ~0.4%); keys created after that are read again, as
// without it. Safe for concurrent use (the nodes of a cluster and the parts
// of a chunk run at once).
type written struct {
	bits  []atomic.Uint64
	n     atomic.Int64
	seed  maphash.Seed
	limit int64
}

const (
	writtenBits   = 1 << 24 // 2 MiB
	writtenHashes = 4
)

// falsePositive, when set (by tests only), makes has say yes for the keys
// it says yes to, as a false positive of the filter would.
var falsePositive func(key string) bool

func newWritten() *written {
	return &written{bits: make([]atomic.Uint64, writtenBits/64), seed: maphash.MakeSeed(), limit: writtenBits / 14}
}

// positions gives the filter's bit positions for key (double hashing).
func (w *written) positions(key string) [writtenHashes]uint32 {
	h := maphash.String(w.seed, key)
	h1, h2 := uint32(h), uint32(h>>32)|1
	var out [writtenHashes]uint32
	for i := range out {
		out[i] = (h1 + uint32(i)*h2) % writtenBits
	}
	return out
}

// add records key as written by this pass, unless the filter is full.
func (w *written) add(key string) {
	if w == nil || w.n.Add(1) > w.limit {
		return
	}
	for _, p := range w.positions(key) {
		w.bits[p/64].Or(1 << (p % 64))
	}
}

// has says whether key may have been written by this pass.
func (w *written) has(key string) bool {
	if f := falsePositive; f != nil && f(key) {
		return true
	}
	for _, p := range w.positions(key) {
		if w.bits[p/64].Load()&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}
