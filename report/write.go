package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
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

// WriteText prints r for a person.
func WriteText(w io.Writer, r *Report, s *Scrubber) error {
	var b strings.Builder
	status := "OK"
	if r.Failed {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "outpost migrate %s: %s (%s, exit %d) in %dms\n", r.Command, r.Outcome, status, r.ExitCode, r.DurationMS)
	if r.Msg != "" && r.Msg != r.Outcome {
		fmt.Fprintf(&b, "  %s\n", r.Msg)
	}
	if t := r.Targets; t != nil {
		if t.Redis != nil {
			fmt.Fprintf(&b, "  redis:    %s (%s, db %d, tls %v)", t.Redis.Addr, t.Redis.Mode, t.Redis.Database, t.Redis.TLS)
			if t.Redis.Prefix != "" {
				fmt.Fprintf(&b, " prefix %q", t.Redis.Prefix)
			}
			b.WriteString("\n")
		}
		if t.Postgres != nil {
			fmt.Fprintf(&b, "  postgres: %s:%s/%s\n", t.Postgres.Host, t.Postgres.Port, t.Postgres.Database)
		}
		if t.SQL != nil && t.SQL.State != SQLConfigured {
			fmt.Fprintf(&b, "  sql:      skipped: %s\n", t.SQL.Message)
		}
		if t.ConfigFile != "" {
			fmt.Fprintf(&b, "  config:   %s\n", t.ConfigFile)
		}
	}
	if l := r.Lock; l != nil {
		fmt.Fprintf(&b, "  lock %s: %s", l.Key, l.State)
		if l.Holder != nil {
			fmt.Fprintf(&b, " by run %s on %s pid %d (%s)", l.Holder.RunID, l.Holder.Host, l.Holder.PID, l.Holder.Command)
		} else if l.Foreign {
			b.WriteString(" by another program (not this tool)")
		}
		if l.TTLMS != nil {
			fmt.Fprintf(&b, ", expires in %ds", *l.TTLMS/1000)
		}
		b.WriteString("\n")
	}
	for _, m := range r.Migrations {
		fmt.Fprintf(&b, "  %-40s %-14s", m.ID, m.State)
		if m.Counts != nil {
			c := m.Counts
			fmt.Fprintf(&b, " scanned %d changed %d unchanged %d failed %d", c.Scanned, c.Changed, c.Unchanged, c.Failed)
			if c.Checked > 0 {
				fmt.Fprintf(&b, " checked %d passed %d", c.Checked, c.Passed)
			}
			if c.Deleted > 0 {
				fmt.Fprintf(&b, " deleted %d", c.Deleted)
			}
		}
		if m.Estimate != nil {
			fmt.Fprintf(&b, " ~%d %s (%s)", m.Estimate.Value, m.Estimate.Units, m.Estimate.Method)
		}
		if l := m.ExclusiveLock; l != nil {
			fmt.Fprintf(&b, " holds %s on %s for ~%s", l.Mode, strings.Join(l.Tables, ", "), time.Duration(l.EstimatedMS)*time.Millisecond)
			if l.Step != "" {
				fmt.Fprintf(&b, " (step %s)", l.Step)
			}
		}
		if m.Reason != "" {
			fmt.Fprintf(&b, " - %s", m.Reason)
		}
		b.WriteString("\n")
		for _, i := range m.Issues {
			fmt.Fprintf(&b, "      ! %s %s %s", i.Key+i.Object, i.Field, i.Reason)
			if i.Expected != "" || i.Actual != "" {
				fmt.Fprintf(&b, " (expected %q, got %q)", i.Expected, i.Actual)
			}
			b.WriteString("\n")
		}
		if m.IssuesTotal > int64(len(m.Issues)) {
			fmt.Fprintf(&b, "      ... and %d more\n", m.IssuesTotal-int64(len(m.Issues)))
		}
	}
	if r.Next != "" {
		fmt.Fprintf(&b, "  next: %s\n", r.Next)
	}
	if r.Error != nil {
		fmt.Fprintf(&b, "  error %s: %s\n", r.Error.Code, r.Error.Message)
	}
	_, err := io.WriteString(w, s.String(b.String()))
	return err
}
