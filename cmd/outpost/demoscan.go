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
		keys, err := f.scanAll(rest)
		if err != nil {
			p.WriteError(err.Error())
			return
		}
		it = f.newIteration(keys)
	} else if !ok {
		// An iteration that ended or was dropped: nothing left in it.
		it = nil
	}
	start := int(cursor & 0xFFFFFFFF)
	var page []string
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
			w.WriteBulk(k)
		}
	})
}

// scanAll is every key an iteration returns: SCAN 0 with rest's options
// (MATCH, TYPE) and no COUNT, which miniredis answers in one reply; the
// front reads the keys itself when MATCH is the only option.
func (f *demoFront) scanAll(rest []string) ([]string, error) {
	if f.ks != nil && (len(rest) == 2 || len(rest) == 4 && strings.EqualFold(rest[2], "MATCH")) {
		pattern := ""
		if len(rest) == 4 {
			pattern = rest[3]
		}
		return f.ks.matching(pattern), nil
	}
	r, err := f.callMiniredis(rest...)
	if err != nil {
		return nil, err
	}
	all, _ := r.([]any)
	var keys []string
	if len(all) == 2 {
		list, _ := all[1].([]any)
		for _, k := range list {
			s, _ := k.(string)
			keys = append(keys, s)
		}
	}
	return keys, nil
}

// scanIteration is the keys an iteration returns, sorted.
type scanIteration struct {
	id   uint64
	keys []string
}

// maxScans bounds the iterations kept (one per client that scans, in
// practice); the oldest is dropped past it.
const maxScans = 64

func (f *demoFront) newIteration(keys []string) *scanIteration {
	it := &scanIteration{keys: keys}
	f.lastScan++
	it.id = f.lastScan
	f.scans[it.id] = it
	if old := it.id - maxScans; it.id > maxScans {
		delete(f.scans, old)
	}
	return it
}

// globMatch is Redis's stringmatchlen (util.c), case-sensitive: *, ?,
// [...] with ^ and ranges, \ escapes; an unterminated [ matches as Redis
// does. Nesting is bounded as on Redis.
func globMatch(pattern, s string) bool {
	skip := false
	return globMatchAt(pattern, s, &skip, 0)
}

func globMatchAt(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > 1000 {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for ; len(s) > 0; s = s[1:] {
				if globMatchAt(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			var ok bool
			if p, ok = globClass(p[1:], s[0]); !ok {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// globClass matches c against the class that p starts just inside of; it
// returns p at the class's last byte (its ']', or the pattern's last byte
// when unterminated, as Redis leaves it) and whether c matched.
func globClass(p string, c byte) (string, bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			p = p[1:]
			if p[0] == c {
				match = true
			}
		case len(p) > 0 && p[0] == ']':
			return p, match != not
		case len(p) == 0:
			// Redis steps back onto the pattern's last byte, which the
			// caller then steps over: nothing is left.
			return " ", match != not
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			p = p[2:]
		default:
			if p[0] == c {
				match = true
			}
		}
		p = p[1:]
	}
}
