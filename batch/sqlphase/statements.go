package sqlphase

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// Statements lists what a migration runs, in order, for `plan --show-sql`:
// each SQL statement of each step with the table lock it takes, and each
// batched step as what it is. Every SQL step runs in one transaction of its
// own (its locks are held until that step commits); a batched step commits
// once per batch.
func (m *Migration) Statements() []report.Statement {
	var out []report.Statement
	for _, st := range m.Steps {
		if st.Batched != nil {
			out = append(out, report.Statement{Step: st.Name, Transactional: true, Batched: true,
				SQL: fmt.Sprintf("-- batched step %q: short transactions of a bounded number of rows each, resumable from its checkpoint", st.Name)})
			continue
		}
		for _, sql := range SplitStatements(st.SQL) {
			lock, rewrites := lockOf(withoutComments(sql))
			out = append(out, report.Statement{Step: st.Name, SQL: sql, Transactional: true, Lock: lock, Rewrites: rewrites})
		}
	}
	return out
}

// SplitStatements cuts SQL text at the semicolons that end statements,
// leaving those inside quotes, dollar quotes and comments alone, and drops
// comment-only pieces.
func SplitStatements(sql string) []string {
	var out []string
	start, i := 0, 0
	emit := func(end int) {
		if s := strings.TrimSpace(sql[start:end]); s != "" && !commentOnly(s) {
			out = append(out, s)
		}
		start = end + 1
	}
	for i < len(sql) {
		switch {
		case strings.HasPrefix(sql[i:], "--"):
			i = skipTo(sql, i, "\n")
		case strings.HasPrefix(sql[i:], "/*"):
			i = skipTo(sql, i+2, "*/")
		case sql[i] == '\'' || sql[i] == '"':
			i = skipTo(sql, i+1, string(sql[i]))
		case sql[i] == '$':
			if tag := dollarTag.FindString(sql[i:]); tag != "" {
				i = skipTo(sql, i+len(tag), tag)
			} else {
				i++
			}
		case sql[i] == ';':
			emit(i)
			i++
		default:
			i++
		}
	}
	emit(len(sql))
	return out
}

var dollarTag = regexp.MustCompile(`^\$[A-Za-z_]*\$`)

// skipTo returns the index just past the next end at or after i (or the
// text's length).
func skipTo(s string, i int, end string) int {
	j := strings.Index(s[i:], end)
	if j < 0 {
		return len(s)
	}
	return i + j + len(end)
}

// withoutComments drops the whole-line comments of a statement, so that it
// can be classified by its first word.
func withoutComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func commentOnly(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
			return false
		}
	}
	return true
}

var (
	alterRE   = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?("?[\w.]+"?)(.*)$`)
	indexRE   = regexp.MustCompile(`(?is)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:[\w"]+\s+)?ON\s+(?:ONLY\s+)?("?[\w.]+"?)`)
	dmlRE     = regexp.MustCompile(`(?is)^\s*(?:WITH\s.*?\)\s*)?(UPDATE|DELETE\s+FROM|INSERT\s+INTO)\s+(?:ONLY\s+)?("?[\w.]+"?)`)
	dropRE    = regexp.MustCompile(`(?is)^\s*DROP\s+(TABLE|INDEX)\s+(?:IF\s+EXISTS\s+)?("?[\w.]+"?)`)
	rewriteRE = regexp.MustCompile(`(?is)\bALTER\s+COLUMN\s+\S+\s+(?:SET\s+DATA\s+)?TYPE\b`)
)

// lockOf names the table lock a statement takes (PostgreSQL's documented
// lock modes) and whether it rewrites the whole table while holding it.
func lockOf(sql string) (lock string, rewrites bool) {
	if m := alterRE.FindStringSubmatch(sql); m != nil {
		return "ACCESS EXCLUSIVE on " + m[1] + " (blocks reads and writes)", rewriteRE.MatchString(m[2])
	}
	if m := indexRE.FindStringSubmatch(sql); m != nil {
		if m[1] != "" {
			return "SHARE UPDATE EXCLUSIVE on " + m[2] + " (writes continue)", false
		}
		return "SHARE on " + m[2] + " (blocks writes until the index is built)", false
	}
	if m := dmlRE.FindStringSubmatch(sql); m != nil {
		return "ROW EXCLUSIVE on " + m[2] + " (the rows it changes)", false
	}
	if m := dropRE.FindStringSubmatch(sql); m != nil {
		return "ACCESS EXCLUSIVE on " + m[2] + " (blocks reads and writes)", false
	}
	return "", false
}
