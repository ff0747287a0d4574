package report

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"sort"
	"sync"
)

// Scrubber removes secrets from anything the tool prints. Commands register
// every password and credential-bearing URL they read; writers pass their
// bytes through it as a last line of defence (reports never hold secrets by
// construction, but error messages from drivers may quote a URL).
type Scrubber struct {
	mu      sync.RWMutex
	secrets []string
}

// Add registers secrets; empty and very short strings are ignored because
// replacing them would mangle ordinary text.
func (s *Scrubber) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) < 3 {
			continue
		}
		forms := []string{v, url.QueryEscape(v), url.PathEscape(v)}
		if b, err := json.Marshal(v); err == nil {
			forms = append(forms, string(b[1:len(b)-1]))
		}
		for _, f := range forms {
			if !contains(s.secrets, f) {
				s.secrets = append(s.secrets, f)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	sort.Slice(s.secrets, func(i, j int) bool { return len(s.secrets[i]) > len(s.secrets[j]) })
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Bytes returns b with every secret replaced by "***".
func (s *Scrubber) Bytes(b []byte) []byte {
	if s == nil {
		return b
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.secrets {
		if bytes.Contains(b, []byte(v)) {
			b = bytes.ReplaceAll(b, []byte(v), []byte("***"))
		}
	}
	return b
}

// String is Bytes for strings.
func (s *Scrubber) String(v string) string { return string(s.Bytes([]byte(v))) }

// Writer wraps w so that everything written through it is scrubbed. Each
// Write is scrubbed on its own, so callers write whole lines.
func (s *Scrubber) Writer(w io.Writer) io.Writer { return scrubWriter{s: s, w: w} }

type scrubWriter struct {
	s *Scrubber
	w io.Writer
}

func (sw scrubWriter) Write(p []byte) (int, error) {
	if _, err := sw.w.Write(sw.s.Bytes(append([]byte(nil), p...))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Marshal encodes r as one compact JSON line (no trailing newline), scrubbed.
func Marshal(r *Report, s *Scrubber) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return s.Bytes(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// WriteJSON prints r as the last line of w.
func WriteJSON(w io.Writer, r *Report, s *Scrubber) error {
	b, err := Marshal(r, s)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
