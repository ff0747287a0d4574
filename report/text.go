package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// titles are the command lines of the reports that are not `outpost
// migrate X`.
var titles = map[string]string{
	KindVersion: "outpost version",
	KindDemo:    "outpost demo",
	KindSeed:    "outpost dev seed",
	KindJobRun:  "outpost jobs nomad run",
	KindError:   "outpost",
}

// Title is the command line a report is about: "outpost migrate apply".
func Title(r *Report) string {
	if t, ok := titles[r.Kind]; ok {
		return t
	}
	return "outpost migrate " + r.Command
}

// WriteText prints r for a person: what happened and how long the work
// took, the stores, the lock, one row per migration, the error once, and
// what to do next.
func WriteText(w io.Writer, r *Report, s *Scrubber) error { return WriteTextWidth(w, r, s, 0) }

// WriteTextWidth is WriteText for a terminal of width columns: longer
// lines are wrapped under their text (0: no wrapping).
func WriteTextWidth(w io.Writer, r *Report, s *Scrubber, width int) error {
	var b strings.Builder
	writeHeader(&b, r)
	writeTargets(&b, r)
	if len(r.Migrations) > 0 {
		b.WriteString("\n")
		for _, m := range r.Migrations {
			WriteRow(&b, r, m)
		}
	}
	if r.Error != nil {
		fmt.Fprintf(&b, "\nerror %s: %s\n", r.Error.Code, r.Error.Message)
	}
	if r.Next != "" {
		sep := ""
		if r.Error == nil {
			sep = "\n"
		}
		fmt.Fprintf(&b, "%snext: %s\n", sep, r.Next)
	}
	out := s.String(b.String())
	if width > 0 {
		out = wrapText(out, width)
	}
	_, err := io.WriteString(w, out)
	return err
}

