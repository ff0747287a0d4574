// Package schemas embeds the published JSON Schemas (draft 2020-12) of every
// report kind and of the progress events, so that the binary can print them
// (`outpost migrate schema`) and validate its own output without a network.
//
// Each file's $id is absolute and versioned: BaseURL + name + ".json". Adding
// an optional field keeps v1; a breaking change is a new directory, v2.
package schemas

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// BaseURL prefixes every schema's $id.
const BaseURL = "https://schemas.outpost-migrate.dev/migrate/v1/"

//go:embed *.json
var files embed.FS

// Names lists the schemas by name ("apply", "common", "progress", ...).
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, strings.TrimSuffix(e.Name(), ".json"))
		}
	}
	sort.Strings(out)
	return out
}

// Get returns the schema called name, or false.
func Get(name string) ([]byte, bool) {
	b, err := files.ReadFile(name + ".json")
	return b, err == nil
}

// ID returns the $id of the schema called name.
func ID(name string) string { return BaseURL + name + ".json" }

// ForKind returns the schema name for a report kind ("ApplyReport" → "apply").
func ForKind(kind string) string {
	return strings.ToLower(strings.TrimSuffix(kind, "Report"))
}
