package main

import (
	"strconv"
	"strings"

	"github.com/alicebob/miniredis/v2/server"
)

// scan is SCAN cursor [MATCH p] [COUNT n] [TYPE t] paged as Redis pages it
// (lock held). miniredis answers every SCAN with all the keys at once, so
// the apply saw one chunk: no checkpoint, progress or overlap between
// chunks as on a real Redis. The front takes miniredis's sorted answer
// when an iteration starts (cursor 0) and returns COUNT keys of it per
// call. That keeps SCAN's contract: every key present for the whole
// iteration is returned; keys added or removed during it may or may not
// be. Reading the whole keyspace once per iteration rather than once per
// call keeps a pass over N keys O(N).
func (f *demoFront) scan(p *server.Peer, args []string) {
	if len(args) < 2 {
		p.WriteError("ERR wrong number of arguments for 'scan' command")
		return
	}
	cursor, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil {
		p.WriteError("ERR invalid cursor")
		return
	}
	count := 10
	rest := []string{"SCAN", "0"}
	for i := 2; i < len(args); i++ {
		if strings.EqualFold(args[i], "COUNT") && i+1 < len(args) {
			i++
			if count, err = strconv.Atoi(args[i]); err != nil || count < 1 {
				p.WriteError("ERR syntax error")
				return
			}
			continue
		}
		rest = append(rest, args[i])
	}
	it, ok := f.scans[cursor>>32]
	if cursor == 0 {
		r, err := f.callMiniredis(rest...)
		if err != nil {
			p.WriteError(err.Error())
			return
		}
		it = f.newIteration(r)
	} else if !ok {
		// An iteration that ended or was dropped: nothing left in it.
		it = nil
	}
	start := int(cursor & 0xFFFFFFFF)
	var page []any
	if it != nil && start <= len(it.keys) {
		page = it.keys[start:min(start+count, len(it.keys))]
	}
	next := uint64(0)
	if end := start + len(page); it != nil && end < len(it.keys) {
		next = it.id<<32 | uint64(end)
	} else if it != nil {
		delete(f.scans, it.id)
	}
	p.Block(func(w *server.Writer) {
		w.WriteLen(2)
		w.WriteBulk(strconv.FormatUint(next, 10))
		w.WriteLen(len(page))
		for _, k := range page {
			w.WriteBulk(k.(string))
		}
	})
}

// scanIteration is the keys an iteration returns, sorted.
type scanIteration struct {
	id   uint64
	keys []any
}

// maxScans bounds the iterations kept (one per client that scans, in
// practice); the oldest is dropped past it.
const maxScans = 64

func (f *demoFront) newIteration(r any) *scanIteration {
	all, _ := r.([]any)
	it := &scanIteration{}
	if len(all) == 2 {
		it.keys, _ = all[1].([]any)
	}
	f.lastScan++
	it.id = f.lastScan
	f.scans[it.id] = it
	if old := it.id - maxScans; it.id > maxScans {
		delete(f.scans, old)
	}
	return it
}
