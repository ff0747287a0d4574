package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// Input checks of issue #22, kept apart from the settings table: each turns
// a value that used to fail late (a retryable 69, 44 s and 2 GB of YAML)
// into a 78 naming the setting and the fix.

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

// normalizeHost accepts a host name, an IPv4 address, an IPv6 address with
// or without brackets ("[::1]" is "::1"), and refuses a host with a port
// ("127.0.0.1:6379", "[::1]:6379"), saying how to split it, instead of
// dialling "127.0.0.1:6379:6379" and failing as unreachable (69).
func normalizeHost(v string) (string, error) {
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		inner := v[1 : len(v)-1]
		if net.ParseIP(inner) == nil {
			return "", fmt.Errorf("%q is not an IPv6 address in brackets", v)
		}
		return inner, nil
	}
	if net.ParseIP(v) != nil {
		return v, nil // IPv4, or IPv6 without brackets
	}
	if strings.ContainsAny(v, " /@") {
		return "", fmt.Errorf("%q is not a host name or address", v)
	}
	if h, p, err := net.SplitHostPort(v); err == nil && p != "" && strings.Trim(p, "0123456789") == "" {
		return "", fmt.Errorf("%q includes a port: set REDIS_HOST=%s and REDIS_PORT=%s (--redis-host, --redis-port; redis.host, redis.port)", v, h, p)
	}
	if strings.ContainsAny(v, "[]:") {
		return "", fmt.Errorf("%q is not a host name or address", v)
	}
	return v, nil
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
