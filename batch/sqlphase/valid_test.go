package sqlphase

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// validLines puts lines into a report of kind, as the runner would, and
// checks it against the published schema.
func validLines(t *testing.T, kind, command, outcome string, lines []report.Migration, err error) {
	t.Helper()
	r := report.New(kind, command, report.Tool{Name: "outpost", Version: "test"})
	r.Outcome = outcome
	r.Migrations = lines
	r.Finish(err, false)
	if verr := report.Validate(r); verr != nil {
		t.Errorf("%s report with these lines is invalid: %v", kind, verr)
	}
}

// jsonEvents is a progress sink that writes JSON lines, for validation.
type jsonEvents struct {
	buf bytes.Buffer
	*progress.Logger
}

func newJSONEvents() *jsonEvents {
	j := &jsonEvents{}
	j.Logger = progress.NewLogger(&j.buf, true, "run-test", "apply")
	return j
}

func (j *jsonEvents) validate(t *testing.T) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(j.buf.String()), "\n") {
		if line == "" {
			continue
		}
		n++
		if err := report.ValidateEvent([]byte(line)); err != nil {
			t.Errorf("progress event %s: %v", line, err)
		}
	}
	if n == 0 {
		t.Error("no progress events")
	}
}
