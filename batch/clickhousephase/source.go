package clickhousephase

import (
	"io/fs"
	"strings"

	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// PrefixPlaceholder is replaced in every migration by the deployment prefix
// (DEPLOYMENT_ID + "_", or nothing), as Outpost's migrator does.
const PrefixPlaceholder = "{deployment_prefix}"

// store names ClickHouse's migrations in reports and messages.
var store = versioned.Store{Backend: Backend, Label: "ClickHouse"}

// Source is an ordered, validated set of ClickHouse migrations and the
// schema expected at each version. Immutable after Load.
type Source struct {
	// Set holds the migrations, ordered by version: 1, 2, ... without gaps.
	versioned.Set[Migration, *Migration]
	// Expected returns the schema at a version (0: none applied), with table
	// names without the deployment prefix, written independently of the SQL
	// files; verify compares the live schema with it. Nil disables verify's
	// comparison.
	Expected func(version int) (s *Schema, ok bool)
}

// Migration is one version. Its up file keeps the placeholder unreplaced;
// its down file ships for people who roll back by hand.
type Migration struct {
	versioned.Migration
}

// ID is the report id: "clickhouse/000002_matched_destination_ids".
func (m Migration) ID() string { return store.ID(&m.Migration) }

// Statements are the up file's statements with the prefix in place, split
// the way golang-migrate's ClickHouse driver splits them with
// x-multi-statement=true (Outpost's setting): at every ";", blank parts
// dropped. Each runs on its own: ClickHouse has no transactional DDL.
func (m Migration) Statements(prefix string) []string {
	var out []string
	for _, part := range strings.Split(strings.ReplaceAll(m.Up, PrefixPlaceholder, prefix), ";") {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		out = append(out, strings.TrimSpace(part))
	}
	return out
}

// Load reads NNNNNN_name.up.sql / .down.sql files from dir of fsys. An
// invalid set (see versioned.Store.Read; also an up file without a
// statement, or with a quote-holding statement golang-migrate would split
// wrongly) is a report.CodeDataRefused error.
func Load(fsys fs.FS, dir string, expected func(int) (*Schema, bool)) (Source, error) {
	read, err := store.Read(fsys, dir)
	if err != nil {
		return Source{}, err
	}
	src := Source{Set: versioned.Set[Migration, *Migration]{Store: store}, Expected: expected}
	for _, r := range read {
		mig := Migration{Migration: r}
		stmts := mig.Statements("")
		if len(stmts) == 0 {
			return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration %s has no up statements", mig.Key())
		}
		for _, st := range stmts {
			if strings.Count(stripComments(st), "'")%2 != 0 {
				return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration %s: a \";\" inside a quoted string would be split as golang-migrate splits statements", mig.Key())
			}
		}
		src.Migrations = append(src.Migrations, mig)
	}
	return src, nil
}

// stripComments drops "--" comments, whole-line and trailing.
func stripComments(sql string) string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
