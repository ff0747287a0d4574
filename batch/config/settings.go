package config

import (
	"fmt"
	"sort"
	"strings"
)

// Setting is one row of the settings table: everything the tool knows about
// one store setting. Flags, environment names, the YAML reader, the
// known-key check, error messages and the list of secrets are all derived
// from Table, so a new setting is one row (plus the Config field it fills).
type Setting struct {
	// Key is the setting's name and its path in an Outpost YAML config
	// file: "redis.host" is `host:` under `redis:`.
	Key string
	// Env is Outpost's environment variable, also the name in a .env file.
	Env string
	// Flag is the global command-line flag, without the dashes.
	Flag string
	// Kind says how the text is parsed and checked.
	Kind Kind
	// Secret values never appear in output: the scrubber learns them
	// before anything is parsed.
	Secret bool
	// Default is the value when no source sets it ("" for none), as
	// Outpost's InitDefaults has it.
	Default string
	// Help is the flag's help text.
	Help string
	// Placeholder stands for the value in help (--redis-host=HOST); none
	// for a bool.
	Placeholder string
	// field is where the parsed value goes.
	field func(c *Config) any
}

// The setting names, shared by flags, env and file (each also a YAML path).
const (
	KeyDeploymentID      = "deployment_id"
	KeyPostgres          = "postgres"
	KeyRedisHost         = "redis.host"
	KeyRedisPort         = "redis.port"
	KeyRedisUser         = "redis.username"
	KeyRedisPass         = "redis.password"
	KeyRedisDB           = "redis.database"
	KeyRedisTLS          = "redis.tls_enabled"
	KeyRedisTLSSkip      = "redis.tls_insecure_skip_verify"
	KeyRedisTLSCA        = "redis.tls_ca_file"
	KeyRedisCluster      = "redis.cluster_enabled"
	KeyRedisHostOverride = "redis.dev_cluster_host_override"
	KeyClickHouseAddr    = "clickhouse.addr"
	KeyClickHouseUser    = "clickhouse.username"
	KeyClickHousePass    = "clickhouse.password"
	KeyClickHouseDB      = "clickhouse.database"
	KeyClickHouseTLS     = "clickhouse.tls_enabled"
	KeyClickHouseProto   = "clickhouse.protocol"
)

// Table is every store setting the tool reads, in the order --help lists
// them. Names and defaults are Outpost's (internal/config in
// hookdeck/outpost), except the two TLS verification settings, which are
// this tool's own: Outpost does not verify Redis certificates at all.
var Table = []Setting{
	{Key: KeyRedisHost, Placeholder: "HOST", Env: "REDIS_HOST", Flag: "redis-host", Kind: KindHost, Default: "127.0.0.1",
		Help: "Redis host name or address, without a port; default 127.0.0.1.", field: func(c *Config) any { return &c.Redis.Host }},
	{Key: KeyRedisPort, Placeholder: "PORT", Env: "REDIS_PORT", Flag: "redis-port", Kind: KindPort, Default: "6379",
		Help: "Redis port; default 6379.", field: func(c *Config) any { return &c.Redis.Port }},
	{Key: KeyRedisUser, Placeholder: "USER", Env: "REDIS_USERNAME", Flag: "redis-username", Kind: KindText,
		Help: "Redis ACL user name.", field: func(c *Config) any { return &c.Redis.Username }},
	{Key: KeyRedisPass, Placeholder: "PASSWORD", Env: "REDIS_PASSWORD", Flag: "redis-password", Kind: KindText, Secret: true,
		Help: "Redis password.", field: func(c *Config) any { return &c.Redis.Password }},
	{Key: KeyRedisDB, Placeholder: "N", Env: "REDIS_DATABASE", Flag: "redis-database", Kind: KindNumber,
		Help: "Redis database number; default 0 (ignored in cluster mode, as in Outpost).", field: func(c *Config) any { return &c.Redis.Database }},
	{Key: KeyRedisCluster, Env: "REDIS_CLUSTER_ENABLED", Flag: "redis-cluster", Kind: KindBool,
		Help: "Redis Cluster mode.", field: func(c *Config) any { return &c.Redis.Cluster }},
	{Key: KeyRedisHostOverride, Env: "REDIS_DEV_CLUSTER_HOST_OVERRIDE", Flag: "redis-dev-cluster-host-override", Kind: KindBool,
		Help:  "Redis Cluster: reach every discovered node through the configured host (its announced port kept), for clusters behind Docker or a tunnel; development only, as in Outpost.",
		field: func(c *Config) any { return &c.Redis.HostOverride }},
	{Key: KeyRedisTLS, Env: "REDIS_TLS_ENABLED", Flag: "redis-tls", Kind: KindBool,
		Help: "Connect to Redis over TLS, verifying its certificate (Outpost itself does not verify it).", field: func(c *Config) any { return &c.Redis.TLS }},
	{Key: KeyRedisTLSSkip, Env: "REDIS_TLS_INSECURE_SKIP_VERIFY", Flag: "redis-tls-insecure-skip-verify", Kind: KindBool,
		Help: "With --redis-tls, do not verify the certificate (explicit opt-out; what Outpost does).", field: func(c *Config) any { return &c.Redis.TLSInsecure }},
	{Key: KeyRedisTLSCA, Placeholder: "FILE", Env: "REDIS_TLS_CA_FILE", Flag: "redis-tls-ca-file", Kind: KindFile,
		Help: "With --redis-tls, a PEM CA to verify the server with.", field: func(c *Config) any { return &c.Redis.TLSCAFile }},
	{Key: KeyPostgres, Placeholder: "URL", Env: "POSTGRES_URL", Flag: "postgres-url", Kind: KindPostgresURL, Secret: true,
		Help:  "PostgreSQL URL of the log store, e.g. postgres://user:pass@host:5432/db?sslmode=require; without it (or CLICKHOUSE_ADDR) the SQL phase is skipped, as in Outpost.",
		field: func(c *Config) any { return &c.PostgresURL }},
	{Key: KeyClickHouseAddr, Placeholder: "HOST:PORT", Env: "CLICKHOUSE_ADDR", Flag: "clickhouse-addr", Kind: KindAddr,
		Help: "ClickHouse log store address: host:port (native protocol), or http(s)://host:port.", field: func(c *Config) any { return &c.ClickHouse.Addr }},
	{Key: KeyClickHouseUser, Placeholder: "USER", Env: "CLICKHOUSE_USERNAME", Flag: "clickhouse-username", Kind: KindText,
		Help: "ClickHouse user name.", field: func(c *Config) any { return &c.ClickHouse.Username }},
	{Key: KeyClickHousePass, Placeholder: "PASSWORD", Env: "CLICKHOUSE_PASSWORD", Flag: "clickhouse-password", Kind: KindText, Secret: true,
		Help: "ClickHouse password.", field: func(c *Config) any { return &c.ClickHouse.Password }},
	{Key: KeyClickHouseDB, Placeholder: "NAME", Env: "CLICKHOUSE_DATABASE", Flag: "clickhouse-database", Kind: KindText, Default: "outpost",
		Help: "ClickHouse database; default outpost.", field: func(c *Config) any { return &c.ClickHouse.Database }},
	{Key: KeyClickHouseTLS, Env: "CLICKHOUSE_TLS_ENABLED", Flag: "clickhouse-tls", Kind: KindBool,
		Help: "Connect to ClickHouse over TLS.", field: func(c *Config) any { return &c.ClickHouse.TLS }},
	{Key: KeyClickHouseProto, Env: "CLICKHOUSE_PROTOCOL", Flag: "clickhouse-protocol", Kind: KindText, Default: "native",
		Help:  "This tool's own: native (Outpost's, CLICKHOUSE_ADDR is the native port) or http (ClickHouse's HTTP interface).",
		field: func(c *Config) any { return &c.ClickHouse.Protocol }},
	{Key: KeyDeploymentID, Placeholder: "ID", Env: "DEPLOYMENT_ID", Flag: "deployment-id", Kind: KindDeploymentID,
		Help: "Outpost DEPLOYMENT_ID: prefixes every key.", field: func(c *Config) any { return &c.DeploymentID }},
}

