package redismigrations

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"hash/crc64"
	"maps"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// The copy of 001 writes each twin with RESTORE of a payload built here
// rather than with a script that HSETs the fields: Redis does less work per
// key (measured on 480k keys: RESTORE ~2.7-4.0 µs against ~4.8-5.5 µs for
// the script with its EXISTS, HSET and PEXPIRE), and RESTORE without
// REPLACE is the same atomic "create unless it exists" (BUSYKEY when it
// does), with the TTL in the same command. DUMP of the legacy key cannot be
// restored as is: 002/003 change fields on the way.
//
// The payload is what DUMP returns for a hash: an RDB object of type 4
// (RDB_TYPE_HASH: a length, then field and value strings), the RDB version
// as two little-endian bytes, and the CRC-64/Jones of everything before, as
// eight little-endian bytes. Type 4 has been in every RDB version; version
// 9 (Redis 5.0) is accepted by every server from Redis 5 on, which loads
// the object into its compact encoding itself when the hash is small.

const (
	rdbTypeHash = 4
	rdbVersion  = 9
)

// crcJones is CRC-64 with the Jones polynomial, reflected, as Redis's
// crc64.c computes it (initial value 0, no final XOR). hash/crc64 takes the
// reversed polynomial but inverts the value before and after: undone in
// redisCRC64.
var crcJones = crc64.MakeTable(0x95AC9329AC4BC9B5)

// crcJones8 are the tables of slicing-by-8 for crcJones: hash/crc64
// slices only its own two polynomials (or inputs of 2 KiB and more), and a
// byte at a time took 8% of the tool's CPU in an apply.
var crcJones8 = func() *[8]crc64.Table {
	t := new([8]crc64.Table)
	t[0] = *crcJones
	for i := 0; i < 256; i++ {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ (crc >> 8)
			t[j][i] = crc
		}
	}
	return t
}()

// redisCRC64 is Redis's crc64 (initial value 0, no final XOR).
func redisCRC64(p []byte) uint64 {
	t := crcJones8
	var crc uint64
	for len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint64(p)
		crc = t[7][crc&0xff] ^ t[6][crc>>8&0xff] ^ t[5][crc>>16&0xff] ^ t[4][crc>>24&0xff] ^
			t[3][crc>>32&0xff] ^ t[2][crc>>40&0xff] ^ t[1][crc>>48&0xff] ^ t[0][crc>>56]
		p = p[8:]
	}
	for _, v := range p {
		crc = t[0][byte(crc)^v] ^ (crc >> 8)
	}
	return crc
}

func appendRDBLen(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(0x40|n>>8), byte(n))
	case uint64(n) <= 0xFFFFFFFF:
		b = append(b, 0x80)
		return binary.BigEndian.AppendUint32(b, uint32(n))
	default:
		b = append(b, 0x81)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

func appendRDBString(b []byte, s string) []byte {
	return append(appendRDBLen(b, len(s)), s...)
}

// appendHashPayload appends to b the RESTORE payload of a hash holding
// fields (which must not be empty: Redis refuses an empty hash).
func appendHashPayload(b []byte, fields map[string]string) []byte {
	start := len(b)
	b = append(b, rdbTypeHash)
	b = appendRDBLen(b, len(fields))
	for f, v := range fields {
		b = appendRDBString(b, f)
		b = appendRDBString(b, v)
	}
	b = append(b, rdbVersion, 0)
	return binary.LittleEndian.AppendUint64(b, redisCRC64(b[start:]))
}

// restoreRefused says whether a RESTORE error means the server will not
// take RESTORE from us at all (renamed or disabled command, an ACL user
// without +restore, a server that reads the payload differently), as
// opposed to a failure of this one key. The copy then falls back to the
// script for the rest of the run.
func restoreRefused(err error) bool {
	msg := err.Error()
	for _, p := range []string{"NOPERM", "unknown command", "DUMP payload", "Bad data format"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// restoreWorks restores a probe hash under a random name in the
// deployment's own space and reads it back: some servers that speak the
// protocol take RESTORE but do not read the payload as Redis does
// (miniredis stores it as a string). Twins are restored only when the probe
// comes back as the same hash. RESTORE, HGETALL and DEL go in one
// MULTI/EXEC: the server runs them together or not at all (a connection
// that dies before EXEC discards the queue), so the probe key never exists
// outside the transaction and a kill -9 at any moment leaves nothing in the
// user's keyspace (issue #22: a probe key with a 60 s TTL once outlived a
// killed run and failed the fault test's key-by-key check).
func (s *Set) restoreWorks(ctx context.Context) bool {
	fields := map[string]string{"id": "probe", "bytes": "\x00\xff\r\n", "long": strings.Repeat("x", 100)}
	return s.probeRestore(ctx, appendHashPayload(nil, fields), fields)
}

// probeRestore restores payload under a fresh name, reads it back and
// deletes it in one MULTI/EXEC, and says whether it held want.
func (s *Set) probeRestore(ctx context.Context, payload []byte, want map[string]string) bool {
	var id [8]byte
	_, _ = rand.Read(id[:])
	key := s.prefix + "outpost:migrate:restore-probe:" + hex.EncodeToString(id[:])
	var got *goredis.MapStringStringCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Do(ctx, "restore", key, 60_000, payload)
		got = p.HGetAll(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	return err == nil && maps.Equal(got.Val(), want)
}
