package clickhousephase

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// PrefixPlaceholder is replaced in every migration by the deployment prefix
// (DEPLOYMENT_ID + "_", or nothing), as Outpost's migrator does.
const PrefixPlaceholder = "{deployment_prefix}"

// Source is an ordered, validated set of ClickHouse migrations and the
// schema expected at each version. Immutable after Load.
type Source struct {
	// Migrations are ordered by version: 1, 2, ... without gaps.
	Migrations []Migration
	// Expected returns the schema at a version (0: none applied), with table
	// names without the deployment prefix, written independently of the SQL
	// files; verify compares the live schema with it. Nil disables verify's
	// comparison.
	Expected func(version int) (s *Schema, ok bool)
}

// Migration is one version.
type Migration struct {
	Version int
	// Name is the file name's description: "matched_destination_ids".
	Name string
	// Description is the up file's first comment paragraph.
	Description string
	// Up is the up file with the placeholder unreplaced.
	Up string
	// Down ships for people who roll back by hand; the tool never runs it.
	Down string
}

// Key is the file name stem: "000002_matched_destination_ids".
func (m Migration) Key() string { return fmt.Sprintf("%06d_%s", m.Version, m.Name) }

// ID is the report id: "clickhouse/000002_matched_destination_ids".
func (m Migration) ID() string { return Backend + "/" + m.Key() }

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

var fileRE = regexp.MustCompile(`^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$`)

// Load reads NNNNNN_name.up.sql / .down.sql files from dir of fsys. An
// invalid set (bad names, gaps, an empty or quote-holding statement
// golang-migrate would split wrongly) is a report.CodeDataRefused error.
func Load(fsys fs.FS, dir string, expected func(int) (*Schema, bool)) (Source, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return Source{}, report.Wrap(report.CodeDataRefused, err, "read ClickHouse migrations")
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration file %q is not named NNNNNN_name.up.sql or .down.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return Source{}, report.Wrap(report.CodeDataRefused, err, "read ClickHouse migration %s", e.Name())
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &Migration{Version: v, Name: m[2]}
			byVersion[v] = mig
		} else if mig.Name != m[2] {
			return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration version %d has two names: %q and %q", v, mig.Name, m[2])
		}
		if m[3] == "up" {
			mig.Up = string(b)
		} else {
			mig.Down = string(b)
		}
	}
	versions := make([]int, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	src := Source{Expected: expected}
	for i, v := range versions {
		mig := byVersion[v]
		if v != i+1 {
			return Source{}, report.E(report.CodeDataRefused, "ClickHouse migrations must be numbered 1, 2, ... without gaps: found %d where %d was expected", v, i+1)
		}
		if len(mig.Statements("")) == 0 {
			return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration %s has no up statements", mig.Key())
		}
		for _, st := range mig.Statements("") {
			if strings.Count(stripComments(st), "'")%2 != 0 {
				return Source{}, report.E(report.CodeDataRefused, "ClickHouse migration %s: a \";\" inside a quoted string would be split as golang-migrate splits statements", mig.Key())
			}
		}
		mig.Description = describe(mig.Up)
		src.Migrations = append(src.Migrations, *mig)
	}
	return src, nil
}

// describe returns the first paragraph of "--" comments at the top.
func describe(up string) string {
	var parts []string
	for _, line := range strings.Split(up, "\n") {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "--") {
			break
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "--"))
		if t == "" {
			break
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, " ")
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

// Latest is the highest version.
func (s Source) Latest() int { return len(s.Migrations) }

// Lookup resolves a target: "clickhouse/000002_matched_destination_ids",
// "000002_matched_destination_ids", "matched_destination_ids", "2" or
// "000002".
func (s Source) Lookup(target string) (version int, ok bool) {
	t := strings.TrimPrefix(strings.TrimSpace(target), Backend+"/")
	if t == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(t); err == nil {
		return n, n >= 1 && n <= s.Latest()
	}
	for _, m := range s.Migrations {
		if t == m.Key() || t == m.Name {
			return m.Version, true
		}
	}
	return 0, false
}