// Store is the store a setting configures: "redis" (the redis: section
// and the deployment id, which prefixes Redis keys) or "sql" (the log
// stores), e.g. for help that shows a command the flags of its stores.
func (s Setting) Store() string {
	if sec, _ := s.section(); sec == "redis" || s.Key == KeyDeploymentID {
		return "redis"
	}
	return "sql"
}

// Lookup finds a setting by key.
func Lookup(key string) (Setting, bool) {
	for _, s := range Table {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// EnvNames maps setting names to Outpost's environment variables.
var EnvNames = func() map[string]string {
	m := map[string]string{}
	for _, s := range Table {
		m[s.Key] = s.Env
	}
	return m
}()

// SecretEnvs and SecretFlags name where a secret may be given, so that the
// scrubber can learn it before anything is parsed.
func SecretEnvs() []string { return secretNames(func(s Setting) string { return s.Env }) }

// SecretFlags: see SecretEnvs; the flags with their dashes.
func SecretFlags() []string { return secretNames(func(s Setting) string { return "--" + s.Flag }) }

func secretNames(name func(Setting) string) []string {
	var out []string
	for _, s := range Table {
		if s.Secret {
			out = append(out, name(s))
		}
	}
	return out
}

// Secrets gives the secret values among settings (a file's, say), so that a
// caller can scrub them even when the file is otherwise invalid.
func Secrets(s Settings) []string {
	var out []string
	for _, row := range Table {
		if v, ok := s[row.Key]; ok && row.Secret && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Secrets gives the secret values of the merged configuration.
func (c *Config) Secrets() []string {
	var out []string
	for _, row := range Table {
		if v, ok := row.field(c).(*string); ok && row.Secret && *v != "" {
			out = append(out, *v)
		}
	}
	return out
}

// section splits a key into its YAML section and name ("redis", "host"); a
// top-level key has no section.
func (s Setting) section() (string, string) {
	if i := strings.IndexByte(s.Key, '.'); i >= 0 {
		return s.Key[:i], s.Key[i+1:]
	}
	return "", s.Key
}

// sections lists the YAML mappings the table reads ("clickhouse",
// "redis"), with the names each holds.
func sections() map[string][]string {
	m := map[string][]string{}
	for _, s := range Table {
		if sec, name := s.section(); sec != "" {
			m[sec] = append(m[sec], name)
		}
	}
	for _, names := range m {
		sort.Strings(names)
	}
	return m
}

// describe names a setting with its environment variable and flag, for
// messages: "redis.port (REDIS_PORT / --redis-port)".
func describe(key string) string {
	if s, ok := Lookup(key); ok {
		return fmt.Sprintf("%s (%s / --%s)", key, s.Env, s.Flag)
	}
	return key
}
