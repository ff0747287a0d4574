// Package progress carries what a run tells while it works: log messages and
// progress events (chunk done, checkpoint saved, lock renewed, ...). With
// --log-format json each event is one line of stderr valid against
// schemas/progress.json; as text it is a logfmt line; a progress display
// (cmd/outpost) summarizes the per-chunk events with a Tracker.
package progress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
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
	TS            time.Time      `json:"time"`
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

// Logger writes events to w through a log/slog handler: logfmt text
// (time=… level=… msg="…" key=value, nested values flattened to dotted
// keys) or one JSON object per line (time, level, msg, then the event's
// fields), valid against schemas/progress.json. It stamps the run id and
// the time. Debug events are dropped unless Verbose.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	runID   string
	command string
	Verbose bool
	// Quiet drops the per-chunk events (chunk_done, checkpoint_saved,
	// batch_done) in text mode: a progress display or periodic progress
	// lines show them instead.
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
		e.TS = time.Now()
	}
	e.RunID = l.runID
	if e.Command == "" {
		e.Command = l.command
	}
	if !l.json && l.Quiet && PerChunk(e.Event) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.handler().Handle(context.Background(), record(e, l.json))
}

// PerChunk says whether an event kind is emitted per chunk or batch.
func PerChunk(kind string) bool {
	return kind == ChunkDone || kind == CheckpointSaved || kind == BatchDone
}

// handler is the slog handler for one line; built per line because it is
// cheap and keeps w's writes whole.
func (l *Logger) handler() slog.Handler {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: replaceAttr}
	if l.json {
		return slog.NewJSONHandler(l.w, opts)
	}
	return slog.NewTextHandler(l.w, opts)
}

// TimeLayout is the time of every log line: RFC3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(TimeLayout))
	case slog.LevelKey:
		return slog.String(slog.LevelKey, strings.ToLower(levelName(a.Value.Any())))
	}
	return a
}

func levelName(v any) string {
	if l, ok := v.(slog.Level); ok {
		if l == slog.LevelWarn {
			return "warn"
		}
		return l.String()
	}
	return fmt.Sprint(v)
}

var levels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// record turns an event into a slog record: the event's fields as attrs in
// the schema's order, numbers rounded, counts and fields as groups (nested
// objects in JSON, dotted keys in text, where zero counts are left out).
func record(e Event, jsonLines bool) slog.Record {
	r := slog.NewRecord(e.TS, levels[e.Level], e.Msg, 0)
	r.AddAttrs(slog.String("event", e.Event), slog.String("run_id", e.RunID))
	str := func(k, v string) {
		if v != "" {
			r.AddAttrs(slog.String(k, v))
		}
	}
	str("command", e.Command)
	str("migration", e.Migration)
	str("node", e.Node)
	if e.Pass != 0 {
		r.AddAttrs(slog.Int("pass", e.Pass))
	}
	str("cursor", e.Cursor)
	if e.Counts != nil {
		r.AddAttrs(group("counts", e.Counts, !jsonLines))
	}
	num := func(k string, v int64) {
		if v != 0 {
			r.AddAttrs(slog.Int64(k, v))
		}
	}
	num("total_estimate", e.TotalEstimate)
	if e.RatePerS > 0 {
		r.AddAttrs(slog.Float64("rate_per_s", Round(e.RatePerS, 1)))
	}
	if e.ETAS > 0 {
		r.AddAttrs(slog.Float64("eta_s", Round(e.ETAS, 1)))
	}
	num("elapsed_ms", e.ElapsedMS)
	if len(e.Fields) > 0 {
		r.AddAttrs(group("fields", e.Fields, !jsonLines))
	}
	return r
}

// Round rounds v to the given number of decimals.
func Round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}

// group turns a value into a slog group through its JSON form, so that a
// struct keeps its field names and a map its keys.
func group(key string, v any, skipZero bool) slog.Attr {
	b, err := json.Marshal(v)
	if err != nil {
		return slog.String(key, fmt.Sprint(v))
	}
	var m any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return slog.String(key, string(b))
	}
	return attrOf(key, m, skipZero, 0)
}

// attrOf converts a decoded JSON value; with skipZero, zero numbers two
// levels down (the counts of each label in fields.by_label) are left out.
func attrOf(key string, v any, skipZero bool, depth int) slog.Attr {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var attrs []any
		for _, k := range keys {
			a := attrOf(k, x[k], skipZero, depth+1)
			if !a.Equal(slog.Attr{}) {
				attrs = append(attrs, a)
			}
		}
		return slog.Group(key, attrs...)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			if i == 0 && skipZero && depth >= 2 {
				return slog.Attr{}
			}
			return slog.Int64(key, i)
		}
		f, _ := x.Float64()
		return slog.Float64(key, Round(f, 3))
	case []any:
		b, _ := json.Marshal(x)
		return slog.String(key, string(b))
	case nil:
		return slog.Attr{}
	}
	return slog.Any(key, v)
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
