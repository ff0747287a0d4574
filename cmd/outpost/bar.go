package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

type progressEvent = progress.Event

// console is stderr in text mode: log lines in logfmt, and the per-chunk
// progress summed by a Tracker into one display line redrawn in place on
// a terminal, or into a progress line every few seconds otherwise (a log
// collector wants lines, not carriage returns).
type console struct {
	mu    sync.Mutex
	w     io.Writer
	log   *progress.Logger
	tty   bool
	width func() int
	// every is the period of progress lines when stderr is not a terminal.
	every time.Duration
	t     progress.Tracker
	shown bool // a display line is on screen
	drawn time.Time
	lined time.Time
}

// redrawEvery bounds the redraws: fast enough to look live, slow enough
// not to cost anything.
const redrawEvery = 100 * time.Millisecond

func (c *console) Emit(e progress.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	wasActive := c.t.Active()
	if c.t.Update(e, now) {
		if !wasActive || e.Event == progress.PassStarted {
			c.lined = now
		}
		switch {
		case c.tty && now.Sub(c.drawn) >= redrawEvery:
			c.draw(now)
		case !c.tty && now.Sub(c.lined) >= c.every:
			c.lined = now
			c.log.Emit(progressLine(c.t.Snapshot(now), e))
		}
		return
	}
	c.clear()
	if e.Event == progress.PassDone || e.Event == progress.MigrationFinished || e.Event == progress.RunFinished {
		c.t.Reset()
	}
	if c.tty {
		c.say(e, now)
	} else {
		c.log.Emit(e)
	}
	if c.tty && c.t.Active() {
		c.draw(now)
	}
}

// say writes an event for a person at a terminal: the time, the level
// when it is not info, the message, wrapped to the window. Collectors get
// logfmt (stderr is not a terminal there) or --log-format json.
func (c *console) say(e progress.Event, now time.Time) {
	if e.Level == "debug" && !c.log.Verbose || progress.PerChunk(e.Event) {
		return
	}
	if e.Event == progress.RunStarted || e.Event == progress.RunFinished {
		// For collectors: on a terminal the command line and the report
		// say it.
		return
	}
	head := now.Format("15:04:05") + " "
	if e.Level != "" && e.Level != "info" {
		head += strings.ToUpper(e.Level) + " "
	}
	width := c.columns()
	_, _ = io.WriteString(c.w, wrap(head, e.Msg, width-1))
}

func (c *console) columns() int {
	if c.width != nil {
		// Measured at every line, so a resized window is honoured.
		return c.width()
	}
	return 80
}

// wrap lays msg out after head in lines of at most width runes, the
// continuation lines indented under the message.
func wrap(head, msg string, width int) string {
	indent := strings.Repeat(" ", runeLen(head))
	room := max(width-runeLen(head), 20)
	var b strings.Builder
	line := head
	n := 0
	for _, word := range strings.Fields(msg) {
		for runeLen(word) > room {
			if n > 0 {
				b.WriteString(line + "\n")
				line, n = indent, 0
			}
			r := []rune(word)
			b.WriteString(line + string(r[:room]) + "\n")
			line, word = indent, string(r[room:])
		}
		if n > 0 && n+1+runeLen(word) > room {
			b.WriteString(line + "\n")
			line, n = indent, 0
		}
		if n > 0 {
			line += " "
			n++
		}
		line += word
		n += runeLen(word)
	}
	b.WriteString(line + "\n")
	return b.String()
}

// end clears the display before the report is printed.
func (c *console) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
	c.t.Reset()
}

func (c *console) clear() {
	if c.shown {
		_, _ = io.WriteString(c.w, "\r\x1b[K")
		c.shown = false
	}
}

func (c *console) draw(now time.Time) {
	width := c.columns()
	// One column short of the width: a full line makes some terminals wrap.
	line := renderProgress(c.t.Snapshot(now), width-1)
	_, _ = io.WriteString(c.w, "\r"+line+"\x1b[K")
	c.shown = true
	c.drawn = now
}

// progressLine is the periodic progress line of a non-terminal stderr.
func progressLine(s progress.Snapshot, e progress.Event) progress.Event {
	f := map[string]any{"done": s.Done}
	msg := fmt.Sprintf("%s: %s %s", s.Label, countShort(s.Done), s.Unit)
	if s.Total > 0 {
		f["total_estimate"] = s.Total
		f["percent"] = int(s.Pct * 100)
		msg = fmt.Sprintf("%s: %s of ~%s %s (%d%%)", s.Label, countShort(s.Done), countShort(s.Total), s.Unit, int(s.Pct*100))
	}
	ev := progress.Event{Level: "info", Event: progress.Log, Migration: e.Migration, Msg: msg, Fields: f, ElapsedMS: s.Elapsed.Milliseconds()}
	if s.Rate > 0 {
		ev.RatePerS = s.Rate
		ev.Msg += fmt.Sprintf(", %s %s/s", countShort(int64(s.Rate)), s.Unit)
	}
	if s.ETA > 0 {
		ev.ETAS = s.ETA.Seconds()
		ev.Msg += ", eta " + shortDuration(s.ETA)
	}
	return ev
}

// renderProgress lays a snapshot out in at most width columns: label,
// bar, percentage and count always; rate, ETA and per-node counts while
// they fit; the bar takes what is left (up to 30 columns).
func renderProgress(s progress.Snapshot, width int) string {
	label := s.Label
	if len(label) > 24 {
		label = label[:23] + "…"
	}
	head := label
	count := countShort(s.Done) + " " + s.Unit
	if s.Total > 0 {
		count = fmt.Sprintf("%3d%% %s/~%s %s", int(s.Pct*100), countShort(s.Done), countShort(s.Total), s.Unit)
	}
	var extras []string
	if s.Rate > 0 {
		extras = append(extras, countShort(int64(s.Rate))+" "+s.Unit+"/s")
	}
	if s.ETA > 0 {
		extras = append(extras, "eta "+shortDuration(s.ETA))
	}
	if len(s.Nodes) > 1 {
		var parts []string
		for i, n := range s.Nodes {
			parts = append(parts, fmt.Sprintf("#%d %s", i+1, countShort(n.Done)))
		}
		extras = append(extras, strings.Join(parts, " "))
	}
	for {
		tail := strings.Join(append([]string{count}, extras...), "  ")
		room := width - runeLen(head) - runeLen(tail) - 4 // spaces and brackets
		if room >= 10 || len(extras) == 0 {
			line := head + " " + tail
			if s.Total > 0 && room >= 5 {
				line = head + " " + bar(min(room, 30), s.Pct) + " " + tail
			}
			return truncate(line, width)
		}
		extras = extras[:len(extras)-1]
	}
}

func bar(width int, pct float64) string {
	full := int(pct * float64(width))
	return "[" + strings.Repeat("=", full) + strings.Repeat(" ", width-full) + "]"
}

func runeLen(s string) int { return len([]rune(s)) }

func truncate(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	if width <= 0 {
		return ""
	}
	return string(r[:width])
}

// countShort is a count for a narrow line: 9,700, 45.2k, 1.20M.
func countShort(n int64) string {
	switch {
	case n < 10_000:
		return report.Count(n)
	case n < 1_000_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprintf("%.2fM", float64(n)/1e6)
}

// shortDuration is an ETA as people say it: 8s, 2m05s, 1h10m.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()+0.5))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
