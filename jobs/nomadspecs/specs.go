// Package nomadspecs embeds the Nomad job specifications shipped in
// jobs/nomad: each recipe as HCL (for `nomad job run`) and as its JSON twin
// (the {"Job": {...}} document that `nomad job run -output` prints and the
// HTTP API accepts), so that `outpost jobs nomad run` can register them
// without a Nomad CLI and without parsing HCL (which needs a Nomad server).
//
// The tests in this package keep each HCL file and its JSON twin in
// agreement and check the rules every migration job must follow.
package nomadspecs

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.nomad.hcl *.json
var files embed.FS

// Names of the shipped recipes, each with a NAME.nomad.hcl and a NAME.json.
const (
	MigrateApply   = "migrate-apply"   // batch, one-shot `migrate apply --yes`
	MigrateParam   = "migrate-param"   // batch, parameterized by meta "command"
	OutpostService = "outpost-service" // service with a prestart migration task
)

// FS returns the embedded files (*.nomad.hcl and *.json).
func FS() fs.FS { return files }

// Names lists the recipes that have a JSON twin, sorted.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// JSON returns the JSON job specification of the recipe called name.
func JSON(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".json")
	if err != nil {
		return nil, fmt.Errorf("no embedded Nomad job called %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// HCL returns the HCL job specification of the recipe called name.
func HCL(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".nomad.hcl")
	if err != nil {
		return nil, fmt.Errorf("no embedded Nomad job called %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}
