// Package progress carries what a run tells while it works: log messages and
// progress events (chunk done, checkpoint saved, lock renewed, ...). With
// --log-format json each event is one line of stderr valid against
// schemas/progress.json; as text it is a log line; on a terminal a bar.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

// Event kinds, enumerated in schemas/progress.json.
const (
	Log              = "log"
	RunStarted       = "run_started"
	LockAcquired     = "lock_acquired"
	LockWaiting      = "lock_waiting"
	LockRenewed      = "lock_renewed"
	LockLost         = "lock_lost"
	LockReleased     = "lock_released"
	MigrationStarted = "migration_started"
	ChunkDone        = "chunk_done"
	CheckpointSaved  = "checkpoint_saved"
	PassStarted      = "pass_started"
	PassDone         = "pass_done"
	BatchDone        = "batch_done"
	// StepStarted: a step of a SQL migration begins; Fields name it and,
	// for a step that holds an exclusive lock, the lock ("lock", "tables",
	// "estimated_ms").
	StepStarted       = "step_started"
	MigrationFinished = "migration_finished"
	RunFinished       = "run_finished"
)

// Event is one progress event or log line.
type Event struct {
	TS            time.Time      `json:"ts"`
	Level         string         `json:"level"`
	Event         string         `json:"event"`
	RunID         string         `json:"run_id"`
	Msg           string         `json:"msg"`
	Command       string         `json:"command,omitempty"`
	Migration     string         `json:"migration,omitempty"`
	Node          string         `json:"node,omitempty"`
	Pass          int            `json:"pass,omitempty"`
	Cursor        string         `json:"cursor,omitempty"`
	Counts        *report.Counts `json:"counts,omitempty"`
	TotalEstimate int64          `json:"total_estimate,omitempty"`
	RatePerS      float64        `json:"rate_per_s,omitempty"`
	ETAS          float64        `json:"eta_s,omitempty"`
	ElapsedMS     int64          `json:"elapsed_ms,omitempty"`
	Fields        map[string]any `json:"fields,omitempty"`
}

// Sink receives events. Implementations are safe for concurrent use.
type Sink interface{ Emit(Event) }

// Nop drops every event.
var Nop Sink = nopSink{}

type nopSink struct{}

func (nopSink) Emit(Event) {}

// Logger writes events to w as JSON lines or text lines, stamping the run id
// and time. Debug events are dropped unless Verbose.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	runID   string
	command string
	Verbose bool
	// Quiet drops chunk_done and checkpoint_saved in text mode (a progress
	// bar shows them instead).
	Quiet bool
}

// NewLogger returns a Logger; w should already scrub secrets.
func NewLogger(w io.Writer, jsonLines bool, runID, command string) *Logger {
	return &Logger{w: w, json: jsonLines, runID: runID, command: command}
}

// Emit implements Sink.
func (l *Logger) Emit(e Event) {
	if e.Level == "" {
		e.Level = "info"
	}
	if e.Level == "debug" && !l.Verbose {
		return
	}
	if e.Event == "" {
		e.Event = Log
	}
	if e.TS.IsZero() {
		e.TS = time.Now().UTC()
	}
	e.RunID = l.runID
	if e.Command == "" {
		e.Command = l.command
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json {
		b, err := json.Marshal(e)
		if err != nil {
			return
		}
		_, _ = l.w.Write(append(b, '\n'))
		return
	}
	if l.Quiet && (e.Event == ChunkDone || e.Event == CheckpointSaved || e.Event == BatchDone) {
		return
	}
	_, _ = io.WriteString(l.w, formatText(e))
}

func formatText(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %s", e.TS.Format("15:04:05.000"), strings.ToUpper(e.Level), e.Msg)
	if e.Event != Log {
		fmt.Fprintf(&b, " event=%s", e.Event)
	}
	if e.Migration != "" {
		fmt.Fprintf(&b, " migration=%s", e.Migration)
	}
	if e.Node != "" {
		fmt.Fprintf(&b, " node=%s", e.Node)
	}
	if e.Counts != nil {
		fmt.Fprintf(&b, " scanned=%d changed=%d failed=%d", e.Counts.Scanned, e.Counts.Changed, e.Counts.Failed)
	}
	if e.RatePerS > 0 {
		fmt.Fprintf(&b, " rate=%.0f/s", e.RatePerS)
	}
	if e.ETAS > 0 {
		fmt.Fprintf(&b, " eta=%.0fs", e.ETAS)
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, e.Fields[k])
	}
	b.WriteString("\n")
	return b.String()
}

// Tee sends every event to each sink.
type Tee []Sink

// Emit implements Sink.
func (t Tee) Emit(e Event) {
	for _, s := range t {
		s.Emit(e)
	}
}

// Infof is a convenience for log events.
func Infof(s Sink, format string, args ...any) {
	s.Emit(Event{Level: "info", Event: Log, Msg: fmt.Sprintf(format, args...)})
}

// Warnf is a convenience for warning log events.
func Warnf(s Sink, format string, args ...any) {
	s.Emit(Event{Level: "warn", Event: Log, Msg: fmt.Sprintf(format, args...)})
}
