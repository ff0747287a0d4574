package sqlmigrations

import (
	"testing"

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
