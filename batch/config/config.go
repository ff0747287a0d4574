// Package config reads the stores' settings the way Outpost names them:
// command-line flags over environment variables over a config file (YAML, or
// a .env file) over defaults. Invalid input is a report.CodeConfig error that
// names the setting, its source and why.
//
// Only the stores in scope are required: Validate is told which.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/report"
)

// Config is the merged configuration.
type Config struct {
	DeploymentID string
	Redis        Redis
	PostgresURL  string
	// File is the config file that was read, if any.
	File string
	// Sources says where each setting came from (flag, env, file, default),
	// by setting name, for error messages and the README's debugging advice.
	Sources map[string]string
	// Warnings are settings that were ignored (unknown top-level keys of an
	// Outpost config file, which carries much more than this tool reads).
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

// The setting names, shared by flags, env and file.
const (
	KeyDeploymentID = "deployment_id"
	KeyPostgres     = "postgres"
	KeyRedisHost    = "redis.host"
	KeyRedisPort    = "redis.port"
	KeyRedisUser    = "redis.username"
	KeyRedisPass    = "redis.password"
	KeyRedisDB      = "redis.database"
	KeyRedisTLS     = "redis.tls_enabled"
	KeyRedisTLSSkip = "redis.tls_insecure_skip_verify"
	KeyRedisTLSCA   = "redis.tls_ca_file"
	KeyRedisCluster = "redis.cluster_enabled"
)

// EnvNames maps setting names to Outpost's environment variables.
var EnvNames = map[string]string{
	KeyDeploymentID: "DEPLOYMENT_ID",
	KeyPostgres:     "POSTGRES_URL",
	KeyRedisHost:    "REDIS_HOST",
	KeyRedisPort:    "REDIS_PORT",
	KeyRedisUser:    "REDIS_USERNAME",
	KeyRedisPass:    "REDIS_PASSWORD",
	KeyRedisDB:      "REDIS_DATABASE",
	KeyRedisTLS:     "REDIS_TLS_ENABLED",
	KeyRedisTLSSkip: "REDIS_TLS_INSECURE_SKIP_VERIFY",
	KeyRedisTLSCA:   "REDIS_TLS_CA_FILE",
	KeyRedisCluster: "REDIS_CLUSTER_ENABLED",
}

// FromEnv reads the settings from environment variables (lookup is os.LookupEnv
// in production, a map in tests).
func FromEnv(lookup func(string) (string, bool)) Settings {
	s := Settings{}
	for k, env := range EnvNames {
		if v, ok := lookup(env); ok {
			s[k] = v
		}
	}
	return s
}

// Load merges flags over env over the file at path (empty: no file) over
// defaults, and parses every value. It does not check that the stores a
// command needs are configured: that is Validate's job.
func Load(flags, env Settings, path string) (*Config, error) {
	file := Settings{}
	var warnings []string
	if path != "" {
		var err error
		file, warnings, err = ReadFile(path)
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
			merged[k] = v
			sources[k] = layer.name
		}
	}
	c := &Config{File: path, Sources: sources, Warnings: warnings, Redis: Redis{Host: "localhost", Port: 6379}}
	bad := func(key, why string) error {
		src := sources[key]
		name := key
		if env, ok := EnvNames[key]; ok {
			name = fmt.Sprintf("%s (%s / --%s)", key, env, flagName(key))
		}
		return report.E(report.CodeConfig, "invalid setting %s from %s: %s", name, src, why).With("setting", key).With("source", src)
	}
	var err error
	c.DeploymentID = strings.TrimSpace(merged[KeyDeploymentID])
	if strings.ContainsAny(c.DeploymentID, " {}\t\n") {
		return nil, bad(KeyDeploymentID, "must not contain spaces or braces")
	}
	c.PostgresURL = strings.TrimSpace(merged[KeyPostgres])
	if c.PostgresURL != "" {
		if err := checkPostgresURL(c.PostgresURL); err != nil {
			return nil, bad(KeyPostgres, err.Error())
		}
	}
	if v, ok := merged[KeyRedisHost]; ok {
		v = strings.TrimSpace(v)
		if v == "" {
			return nil, bad(KeyRedisHost, "is empty")
		}
		host, herr := normalizeHost(v)
		if herr != nil {
			return nil, bad(KeyRedisHost, herr.Error())
		}
		c.Redis.Host = host
	}
	if v, ok := merged[KeyRedisPort]; ok {
		if c.Redis.Port, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || c.Redis.Port < 1 || c.Redis.Port > 65535 {
			return nil, bad(KeyRedisPort, fmt.Sprintf("%q is not a port number (1-65535)", v))
		}
	}
	c.Redis.Username = merged[KeyRedisUser]
	c.Redis.Password = merged[KeyRedisPass]
	c.Redis.TLSCAFile = merged[KeyRedisTLSCA]
	if v, ok := merged[KeyRedisDB]; ok {
		if c.Redis.Database, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || c.Redis.Database < 0 {
			return nil, bad(KeyRedisDB, fmt.Sprintf("%q is not a database number (0 or more)", v))
		}
	}
	for key, dst := range map[string]*bool{KeyRedisTLS: &c.Redis.TLS, KeyRedisCluster: &c.Redis.Cluster, KeyRedisTLSSkip: &c.Redis.TLSInsecure} {
		if v, ok := merged[key]; ok {
			b, err := parseBool(v)
			if err != nil {
				return nil, bad(key, err.Error())
			}
			*dst = b
		}
	}
	if c.Redis.Cluster && c.Redis.Database != 0 {
		return nil, bad(KeyRedisDB, fmt.Sprintf("cluster mode supports only database 0, got %d", c.Redis.Database))
	}
	if c.Redis.TLSCAFile != "" {
		if _, err := os.Stat(c.Redis.TLSCAFile); err != nil {
			return nil, bad(KeyRedisTLSCA, "cannot read the CA file: "+err.Error())
		}
	}
	return c, nil
}

