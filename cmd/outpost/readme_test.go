package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/servertest"
	"github.com/outpost-migrate/outpost/migrations/seed"
)

// screenshotCommands are the terminal sessions the README shows.
var screenshotCommands = []struct{ name, line string }{
	{"plan", "outpost migrate plan --redis-only"},
	{"apply", "outpost migrate apply --redis-only --yes"},
	{"status", "outpost migrate status --redis-only"},
}

// screenshot runs a command line in-process as on a 100-column terminal
// and returns what the terminal shows: the command, stderr as replayed
// (progress lines vanish once redrawn away), then the report.
func screenshot(t *testing.T, envs map[string]string, line string) string {
	t.Helper()
	args := strings.Fields(line)[1:]
	var out, errb bytes.Buffer
	width := func() int { return 100 }
	Main(context.Background(), env{args: args, lookupEnv: func(k string) (string, bool) { v, ok := envs[k]; return v, ok },
		stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		stdoutTTY: true, stderrTTY: true, stdinTTY: true, stdoutWidth: width, stderrWidth: width})
	s := &screen{}
	s.feed(errb.String(), time.Now())
	if len(s.cur) > 0 {
		s.lines = append(s.lines, string(s.cur))
	}
	text := "$ " + line + "\n"
	for _, l := range s.lines {
		text += l + "\n"
	}
	return text + out.String()
}

// volatile are what changes from run to run: times, durations, ports, ids.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\b\d\d:\d\d:\d\d\b`), "HH:MM:SS"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT[\d:.]+Z`), "TIME"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ms|s)\b|\b\d+m\d\ds\b`), "D"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "HOST:PORT"},
	{regexp.MustCompile(`\br-[0-9a-f]{16}\b`), "RUN"},
	{regexp.MustCompile(`token \d+`), "token N"},
	{regexp.MustCompile(` +\n`), "\n"},
}

func normalize(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

var screenshotBlock = regexp.MustCompile("(?s)<!-- screenshot (\\w+) -->\n```text\n(.*?)```\n<!-- /screenshot -->")

// TestREADMEScreenshots keeps the README's captured terminals true: it
// runs plan, apply and status on a seeded Redis as on a terminal and
// compares with the README, times, durations and ports aside.
// OUTPOST_UPDATE_README=1 rewrites the README's blocks instead.
func TestREADMEScreenshots(t *testing.T) {
	srv := servertest.Redis(t)
	c := srv.Client(t)
	o := seed.DefaultOptions()
	o.Tenants, o.Seed, o.UnrelatedKeys = 40, 7, 5
	_, err := seed.Write(context.Background(), c, o)
	require.NoError(t, err)
	envs := redisEnv(srv)
	got := map[string]string{}
	for _, sc := range screenshotCommands {
		got[sc.name] = strings.ReplaceAll(screenshot(t, envs, sc.line), srv.Host+":"+itoa(srv.Port), "127.0.0.1:6379")
	}
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	readme := string(b)
	if os.Getenv("OUTPOST_UPDATE_README") == "1" {
		readme = screenshotBlock.ReplaceAllStringFunc(readme, func(block string) string {
			name := screenshotBlock.FindStringSubmatch(block)[1]
			return "<!-- screenshot " + name + " -->\n```text\n" + got[name] + "```\n<!-- /screenshot -->"
		})
		require.NoError(t, os.WriteFile(path, []byte(readme), 0o644))
	}
	found := 0
	for _, m := range screenshotBlock.FindAllStringSubmatch(readme, -1) {
		want, ok := got[m[1]]
		require.True(t, ok, "README block %q names no screenshot command", m[1])
		require.Equal(t, normalize(want), normalize(m[2]), "README screenshot %q is stale: rerun with OUTPOST_UPDATE_README=1", m[1])
		found++
	}
	require.Equal(t, len(screenshotCommands), found, "README has a block per screenshot command")
}
