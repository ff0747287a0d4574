package recipetest

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// recorder is a testing.TB that keeps the errors CheckParses reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// CheckParses is not vacuous: a good command line passes, and a flag the
// binary does not take, a missing --wait-for or a line that does not run
// `migrate` are reported.
func TestCheckParsesCatchesBadLines(t *testing.T) {
	good := []string{"migrate", "apply", "--yes", "--wait-for", "2m", "--max-runtime", "1h", "--output", "json"}
	r := &recorder{TB: t}
	CheckParses(r, "good", good)
	if len(r.errs) != 0 {
		t.Fatalf("a good line was refused: %v", r.errs)
	}
	for name, argv := range map[string][]string{
		"unknown flag":    append(good, "--max-runtim", "1h"),
		"bad value":       WithFlag(good, "max-runtime", "soon"),
		"no --wait-for":   {"migrate", "apply", "--yes"},
		"not migrate":     {"serve", "--wait-for", "1s"},
		"wait-for=form":   {"migrate", "plan", "--wait-for=1s", "--lock-timeout", "never"},
		"unknown command": {"migrate", "explode", "--wait-for", "1s"},
	} {
		r := &recorder{TB: t}
		CheckParses(r, name, argv)
		if len(r.errs) != 1 {
			t.Errorf("%s: %q: want one error, got %v", name, argv, r.errs)
		}
	}
}

func TestBudgetOf(t *testing.T) {
	b, err := BudgetOf([]string{"migrate", "apply", "--wait-for", "2m", "--lock-timeout=10m", "--max-runtime", "30m"}, 90*time.Second)
	if err != nil || b.Total() != 4*time.Minute+20*time.Minute+30*time.Minute+90*time.Second {
		t.Fatalf("%v %v", b, err)
	}
	if !strings.Contains(b.String(), "55m30s") {
		t.Fatal(b.String())
	}
	// The tool's default lock timeout when the line does not set one.
	if b, _ := BudgetOf([]string{"migrate", "plan", "--wait-for", "1m", "--max-runtime", "1m"}, 0); b.LockTimeout != 30*time.Second {
		t.Fatal(b)
	}
	for _, argv := range [][]string{
		{"migrate", "apply", "--max-runtime", "1h"},
		{"migrate", "apply", "--wait-for", "1m"},
		{"migrate", "apply", "--wait-for", "1m", "--max-runtime", "0s"},
		{"migrate", "apply", "--wait-for", "soon", "--max-runtime", "1h"},
	} {
		if _, err := BudgetOf(argv, 0); err == nil {
			t.Errorf("%q accepted", argv)
		}
	}
}
