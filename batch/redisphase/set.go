// Package redisphase runs Redis migrations on the scan executor and records
// their state the way Outpost's server reads it (hash P+"outpost:migration:"
// +name with status, applied_at, and for not-applicable ones checked_at and
// reason). It knows no migration by name: cmd hands it a Set.
package redisphase

import (
	"github.com/outpost-migrate/outpost/batch/scan"
)

// Migration describes one Redis migration.
type Migration struct {
	// Name is the id Outpost records, e.g. "001_hash_tags".
	Name        string
	Description string
	// NotApplicable returns why the migration does not apply to a
	// deployment whose key prefix is prefix, or "" when it applies.
	NotApplicable func(prefix string) string
	// Copies: the migration adds a copy of each key it changes, so apply
	// checks first that Redis has the memory for them.
	Copies bool
}

// Set is an ordered list of Redis migrations and what they do to a chunk of
// keys. The phase runs every pending migration in one pass over the keyspace
// (each key read once): so steps take the names of the migrations to apply
// (todo, in order) and of those already applied (done), and each step records
// its counts and issues in the tally under the migration's name.
//
// Steps must be idempotent and must check every command's result.
type Set interface {
	Migrations() []Migration
	// Spec is the keys the passes walk.
	Spec() scan.Spec
	// Apply returns the step that applies todo.
	Apply(todo, done []string) scan.Step
	// Check returns a read-only step that counts, per migration in todo,
	// keys still to change (Changed) and keys it cannot convert (Failed,
	// with issues). Plan and the confirming pass use it.
	Check(todo, done []string) scan.Step
	// Verify returns a read-only step that checks that the applied
	// migrations hold (Checked, Passed, Failed with issues).
	Verify(applied []string) scan.Step
	// Cleanup returns the step that removes what the migrations preserved,
	// key by key and only where the copy verifies; requires names the
	// migrations that must be applied first. Its counts are recorded under
	// the name of the migration whose keys it removes.
	Cleanup() (step scan.Step, requires []string)
}
