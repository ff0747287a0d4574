package config

import (
	"errors"
	"os"
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// Input checks of issue #22, kept apart from the settings table: each turns
// a value that used to fail late (44 s and 2 GB of YAML, a bare "not a
// valid URL") into a 78 naming the setting and the fix. (A host with a port
// is checkHost's, in kinds.go.)

// MaxConfigFileSize bounds a config file: Outpost's are a few KiB, so a
// larger file is the wrong file, and parsing 100 MB of YAML took 44 s and
// 2.18 GB.
const MaxConfigFileSize = 1 << 20

// checkConfigFileSize refuses a config file over MaxConfigFileSize before
// reading it.
func checkConfigFileSize(path string) error {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() <= MaxConfigFileSize {
		return nil // reading it reports a missing file; pipes are read as they come
	}
	return report.E(report.CodeConfig, "config file %s is %d bytes, over the limit of %d (1 MiB): an Outpost config is a few KiB; is this the right file?", path, st.Size(), MaxConfigFileSize).
		With("setting", "config").With("source", "--config/CONFIG")
}

// postgresURLHint explains why a postgres:// URL does not parse; with
// credentials in it the usual cause is a password with characters that
// must be percent-encoded (url.Parse refuses non-ASCII and stray '%' in the
// user info). It never quotes the URL: it holds the password.
func postgresURLHint(v string) error {
	rest := v[strings.Index(v, "://")+3:]
	if strings.Contains(rest, "@") {
		return errors.New("is not a valid URL: percent-encode any character of the user name or password other than letters, digits and -._~ (é is %C3%A9, @ is %40, / is %2F, # is %23, % is %25, space is %20)")
	}
	return errors.New("is not a valid URL")
}
