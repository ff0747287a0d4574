package main

import (
	"io"
	"sync"
)

// logWriter is stderr as the tool uses it: logs and progress are worth
// nothing next to the run itself, so a write that fails (a reader that went
// away, `2>&1 | head`, a full disk) turns logging off instead of stopping
// the run. Without it a run killed by SIGPIPE at its fourth log line would
// leave the lock held for an hour and no report (issue #22).
type logWriter struct {
	mu   sync.Mutex
	w    io.Writer
	dead bool
}

func newLogWriter(w io.Writer) *logWriter { return &logWriter{w: w} }

// Write never fails: after the first error it drops everything.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dead {
		if _, err := l.w.Write(p); err != nil {
			l.dead = true
		}
	}
	return len(p), nil
}