// wrapText wraps each line longer than width at spaces, continuing under
// the line's text: after its leading spaces, a row's state column or a
// "next: " label.
func wrapText(text string, width int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		nl := strings.HasSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\n")
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case strings.HasPrefix(line, "next: "):
			indent = len("next: ")
		case strings.HasPrefix(line, "  ") && len(line) > 19 && line[2] != ' ':
			indent = 19 // under the id, after the state column
		}
		for runeCount(line) > width {
			cut := strings.LastIndexByte(line[:byteIndex(line, width)], ' ')
			if cut <= indent {
				cut = byteIndex(line, width)
			}
			b.WriteString(strings.TrimRight(line[:cut], " ") + "\n")
			line = strings.Repeat(" ", min(indent, width/2)) + strings.TrimLeft(line[cut:], " ")
		}
		b.WriteString(line)
		if nl {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func runeCount(s string) int { return len([]rune(s)) }

// byteIndex is the byte offset of the rune at position n of s.
func byteIndex(s string, n int) int {
	i := 0
	for pos := range s {
		if i == n {
			return pos
		}
		i++
	}
	return len(s)
}

func writeHeader(b *strings.Builder, r *Report) {
	outcome := strings.ReplaceAll(r.Outcome, "_", " ")
	msg := r.Msg
	if msg == r.Outcome || r.Error != nil && msg == r.Error.Message {
		msg = ""
	}
	switch {
	case r.Failed:
		fmt.Fprintf(b, "%s: %s (exit %d) after %s\n", Title(r), strings.ToUpper(outcome), r.ExitCode, Duration(r.DurationMS))
	case msg != "" && len(msg) <= 60 && !strings.Contains(msg, "\n"):
		// The message says the outcome in words: "applied 3 migrations".
		fmt.Fprintf(b, "%s: %s in %s\n", Title(r), msg, Duration(r.DurationMS))
		msg = ""
	default:
		fmt.Fprintf(b, "%s: %s in %s\n", Title(r), outcome, Duration(r.DurationMS))
	}
	if msg != "" {
		fmt.Fprintf(b, "  %s\n", msg)
	}
}

func writeTargets(b *strings.Builder, r *Report) {
	if t := r.Targets; t != nil {
		if t.Redis != nil {
			fmt.Fprintf(b, "  redis     %s (%s, db %d", t.Redis.Addr, t.Redis.Mode, t.Redis.Database)
			if t.Redis.TLS {
				b.WriteString(", tls")
			}
			if t.Redis.Prefix != "" {
				fmt.Fprintf(b, ", prefix %q", t.Redis.Prefix)
			}
			b.WriteString(")\n")
		}
		if t.Postgres != nil {
			fmt.Fprintf(b, "  postgres  %s:%s/%s\n", t.Postgres.Host, t.Postgres.Port, t.Postgres.Database)
		}
		if t.SQL != nil && t.SQL.State != SQLConfigured {
			fmt.Fprintf(b, "  sql       skipped: %s\n", t.SQL.Message)
		}
		if t.ConfigFile != "" {
			fmt.Fprintf(b, "  config    %s\n", t.ConfigFile)
		}
	}
	if l := r.Lock; l != nil {
		fmt.Fprintf(b, "  lock      %s %s", l.Key, l.State)
		if l.State == "held" || l.State == "removed" || l.State == "lost" {
			b.WriteString(" (" + DescribeHolder(l) + ")")
		}
		b.WriteString("\n")
	}
}

// WriteRow prints one migration's row: its state as a person says it, the
// id and, by the row's kind, what was counted or estimated, the time it
// took and why; the description follows where a person decides (plan,
// list, status); then its issues.
func WriteRow(b *strings.Builder, r *Report, m Migration) {
	row := fmt.Sprintf("  %-16s %-*s", rowLabel(r, m), idWidth(r), m.ID)
	var parts []string
	if c := countsText(m); c != "" {
		parts = append(parts, c)
	}
	if m.DurationMS > 0 {
		parts = append(parts, Duration(m.DurationMS))
	}
	if l := m.ExclusiveLock; l != nil {
		lock := fmt.Sprintf("holds %s on %s for ~%s", l.Mode, strings.Join(l.Tables, ", "), Duration(l.EstimatedMS))
		if l.Step != "" {
			lock += " (step " + l.Step + ")"
		}
		parts = append(parts, lock)
	}
	if m.AppliedAt != "" && r.Kind != KindApply {
		parts = append(parts, "applied "+m.AppliedAt)
	}
	if m.Reason != "" {
		parts = append(parts, m.Reason)
	}
	b.WriteString(strings.TrimRight(row+"  "+strings.Join(parts, ", "), " ") + "\n")
	if m.Description != "" && (r.Kind == KindPlan || r.Kind == KindList || r.Kind == KindStatus) {
		fmt.Fprintf(b, "  %-16s %s\n", "", m.Description)
	}
	for _, i := range m.Issues {
		b.WriteString("      ! " + issueText(i) + "\n")
	}
	if m.IssuesTotal > int64(len(m.Issues)) {
		fmt.Fprintf(b, "      ... and %s more\n", Count(m.IssuesTotal-int64(len(m.Issues))))
	}
}

// idWidth is the width of the id column: the longest id of the report.
func idWidth(r *Report) int {
	n := 0
	for _, m := range r.Migrations {
		n = max(n, len(m.ID))
	}
	return n
}

// rowLabel tells an apply's own work from what earlier runs did: lines of
// migrations this run applied carry counts.
func rowLabel(r *Report, m Migration) string {
	if r.Kind == KindApply {
		switch m.State {
		case "applied":
			if m.Counts != nil {
				return "applied now"
			}
			return "already applied"
		}
	}
	if m.State == "failed" {
		return "FAILED"
	}
	return strings.ReplaceAll(string(m.State), "_", " ")
}

// countsText is what matters for the row's kind: rows for a batched SQL
// step, checks for verify, deletions for cleanup, keys for a Redis pass;
// nothing for a DDL step.
func countsText(m Migration) string {
	var parts []string
	if c := m.Counts; c != nil {
		switch {
		case c.Rows > 0:
			parts = append(parts, Count(c.Rows)+" rows")
		case c.Checked > 0:
			parts = append(parts, Count(c.Checked)+" checked", Count(c.Passed)+" passed")
		case c.Deleted > 0:
			parts = append(parts, Count(c.Deleted)+" legacy keys deleted")
		case c.Scanned > 0:
			parts = append(parts, Count(c.Scanned)+" scanned", Count(c.Changed)+" changed")
		}
		if c.Failed > 0 {
			parts = append(parts, Count(c.Failed)+" failed")
		}
		if c.Skipped > 0 {
			parts = append(parts, Count(c.Skipped)+" skipped")
		}
	}
	if e := m.Estimate; e != nil {
		approx := ""
		if e.Method != "counted" {
			approx = "~"
		}
		parts = append(parts, fmt.Sprintf("%s%s %s (%s)", approx, Count(e.Value), e.Units, e.Method))
		if e.Deletes != nil {
			parts = append(parts, Count(*e.Deletes)+" "+e.Units+" deleted (counted)")
		}
	}
	if mem := m.Memory; mem != nil {
		parts = append(parts, fmt.Sprintf("copies add ~%s (estimated from a sample)", bytesText(mem.EstimatedBytes)))
		for _, n := range mem.Nodes {
			if n.MaxBytes > 0 {
				parts = append(parts, fmt.Sprintf("%s uses %s of maxmemory %s (%s)", n.Addr, bytesText(n.UsedBytes), bytesText(n.MaxBytes), n.Policy))
			}
		}
		if mem.Warning != "" {
			parts = append(parts, "WARNING: "+mem.Warning)
		}
	}
	return strings.Join(parts, ", ")
}

func issueText(i Issue) string {
	where := i.Key
	switch {
	case i.Key != "" && i.Object != "":
		where = i.Key + " -> " + i.Object
	case i.Key == "":
		where = i.Object
	}
	s := where
	if i.Field != "" {
		s += " field " + i.Field
	}
	s += ": " + i.Reason
	if i.Expected != "" || i.Actual != "" {
		s += fmt.Sprintf(" (expected %q, got %q)", i.Expected, i.Actual)
	}
	return s
}

// DescribeHolder says who holds a lock, since when and until when.
func DescribeHolder(l *Lock) string {
	var s string
	switch {
	case l.Holder != nil:
		h := l.Holder
		s = fmt.Sprintf("run %s (%s on %s, pid %d", h.RunID, h.Command, h.Host, h.PID)
		if h.NomadAllocID != "" {
			s += ", nomad alloc " + h.NomadAllocID
		}
		if h.K8sPod != "" {
			s += ", pod " + h.K8sPod
		}
		s += ")"
		if l.AgeMS != nil {
			s += ", started " + Duration(*l.AgeMS) + " ago"
		}
	case l.Foreign:
		s = "another program (not this tool)"
	default:
		s = "an unknown holder"
	}
	if l.TTLMS != nil && *l.TTLMS >= 0 {
		s += ", expires in " + Duration(*l.TTLMS)
	}
	return s
}

// Count writes n with thousands separators: 1,234,567.
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Duration is ms as a person reads it: 850ms, 2.4s, 1m35s, 2h05m.
func Duration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// bytesText is a byte count in MiB with one decimal.
func bytesText(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
