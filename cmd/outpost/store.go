package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// storeSetting is one store setting's flag.
type storeSetting struct {
	key, flag, help, placeholder string
	boolean                      bool
}

// storeSettings are the store flags, in the order help shows them. Each
// also reads its environment variable (config.EnvNames) and config file key.
var storeSettings = []storeSetting{
	{key: config.KeyRedisHost, flag: "redis-host", placeholder: "HOST", help: "Redis host; default localhost."},
	{key: config.KeyRedisPort, flag: "redis-port", placeholder: "PORT", help: "Redis port; default 6379."},
	{key: config.KeyRedisUser, flag: "redis-username", placeholder: "USER", help: "Redis ACL user name."},
	{key: config.KeyRedisPass, flag: "redis-password", placeholder: "PASSWORD", help: "Redis password."},
	{key: config.KeyRedisDB, flag: "redis-database", placeholder: "N", help: "Redis database number; default 0 (cluster: only 0)."},
	{key: config.KeyRedisCluster, flag: "redis-cluster", help: "Redis Cluster mode.", boolean: true},
	{key: config.KeyRedisTLS, flag: "redis-tls", help: "Connect to Redis over TLS, verifying its certificate.", boolean: true},
	{key: config.KeyRedisTLSSkip, flag: "redis-tls-insecure-skip-verify", help: "With --redis-tls, do not verify the certificate (explicit opt-out).", boolean: true},
	{key: config.KeyRedisTLSCA, flag: "redis-tls-ca-file", placeholder: "FILE", help: "With --redis-tls, a PEM CA to verify the server with."},
	{key: config.KeyPostgres, flag: "postgres-url", placeholder: "URL", help: "PostgreSQL URL of the log store, e.g. postgres://user:pass@host:5432/db?sslmode=require."},
	{key: config.KeyDeploymentID, flag: "deployment-id", placeholder: "ID", help: "Outpost DEPLOYMENT_ID: prefixes every key."},
}

// secretFlags are the flags whose values are scrubbed from all output.
var secretFlags = []string{"--redis-password", "--postgres-url"}

// storeFlags are the parsed store settings: values and whether the user
// set them (a flag overrides the environment only when given).
type storeFlags struct {
	configFile string
	waitFor    time.Duration
	values     map[string]func() string
	set        map[string]*bool
}

// registerStoreFlags adds the store flags to the application: they are
// global so that `outpost --redis-host h migrate apply` works as well as
// flags after the command; help shows each command the ones of its stores.
func registerStoreFlags(a *kingpin.Application) *storeFlags {
	s := &storeFlags{values: map[string]func() string{}, set: map[string]*bool{}}
	a.Flag("config", "Config file: YAML as Outpost's, or a .env file (env CONFIG).").PlaceHolder("FILE").StringVar(&s.configFile)
	f := a.Flag("wait-for", "Retry an unreachable store this long before giving up with exit 69; e.g. 30s, 2m, or a number of seconds.").Default("0s").PlaceHolder("DURATION")
	f.SetValue(durationValue{&s.waitFor, "wait-for"})
	for _, st := range storeSettings {
		f := a.Flag(st.flag, st.help+" (env "+config.EnvNames[st.key]+")")
		set := new(bool)
		f.IsSetByUser(set)
		if st.boolean {
			b := f.Bool()
			s.values[st.key] = func() string { return fmt.Sprint(*b) }
		} else {
			v := f.PlaceHolder(st.placeholder).String()
			s.values[st.key] = func() string { return *v }
		}
		s.set[st.key] = set
	}
	return s
}

// settings are the store settings given as flags.
func (s *storeFlags) settings() config.Settings {
	out := config.Settings{}
	for k, v := range s.values {
		if *s.set[k] {
			out[k] = v()
		}
	}
	return out
}

// storeFlagNames says, per store, which global flags help shows.
func storeFlagNames(sc config.Scope) map[string]bool {
	names := map[string]bool{"config": true, "wait-for": true, "deployment-id": sc.Redis}
	for _, st := range storeSettings {
		switch {
		case strings.HasPrefix(st.flag, "redis-"):
			names[st.flag] = sc.Redis
		case st.key == config.KeyPostgres:
			names[st.flag] = sc.SQL
		}
	}
	return names
}

// scrubSecretsFromArgsAndEnv registers every password the invocation may
// have been given, before anything is parsed, so that even an error about
// a malformed setting cannot print one.
func scrubSecretsFromArgsAndEnv(s *report.Scrubber, e env) {
	add := func(v string) {
		s.Add(v)
		scrubURL(s, v)
	}
	for _, name := range []string{"REDIS_PASSWORD", "POSTGRES_URL", "NOMAD_TOKEN"} {
		if v, ok := e.lookupEnv(name); ok {
			add(v)
		}
	}
	for i, a := range e.args {
		for _, f := range secretFlags {
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				add(v)
			} else if a == f && i+1 < len(e.args) {
				add(e.args[i+1])
			}
		}
	}
}

func scrubURL(s *report.Scrubber, v string) {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			s.Add(p)
		}
	}
}

// loadConfig merges flags, environment and file; over, what a command
// such as the demo sets itself, wins over all of them.
func (inv *invocation) loadConfig(over config.Settings) (*config.Config, error) {
	flags := inv.c.store.settings()
	for k, v := range over {
		flags[k] = v
	}
	envs := config.FromEnv(inv.e.lookupEnv)
	path := inv.c.store.configFile
	if path == "" {
		path, _ = inv.e.lookupEnv("CONFIG")
	}
	if path == "" && inv.e.readDotenv {
		// Outpost reads ./.env when it exists; so does this tool, below the
		// environment and flags.
		if _, err := os.Stat(".env"); err == nil {
			path = ".env"
		}
	}
	if path != "" {
		// Passwords in the file are secrets too, even if the file is invalid.
		if s, _, err := config.ReadFile(path); err == nil {
			inv.scrub.Add(s[config.KeyRedisPass])
			scrubURL(inv.scrub, s[config.KeyPostgres])
		}
	}
	cfg, err := config.Load(flags, envs, path)
	if err != nil {
		return nil, err
	}
	inv.scrub.Add(cfg.Redis.Password)
	scrubURL(inv.scrub, cfg.PostgresURL)
	for _, w := range cfg.Warnings {
		progress.Warnf(inv.events, "%s", w)
	}
	return cfg, nil
}

func targets(cfg *config.Config, s config.Scope) *report.Targets {
	t := &report.Targets{Scope: s.Names(), DeploymentID: cfg.DeploymentID}
	if s.Redis {
		mode := "standalone"
		if cfg.Redis.Cluster {
			mode = "cluster"
		}
		t.Redis = &report.RedisTarget{Addr: cfg.Redis.Addr(), Mode: mode, Database: cfg.Redis.Database, TLS: cfg.Redis.TLS, Username: cfg.Redis.Username, Prefix: cfg.Prefix()}
	}
	if s.SQL && cfg.PostgresURL != "" {
		if u, err := url.Parse(cfg.PostgresURL); err == nil {
			pt := &report.PostgresTarget{Host: u.Hostname(), Port: u.Port(), Database: strings.TrimPrefix(u.Path, "/"), SSLMode: u.Query().Get("sslmode")}
			if u.User != nil {
				pt.User = u.User.Username()
			}
			t.Postgres = pt
		}
	}
	return t
}
