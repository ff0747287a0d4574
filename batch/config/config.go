// Package config reads the stores' settings the way Outpost names them:
// command-line flags over environment variables over a config file (YAML, or
// a .env file) over defaults. Invalid input is a report.CodeConfig error that
// names the setting, its source and why.
//
// Every setting is one row of Table (settings.go); the flags, environment
// names, the file readers, messages and the secret list derive from it.
// Which stores a command works on is Resolve's decision (scope.go).
package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

// Config is the merged configuration.
type Config struct {
	DeploymentID string
	Redis        Redis
	PostgresURL  string
	ClickHouse   ClickHouse
	// File is the config file that was read, if any.
	File string
	// Sources says where each setting came from (flag, env, file), by
	// setting name, for error messages.
	Sources map[string]string
	// Ignored lists the top-level keys of the config file that this tool
	// does not read (an Outpost config carries much more than the stores).
	Ignored []string
	// Warnings are settings taken with Outpost's meaning where that
	// differs from what they say (a database in cluster mode).
	Warnings []string
}

// Redis settings.
type Redis struct {
	Host     string
	Port     int
	Username string
	Password string
	Database int
	TLS      bool
	// TLSInsecure skips certificate verification: an explicit opt-out.
	TLSInsecure bool
	// TLSCAFile adds a CA to verify the server with.
	TLSCAFile string
	Cluster   bool
	// HostOverride is Outpost's dev_cluster_host_override: every cluster
	// node discovered is dialled at Host, with the port it announces.
	HostOverride bool
}

// ClickHouse settings (Outpost's clickhouse: section).
type ClickHouse struct {
	Addr     string
	Username string
	Password string
	Database string
	TLS      bool
	// Protocol is native (Outpost's) or http: this tool's own setting.
	Protocol string
}

// Addr is host:port.
func (r Redis) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// Prefix is P from the storage spec: "<DEPLOYMENT_ID>:" or "".
func (c *Config) Prefix() string {
	if c.DeploymentID == "" {
		return ""
	}
	return c.DeploymentID + ":"
}

// Settings are raw values by name, as one source gives them. A missing name
// means the source does not set it.
type Settings map[string]string

// FromEnv reads the settings from environment variables (lookup is os.LookupEnv
// in production, a map in tests).
func FromEnv(lookup func(string) (string, bool)) Settings {
	s := Settings{}
	for _, row := range Table {
		if v, ok := lookup(row.Env); ok {
			s[row.Key] = v
		}
	}
	return s
}

// Load merges flags over env over the file at path (empty: no file) over
// defaults, and parses every value. It does not decide which stores a
// command works on: that is Resolve's job.
func Load(flags, env Settings, path string) (*Config, error) {
	file := Settings{}
	var ignored []string
	if path != "" {
		var err error
		file, ignored, err = ReadFile(path)
		if err != nil {
			return nil, err
		}
	}
	merged := Settings{}
	sources := map[string]string{}
	for _, layer := range []struct {
		name string
		s    Settings
	}{{"file " + path, file}, {"environment", env}, {"flag", flags}} {
		for k, v := range layer.s {
			// An empty value sets nothing, as in Outpost (whose env reader
			// ignores a variable that is present but empty).
			if v == "" {
				continue
			}
			merged[k] = v
			sources[k] = layer.name
		}
	}
	c := &Config{File: path, Sources: sources, Ignored: ignored}
	for _, row := range Table {
		v, ok := merged[row.Key]
		if !ok {
			if row.Default == "" {
				continue
			}
			v = row.Default
		}
		val, err := row.Kind.parse(v)
		if err != nil {
			return nil, c.invalid(row.Key, err.Error())
		}
		switch dst := row.field(c).(type) {
		case *string:
			*dst = val.(string)
		case *int:
			*dst = val.(int)
		case *bool:
			*dst = val.(bool)
		}
	}
	if c.Redis.Cluster && c.Redis.Database != 0 {
		// Outpost ignores the database in cluster mode (a cluster has only
		// database 0, where its data is): so does this tool, saying so.
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s is %d from %s, but a Redis Cluster has only database 0: using 0, as Outpost does", describe(KeyRedisDB), c.Redis.Database, c.Sources[KeyRedisDB]))
		c.Redis.Database = 0
	}
	return c, nil
}

// invalid is the CONFIG_INVALID error for a setting: its name, environment
// variable and flag, where the value came from, and why it is wrong.
func (c *Config) invalid(key, why string) error {
	src := c.Sources[key]
	if src == "" {
		src = "default"
	}
	return report.E(report.CodeConfig, "invalid setting %s from %s: %s", describe(key), src, why).With("setting", key).With("source", src)
}

// DialTimeout bounds one connection attempt to a store.
const DialTimeout = 5 * time.Second
