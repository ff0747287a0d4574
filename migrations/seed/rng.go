package seed

import (
	"math/bits"
	"math/rand/v2"
)

// rng is a deterministic random source. Only PCG's raw Uint64 output is
// used (its algorithm is fixed by definition); every derived draw (ranges,
// floats, bytes) is computed here rather than with rand.Rand's methods, so
// a dataset stays byte-identical across Go versions.
type rng struct{ p rand.PCG }

// Stream ids: every tenant, every unrelated key and every PostgreSQL event
// has its own stream, so any record can be generated alone, in any order,
// by any goroutine.
const (
	streamTenant    uint64 = 1 << 60
	streamUnrelated uint64 = 2 << 60
	streamEvent     uint64 = 3 << 60
)

func newRNG(seed int64, stream uint64) *rng {
	r := &rng{}
	a := splitmix(uint64(seed) ^ splitmix(stream))
	r.p.Seed(a, splitmix(a^stream^0x5851f42d4c957f2d))
	return r
}

// splitmix is the SplitMix64 finaliser: decorrelates neighbouring seeds.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (r *rng) u64() uint64 { return r.p.Uint64() }

// intn returns a value in [0, n) for n > 0 (multiply-high; the bias is
// below 2^-32 for the ranges used here), 0 for n <= 1.
// It always consumes one draw, so the shape of a stream does not depend on
// the options' counts.
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.u64(), uint64(max(n, 1)))
	return int(hi)
}

// int63n returns a value in [0, n) for n > 0.
func (r *rng) int63n(n int64) int64 {
	hi, _ := bits.Mul64(r.u64(), uint64(max(n, 1)))
	return int64(hi)
}

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

// chance is true with probability p (never for p = 0, always for p = 1).
func (r *rng) chance(p float64) bool { return r.float() < p }

func (r *rng) pick(s []string) string { return s[r.intn(len(s))] }

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

// word returns n lower-case alphanumerics.
func (r *rng) word(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[r.intn(len(alnum))]
	}
	return string(b)
}

// bytes returns n random bytes.
func (r *rng) bytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.u64()
		for j := i; j < n && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}
