package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Kind is how a setting's text is parsed and checked.
type Kind int

// The kinds of settings.
const (
	// KindText is kept as given (a password may have spaces).
	KindText Kind = iota
	// KindHost is a host name or address without a port.
	KindHost
	// KindPort is 1-65535.
	KindPort
	// KindNumber is an integer, 0 or more (a Redis database).
	KindNumber
	// KindBool is true/false, 1/0, yes/no, on/off.
	KindBool
	// KindFile is a path that must exist.
	KindFile
	// KindPostgresURL is a postgres:// URL naming a host and a database.
	KindPostgresURL
	// KindAddr is host:port.
	KindAddr
	// KindDeploymentID is a key prefix: no spaces or braces.
	KindDeploymentID
)

// parse returns the value in the type its Config field holds (string, int
// or bool), or why the text is not one.
func (k Kind) parse(v string) (any, error) {
	t := strings.TrimSpace(v)
	switch k {
	case KindHost:
		return t, checkHost(v)
	case KindPort:
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("%q is not a port number (1-65535)", v)
		}
		return n, nil
	case KindNumber:
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a database number (0 or more)", v)
		}
		return n, nil
	case KindBool:
		return parseBool(v)
	case KindFile:
		if _, err := os.Stat(v); err != nil {
			return v, errors.New("cannot read the CA file: " + err.Error())
		}
		return v, nil
	case KindPostgresURL:
		return t, checkPostgresURL(t)
	case KindAddr:
		return t, checkAddr(t)
	case KindDeploymentID:
		if strings.ContainsAny(t, " {}\t\n") {
			return t, errors.New("must not contain spaces or braces")
		}
		return t, nil
	}
	return v, nil
}

// checkHost refuses what Outpost would turn into a broken address (it
// writes host + ":" + port): a URL, a host with a port, a bracketed IPv6
// address.
func checkHost(v string) error {
	t := strings.TrimSpace(v)
	switch {
	case t == "":
		return errors.New("is empty")
	case strings.ContainsAny(t, " /"):
		return fmt.Errorf("%q is not a host name or address", v)
	case strings.HasPrefix(t, "["):
		return fmt.Errorf("%q is bracketed: give the IPv6 address without brackets (and the port in REDIS_PORT)", v)
	case strings.Contains(t, ":") && net.ParseIP(t) == nil:
		return fmt.Errorf("%q includes a port: give the host alone and the port in REDIS_PORT / --redis-port", v)
	}
	return nil
}

func checkAddr(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a port number", v, port)
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false)", v)
}

func checkPostgresURL(v string) error {
	if strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://") {
		u, err := url.Parse(v)
		if err != nil {
			// url's error quotes the URL, password included: say less.
			return errors.New("is not a valid URL")
		}
		if u.Host == "" {
			return errors.New("has no host")
		}
		if strings.Trim(u.Path, "/") == "" {
			return errors.New("names no database")
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("port %q is not a port number", p)
			}
		}
		return nil
	}
	return errors.New("must be a postgres:// or postgresql:// URL")
}
