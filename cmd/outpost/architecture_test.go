package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/outpost-migrate/outpost"

// goListAll returns the import paths `go list args...` prints.
func goListAll(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	return strings.Fields(string(out))
}

// goList returns the module's packages that pattern's packages depend on
// (themselves included), as the go tool resolves them.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	var pkgs []string
	for _, p := range goListAll(t, args...) {
		if strings.HasPrefix(p, module) {
			pkgs = append(pkgs, strings.TrimPrefix(p, module+"/"))
		}
	}
	return pkgs
}

// TestArchitecture holds the package graph to the README's architecture:
// the binary links no test support (servertest, nomadtest, seedtest); batch
// never imports migrations (cmd wires them in); report and schemas import
// nothing of ours but each other's ground; batch/versioned, what the SQL
// and ClickHouse phases share, knows neither phase nor either driver.
func TestArchitecture(t *testing.T) {
	for _, p := range goList(t, "-deps", "./cmd/outpost") {
		require.False(t, strings.HasSuffix(p, "test"), "the outpost binary links the test-support package %s", p)
	}
	for _, p := range goList(t, "-deps", "./batch/...") {
		require.False(t, strings.HasPrefix(p, "migrations/"), "batch depends on %s: the engine must not know the migrations", p)
	}
	for _, p := range goList(t, "-deps", "./report/...", "./schemas/...") {
		require.True(t, p == "report" || p == "schemas", "report and schemas are the ground, yet depend on %s", p)
	}
	for _, p := range goListAll(t, "-deps", "./batch/versioned") {
		require.False(t, strings.HasSuffix(p, "phase") || strings.HasPrefix(p, "github.com/jackc/") || strings.HasPrefix(p, "github.com/ClickHouse/"),
			"batch/versioned depends on %s: what the phases share must know no phase and no store driver", p)
	}
}

// TestPackageNamesEqualFolders: every package is named as its folder, so no
// import needs an alias.
func TestPackageNamesEqualFolders(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Name}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, name, _ := strings.Cut(line, " ")
		folder := path[strings.LastIndex(path, "/")+1:]
		if name == "main" {
			continue
		}
		require.Equal(t, folder, name, "package %s is named %s", path, name)
	}
}