func flagName(key string) string {
	switch key {
	case KeyPostgres:
		return "postgres-url"
	case KeyRedisTLS:
		return "redis-tls"
	case KeyRedisCluster:
		return "redis-cluster"
	case KeyRedisTLSSkip:
		return "redis-tls-insecure-skip-verify"
	case KeyRedisTLSCA:
		return "redis-tls-ca-file"
	}
	return strings.ReplaceAll(strings.ReplaceAll(key, ".", "-"), "_", "-")
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

// ReadFile reads a YAML config file, or a .env file when the name says so
// (".env", "x.env", ".env.production"). It returns the settings it knows and
// warnings for top-level keys it ignores.
func ReadFile(path string) (Settings, []string, error) {
	if err := checkConfigFileSize(path); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, report.Wrap(report.CodeConfig, err, "cannot read config file %s", path).(*report.Error).With("setting", "config").With("source", "--config/CONFIG")
	}
	base := filepath.Base(path)
	if strings.HasSuffix(base, ".env") || strings.HasPrefix(base, ".env") {
		return readDotenv(path, b)
	}
	return readYAML(path, b)
}

func readDotenv(path string, b []byte) (Settings, []string, error) {
	m, err := godotenv.Parse(bytes.NewReader(b))
	if err != nil {
		// godotenv quotes the text around the error, which may be a
		// password: say where and what, never the text itself.
		return nil, nil, report.E(report.CodeConfig, "config file %s is not a valid .env file: %s%s", path, dotenvWhere(b), dotenvReason(err)).With("setting", "config")
	}
	s := Settings{}
	byEnv := map[string]string{}
	for k, env := range EnvNames {
		byEnv[env] = k
	}
	for k, v := range m {
		if key, ok := byEnv[k]; ok {
			s[key] = v
		}
	}
	return s, nil, nil
}

// dotenvWhere gives the line of a .env file's syntax error as "line N: ":
// one past the longest prefix of whole lines that parses (a multi-line
// quoted value that is closed later does not mislead it). Big files are not
// searched (the search parses the file once per line): "".
func dotenvWhere(b []byte) string {
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > 5000 {
		return ""
	}
	for n := len(lines) - 1; n > 0; n-- {
		if _, err := godotenv.Parse(bytes.NewReader(bytes.Join(lines[:n], nil))); err == nil {
			return fmt.Sprintf("line %d: ", n+1)
		}
	}
	return "line 1: "
}

// dotenvReason is godotenv's message without the quoted file content.
func dotenvReason(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "unterminated quoted value") {
		return "a quoted value is not terminated"
	}
	if i := strings.Index(msg, " near "); i >= 0 {
		msg = msg[:i]
	}
	if strings.HasPrefix(msg, "unexpected character") {
		return msg
	}
	// An unknown message may quote anything: keep only its first words.
	if i := strings.IndexAny(msg, "\"'`"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	return msg
}

