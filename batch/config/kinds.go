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
	// KindAddr is host:port (or http(s)://host:port).
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
		return parseHost(v)
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

// parseHost gives the host to dial: a name, an IPv4 address, or an IPv6
// address with or without brackets ("[::1]" is "::1", which Outpost's
// host + ":" + port also reaches). A host with a port is refused, saying
// how to split it: Outpost would dial "h:6379:6379" and fail.
func parseHost(v string) (string, error) {
	t := strings.TrimSpace(v)
	if t == "" {
		return "", errors.New("is empty")
	}
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") && net.ParseIP(t[1:len(t)-1]) != nil {
		return t[1 : len(t)-1], nil
	}
	if net.ParseIP(t) != nil {
		return t, nil
	}
	if strings.ContainsAny(t, " /@") {
		return "", fmt.Errorf("%q is not a host name or address", v)
	}
	if h, p, err := net.SplitHostPort(t); err == nil && p != "" && strings.Trim(p, "0123456789") == "" {
		return "", fmt.Errorf("%q includes a port: set REDIS_HOST=%s and REDIS_PORT=%s (--redis-host, --redis-port; redis.host, redis.port)", v, h, p)
	}
	if strings.ContainsAny(t, "[]:") {
		return "", fmt.Errorf("%q is not a host name or address", v)
	}
	return t, nil
}

// checkAddr accepts host:port, and http(s)://host:port for a ClickHouse
// reached over its HTTP interface.
func checkAddr(v string) error {
	a := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(v, "https://"), "http://"), "/")
	host, port, err := net.SplitHostPort(a)
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
			return postgresURLHint(v)
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
