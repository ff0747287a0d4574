package config

import (
	"os"
	"path/filepath"

	"github.com/outpost-migrate/outpost/report"
)

// searchPaths is where Outpost looks for its config file when neither
// --config nor CONFIG names one, in its order (getConfigLocations in
// hookdeck/outpost internal/config): the relative paths from the working
// directory, then the absolute ones its Helm chart mounts.
var searchPaths = []string{
	".env",
	".outpost.yaml",
	"config/outpost.yaml",
	"config/outpost/config.yaml",
	"config/outpost/.env",
	"/config/outpost.yaml",
	"/config/outpost/config.yaml",
	"/config/outpost/.env",
}

// SearchPaths lists the paths Locate tries, with the absolute ones under
// root ("/" in production; a test points it at a directory of its own).
func SearchPaths(root string) []string {
	out := make([]string, len(searchPaths))
	for i, p := range searchPaths {
		if filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		out[i] = p
	}
	return out
}

// Locate picks the config file as Outpost does: --config, or CONFIG (the two
// naming different files is an error), or with search the first of
// SearchPaths(root) that exists; "" when there is none.
func Locate(flag, env string, search bool, root string) (string, error) {
	if flag != "" && env != "" && flag != env {
		return "", report.E(report.CodeConfig, "--config %s and CONFIG=%s name different config files: give one, or the same in both", flag, env).With("setting", "config").With("source", "flag and environment")
	}
	if flag != "" {
		return flag, nil
	}
	if env != "" || !search {
		return env, nil
	}
	for _, p := range SearchPaths(root) {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", nil
}