// yamlRedis is strict: a typo under redis: is an error, not a silent default.
type yamlFile struct {
	DeploymentID *yamlScalar `yaml:"deployment_id"`
	Postgres     *yamlScalar `yaml:"postgres"`
	Redis        *struct {
		Host                  *yamlScalar `yaml:"host"`
		Port                  *yamlScalar `yaml:"port"`
		Username              *yamlScalar `yaml:"username"`
		Password              *yamlScalar `yaml:"password"`
		Database              *yamlScalar `yaml:"database"`
		TLSEnabled            *yamlScalar `yaml:"tls_enabled"`
		TLSInsecureSkipVerify *yamlScalar `yaml:"tls_insecure_skip_verify"`
		TLSCAFile             *yamlScalar `yaml:"tls_ca_file"`
		ClusterEnabled        *yamlScalar `yaml:"cluster_enabled"`
	} `yaml:"redis"`
}

// yamlScalar accepts any scalar and keeps its text, so that type errors are
// reported by Load with the setting's name rather than by the YAML decoder.
type yamlScalar struct{ v string }

func (s *yamlScalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a single value, got a %s", n.Line, kindName(n.Kind))
	}
	s.v = n.Value
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func readYAML(path string, b []byte) (Settings, []string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, report.E(report.CodeConfig, "config file %s is not valid YAML: %v", path, err).With("setting", "config")
	}
	if len(root.Content) == 0 {
		return Settings{}, nil, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, nil, report.E(report.CodeConfig, "config file %s: line %d: the top level must be a mapping of settings", path, doc.Line).With("setting", "config")
	}
	var warnings []string
	known := map[string]bool{"deployment_id": true, "postgres": true, "redis": true}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k := doc.Content[i]
		if !known[k.Value] {
			warnings = append(warnings, fmt.Sprintf("%s: line %d: setting %q is not used by the migration tool", path, k.Line, k.Value))
		}
		if k.Value == "redis" {
			if err := checkKnownKeys(path, doc.Content[i+1]); err != nil {
				return nil, nil, err
			}
		}
	}
	var f yamlFile
	if err := doc.Decode(&f); err != nil {
		return nil, nil, report.E(report.CodeConfig, "config file %s: %v", path, err).With("setting", "config")
	}
	s := Settings{}
	set := func(k string, v *yamlScalar) {
		if v != nil {
			s[k] = v.v
		}
	}
	set(KeyDeploymentID, f.DeploymentID)
	set(KeyPostgres, f.Postgres)
	if r := f.Redis; r != nil {
		set(KeyRedisHost, r.Host)
		set(KeyRedisPort, r.Port)
		set(KeyRedisUser, r.Username)
		set(KeyRedisPass, r.Password)
		set(KeyRedisDB, r.Database)
		set(KeyRedisTLS, r.TLSEnabled)
		set(KeyRedisTLSSkip, r.TLSInsecureSkipVerify)
		set(KeyRedisTLSCA, r.TLSCAFile)
		set(KeyRedisCluster, r.ClusterEnabled)
	}
	return s, warnings, nil
}

func checkKnownKeys(path string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return report.E(report.CodeConfig, "config file %s: line %d: redis must be a mapping", path, n.Line).With("setting", "redis")
	}
	known := map[string]bool{"host": true, "port": true, "username": true, "password": true, "database": true,
		"tls_enabled": true, "tls_insecure_skip_verify": true, "tls_ca_file": true, "cluster_enabled": true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			return report.E(report.CodeConfig, "config file %s: line %d: unknown setting redis.%s", path, k.Line, k.Value).With("setting", "redis."+k.Value)
		}
	}
	return nil
}

// Scope names the stores a command works on.
type Scope struct{ SQL, Redis bool }

// Names lists the scope for the report.
func (s Scope) Names() []string {
	var out []string
	if s.SQL {
		out = append(out, "sql")
	}
	if s.Redis {
		out = append(out, "redis")
	}
	return out
}

// Validate checks that every store in scope is configured. Redis has a
// default address (localhost:6379, as Outpost); PostgreSQL has none, so a
// command with SQL in scope needs POSTGRES_URL.
func (c *Config) Validate(s Scope) error {
	if s.SQL && c.PostgresURL == "" {
		return report.E(report.CodeConfig, "the SQL store is in scope but no PostgreSQL URL is configured: set POSTGRES_URL, --postgres-url or postgres: in the config file, or pass --redis-only").With("setting", KeyPostgres)
	}
	return nil
}

// DialTimeout bounds one connection attempt to a store.
const DialTimeout = 5 * time.Second
