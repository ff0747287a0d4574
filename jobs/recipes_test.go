// Package jobs holds the orchestrator recipes (README.md); this test checks
// the image they all run (the repository's Dockerfile), which cannot be built
// here (no Docker engine), by its text.
package jobs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type instruction struct {
	cmd  string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into instructions, joining continued
// lines and dropping comments.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out  []instruction
		cur  strings.Builder
		cont bool
	)
	for _, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if !cont && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont && strings.HasPrefix(line, "#") {
			continue
		}
		cont = strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		cur.WriteString(" ")
		if cont {
			continue
		}
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, filepath.Join("..", "Dockerfile"))

	// Stages.
	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	if from := builder[0].args; !regexp.MustCompile(`\bgolang:1\.26\b.* AS build$`).MatchString(from) {
		t.Errorf("builder stage FROM %q, want golang:1.26 ... AS build", from)
	}
	var build string
	for _, in := range builder {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=", "./cmd/outpost"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build %q lacks %q", build, want)
		}
	}

	base := final[0].args
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final stage FROM %q, want distroless/static or scratch", base)
	}
	var user, entrypoint string
	copied := false
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			if strings.HasPrefix(in.args, "--from=build ") && strings.HasSuffix(in.args, " /usr/local/bin/outpost") {
				copied = true
			}
		case "RUN":
			t.Errorf("the final stage has no shell to RUN %q", in.args)
		}
	}
	if !copied {
		t.Error("the binary must be copied from the build stage to /usr/local/bin/outpost (on PATH)")
	}
	// Numeric and not root, so that Kubernetes can verify runAsNonRoot.
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user) {
		t.Errorf("USER %q, want a numeric non-root user", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || ep[0] != "outpost" {
		t.Errorf(`ENTRYPOINT %s, want exactly ["outpost"] (exec form)`, entrypoint)
	}
	checkLabels(t, final)
	for _, in := range final {
		if in.cmd == "CMD" {
			t.Errorf("no CMD: `docker run IMAGE` must show outpost's usage, and the guide's commands pass their own args")
		}
	}
}

// checkLabels: the final stage carries the OCI annotations an image
// registry and a scanner read: where the source is, which commit, the
// licence (the LICENSE file's), the version, and the image's own name.
func checkLabels(t *testing.T, final []instruction) {
	t.Helper()
	labels := map[string]string{}
	args := map[string]bool{}
	kv := regexp.MustCompile(`([a-z.]+)="([^"]*)"`)
	for _, in := range final {
		switch in.cmd {
		case "LABEL":
			for _, m := range kv.FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = m[2]
			}
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			args[name] = true
		}
	}
	want := map[string]string{
		"org.opencontainers.image.title":    "outpost-migrate",
		"org.opencontainers.image.source":   "https://github.com/outpost-migrate/outpost",
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.revision": "${REVISION}",
		"org.opencontainers.image.version":  "${VERSION}",
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("LABEL %s=%q, want %q", k, labels[k], v)
		}
	}
	for _, a := range []string{"VERSION", "REVISION"} {
		if !args[a] {
			t.Errorf("the final stage does not declare ARG %s, so its label would be empty", a)
		}
	}
}

// TestImageIsNamedForWhatItIs: the image is outpost-migrate, not Outpost's
// hookdeck/outpost (whose image has `serve`; this one does not).
func TestImageIsNamedForWhatItIs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if regexp.MustCompile(`-t hookdeck/outpost`).MatchString(s) || !strings.Contains(s, "-t outpost-migrate:") {
		t.Error("the Dockerfile's build example must tag outpost-migrate, not hookdeck/outpost")
	}
	if !strings.Contains(s, "COPY LICENSE ") {
		t.Error("the image does not carry the LICENSE")
	}
}

// TestLicense: the repository is under Apache-2.0 (the label says so), with
// the licence's full text.
func TestLicense(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
		"9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS", "APPENDIX: How to apply the Apache License to your work."} {
		if !strings.Contains(s, want) {
			t.Errorf("LICENSE lacks %q: not the full Apache-2.0 text", want)
		}
	}
}

func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{".git", "**/.env"} {
		if !lines[want] {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
	for l := range lines {
		if l == "go.mod" || l == "go.sum" || l == "jobs" || l == "schemas" || l == "*.json" || l == "**/*.json" || l == "LICENSE" {
			t.Errorf(".dockerignore drops %q, which the build needs", l)
		}
	}
}

func TestReadmeCoversEveryRecipe(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"nomad/", "nomadrun", "kubernetes/", "ansible/", "compose/", "helm/", "ci/", "Dockerfile", "outpost jobs nomad run", "--wait-for", "--max-runtime", "outpost-migrate"} {
		if !strings.Contains(s, want) {
			t.Errorf("README.md does not mention %q", want)
		}
	}
}
