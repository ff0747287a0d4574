package redismigrations

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/report"
)

// Examples returns a read-only step that collects, for plan
// --show-examples, up to n real records of each kind (tenant, summary,
// destination) that the pending migrations would change, each shown before
// and after (with the same transforms apply uses, compose), and the
// function that hands them out by migration name. Secrets are masked (see
// masked). The step writes nothing.
func (s *Set) Examples(todo, done []string, n int) (scan.Step, func() map[string][]report.Example) {
	p := s.newPass(todo, done)
	c := &exampleCollector{n: n, out: map[string][]report.Example{}, per: map[string]int{}}
	step := func(ctx context.Context, keys []string, _ *scan.Tally) error {
		// Ambiguous names are not examples: apply reports them.
		srt, err := s.sortKeys(ctx, keys, p.copy, len(p.edit) > 0, nil, func(string, string) {})
		if err != nil {
			return err
		}
		v0, v1, v1keys := srt.v0, srt.v1, srt.v1keys
		if err := s.exampleV0(ctx, v0, p, c); err != nil {
			return err
		}
		return s.exampleV1(ctx, v1, v1keys, p, c)
	}
	return step, c.result
}

// exampleV0 shows 001's copy: the legacy record and its twin.
func (s *Set) exampleV0(ctx context.Context, keys []string, p pass, c *exampleCollector) error {
	// Records too big to read whole are not shown (readSized).
	recs, big, err := s.readSized(ctx, keys)
	if err != nil {
		return err
	}
	for i, r := range recs {
		if big[i] || r.fields == nil || r.err != nil {
			continue
		}
		k, err := ClassifyV0(keys[i], r.fields)
		if err != nil {
			continue
		}
		after, _, _ := compose(k, r.fields, p.twin)
		c.add(HashTags, k.Kind, report.Example{Key: keys[i], Kind: k.Kind.String(), Before: masked(r.fields),
			AfterKey: k.V1(s.prefix), After: masked(after), TTLMs: r.pttl})
	}
	return nil
}

// exampleV1 shows the field transforms' edit in place of a hash-tagged
// record, under the first of them that changes it.
func (s *Set) exampleV1(ctx context.Context, keys []string, parsed []Key, p pass, c *exampleCollector) error {
	// Records too big to read whole are not shown (readSized).
	recs, big, err := s.readSized(ctx, keys)
	if err != nil {
		return err
	}
	for i, r := range recs {
		if big[i] || r.fields == nil || r.err != nil {
			continue
		}
		after, outs, _ := compose(parsed[i], r.fields, p.edit)
		name := ""
		for _, o := range outs {
			if o.changed {
				name = o.t.Name
				break
			}
		}
		if name == "" {
			continue // nothing would change
		}
		c.add(name, parsed[i].Kind, report.Example{Key: keys[i], Kind: parsed[i].Kind.String(), Before: masked(r.fields),
			AfterKey: keys[i], After: masked(after), TTLMs: r.pttl})
	}
	return nil
}

type exampleCollector struct {
	mu  sync.Mutex
	n   int
	out map[string][]report.Example
	per map[string]int // per migration and kind
}

func (c *exampleCollector) add(migration string, kind Kind, e report.Example) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slot := migration + "/" + kind.String()
	if c.per[slot] >= c.n {
		return
	}
	c.per[slot]++
	c.out[migration] = append(c.out[migration], e)
}

func (c *exampleCollector) result() map[string][]report.Example {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, es := range c.out {
		sort.Slice(es, func(i, j int) bool {
			return es[i].Kind < es[j].Kind || (es[i].Kind == es[j].Kind && es[i].Key < es[j].Key)
		})
	}
	return c.out
}

// secretFields hold encrypted bytes (AES-GCM nonce and ciphertext);
// secretName matches the names of config values that are secrets.
var (
	secretFields = map[string]bool{"credentials": true, "delivery_metadata": true}
	secretName   = regexp.MustCompile(`(?i)pass|secret|token|key|auth|credential|signature`)
)

// masked is fields as a plan may print them: encrypted fields and binary
// values replaced by their length, secret-looking values inside JSON
// objects (config) replaced by "***".
func masked(fields map[string]string) map[string]string {
	out := make(map[string]string, len(fields))
	for f, v := range fields {
		switch {
		case secretFields[f] || secretName.MatchString(f):
			out[f] = fmt.Sprintf("<masked: %d bytes>", len(v))
		case !utf8.ValidString(v):
			out[f] = fmt.Sprintf("<binary: %d bytes>", len(v))
		default:
			out[f] = maskJSON(v)
		}
	}
	return out
}

// maskJSON masks secret-looking members of a JSON object; anything else is
// returned as it is.
func maskJSON(v string) string {
	var obj map[string]any
	if len(v) == 0 || v[0] != '{' || json.Unmarshal([]byte(v), &obj) != nil {
		return v
	}
	changed := false
	for k := range obj {
		if secretName.MatchString(k) {
			obj[k] = "***"
			changed = true
		}
	}
	if !changed {
		return v
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return v
	}
	return string(b)
}
