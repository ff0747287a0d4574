package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

// screen replays what a terminal shows: carriage returns, erase-to-end
// and newlines. frames are the progress lines as each redraw left them,
// with the time they were read.
type screen struct {
	lines  []string
	times  []time.Time // when each line was finished
	cur    []rune
	col    int
	frames []frame
}

type frame struct {
	text string
	at   time.Time
}

func (s *screen) feed(b string, at time.Time) {
	for i := 0; i < len(b); {
		switch {
		case strings.HasPrefix(b[i:], "\x1b[K"):
			s.cur = s.cur[:min(s.col, len(s.cur))]
			if len(s.cur) > 0 {
				s.frames = append(s.frames, frame{string(s.cur), at})
			}
			i += 3
			continue
		case b[i] == '\r':
			s.col = 0
		case b[i] == '\n':
			s.lines = append(s.lines, string(s.cur))
			s.times = append(s.times, at)
			s.cur, s.col = nil, 0
		default:
			r, n := utf8.DecodeRuneInString(b[i:])
			if s.col < len(s.cur) {
				s.cur[s.col] = r
			} else {
				s.cur = append(s.cur, r)
			}
			s.col++
			i += n
			continue
		}
		i++
	}
}

// runInTerminal runs the binary with stdin, stdout and stderr on a
// pseudo-terminal of the given width and replays its output.
func runInTerminal(t *testing.T, envs map[string]string, width int, args ...string) (*screen, time.Time, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TERM=xterm"}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(width), Rows: 40})
	require.NoError(t, err)
	defer f.Close()
	s := &screen{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			mu.Lock()
			s.feed(string(buf[:n]), time.Now())
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	if len(s.cur) > 0 {
		s.lines = append(s.lines, string(s.cur))
	}
	return s, start, code
}

var frameRE = regexp.MustCompile(`^(\S+(?: \S+)?) \[[= ]*\] +(\d+)% ([\d.,]+[kM]?)/~([\d.,]+[kM]?) keys(?:  ([\d.,]+[kM]?) keys/s)?`)

func compact(s string) float64 {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	}
	v, _ := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	return v * mult
}

// TestTerminalProgressAt80And120Columns runs apply in a pseudo-terminal as
// an operator would and checks the screen: no line wider than the window,
// percentages that never go back, no rate above the keys scanned so far
// per elapsed second, and the report on its own line.
func TestTerminalProgressAt80And120Columns(t *testing.T) {
	for _, width := range []int{80, 120} {
		t.Run(strconv.Itoa(width), func(t *testing.T) {
			srv := servertest.Redis(t)
			c := srv.Client(t)
			o, _ := engSeed(t, c, 5_000)
			s, start, code := runInTerminal(t, redisEnv(srv), width, "migrate", "apply", "--yes", "--redis-only", "-o", "text", "--scan-count", "500")
			require.Equal(t, 0, code, strings.Join(s.lines, "\n"))
			for _, l := range append(append([]string{}, s.lines...), framesText(s)...) {
				require.LessOrEqual(t, utf8.RuneCountInString(l), width, "wider than the window: %q", l)
			}
			require.NotEmpty(t, s.frames, strings.Join(s.lines, "\n"))
			last := map[string]float64{}
			first := map[string]time.Time{}
			rates := 0
			var prev frame
			for _, f := range s.frames {
				m := frameRE.FindStringSubmatch(f.text)
				require.NotNil(t, m, "a progress line: %q", f.text)
				label, pct, done := m[1], compact(m[2]), compact(m[3])
				if _, ok := first[label]; !ok {
					first[label] = s.passStart(prev.at, f.at)
				}
				prev = f
				require.GreaterOrEqual(t, pct, last[label], "percentage went back: %q", f.text)
				last[label] = pct
				if m[5] != "" {
					rates++
					// Elapsed since the pass began on screen (its "pass N
					// over" line, else its first progress line).
					elapsed := f.at.Sub(first[label]).Seconds()
					require.LessOrEqual(t, compact(m[5]), done/elapsed*1.05, "rate above keys scanned per elapsed second: %q after %.2fs", f.text, elapsed)
					require.GreaterOrEqual(t, f.at.Sub(start), 900*time.Millisecond, "a rate in the first instants: %q", f.text)
				}
			}
			report := -1
			for i, l := range s.lines {
				if strings.HasPrefix(l, "outpost migrate apply: applied 3 migrations in ") {
					report = i
				}
			}
			require.GreaterOrEqual(t, report, 0, "the report starts on its own line:\n%s", strings.Join(s.lines, "\n"))
			t.Logf("%d frames, %d with a rate; screen:\n%s", len(s.frames), rates, strings.Join(s.lines, "\n"))
			requireMigrated(t, c, o)
		})
	}
}

// passStart is when a pass began on screen: the "pass N over" line read
// after the previous progress frame and before this one, else this frame.
func (s *screen) passStart(after, frameAt time.Time) time.Time {
	for i := len(s.lines) - 1; i >= 0; i-- {
		if s.times[i].After(frameAt) {
			continue
		}
		if s.times[i].Before(after) {
			break
		}
		if passLine.MatchString(s.lines[i]) {
			return s.times[i]
		}
	}
	return frameAt
}

var passLine = regexp.MustCompile(`pass \d+ over `)

func framesText(s *screen) []string {
	out := make([]string, len(s.frames))
	for i, f := range s.frames {
		out[i] = f.text
	}
	return out
}

var _ = context.Background
var _ = io.EOF
