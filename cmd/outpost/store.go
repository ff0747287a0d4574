package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/batch/progress"
	"github.com/outpost-migrate/outpost/report"
)

// storeFlagNames says, per store, which global flags help shows: the
// Redis settings (and the deployment id, the key prefix) for Redis, the
// log store's for SQL.
func storeFlagNames(sc config.Scope) map[string]bool {
	names := map[string]bool{"config": true, "wait-for": true}
	for _, st := range config.Table {
		if strings.HasPrefix(st.Flag, "redis-") || st.Key == config.KeyDeploymentID {
			names[st.Flag] = sc.Redis
		} else {
			names[st.Flag] = sc.SQL
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
	for _, name := range append(config.SecretEnvs(), "NOMAD_TOKEN") {
		if v, ok := e.lookupEnv(name); ok {
			add(v)
		}
	}
	for i, a := range e.args {
		for _, f := range config.SecretFlags() {
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
	flags := inv.c.store.Settings()
	for k, v := range over {
		flags[k] = v
	}
	envPath, _ := inv.e.lookupEnv("CONFIG")
	// OUTPOST_TEST_CONFIG_ROOT moves the absolute search paths (/config/…)
	// for tests; it is not documented for operators.
	root, ok := inv.e.lookupEnv("OUTPOST_TEST_CONFIG_ROOT")
	if !ok {
		root = "/"
	}
	path, err := config.Locate(*inv.c.store.ConfigFile, envPath, inv.e.searchConfig, root)
	if err != nil {
		return nil, err
	}
	if path != "" {
		// Passwords in the file are secrets too, even if the file is invalid.
		if s, _, err := config.ReadFile(path); err == nil {
			for _, v := range config.Secrets(s) {
				inv.scrub.Add(v)
				scrubURL(inv.scrub, v)
			}
		}
	}
	cfg, err := config.Load(flags, config.FromEnv(inv.e.lookupEnv), path)
	if err != nil {
		return nil, err
	}
	for _, v := range cfg.Secrets() {
		inv.scrub.Add(v)
		scrubURL(inv.scrub, v)
	}
	if path != "" {
		progress.Infof(inv.events, "config file: %s", path)
	}
	for _, w := range cfg.Warnings {
		progress.Warnf(inv.events, "%s", w)
	}
	if len(cfg.Ignored) > 0 {
		inv.events.Emit(progress.Event{Level: "debug", Event: progress.Log, Msg: fmt.Sprintf("%s: not read by the migration tool (Outpost's other settings): %s", path, strings.Join(cfg.Ignored, ", "))})
	}
	return cfg, nil
}

func targets(cfg *config.Config, s config.Scope, sql *report.SQLTarget) *report.Targets {
	t := &report.Targets{Scope: s.Names(), DeploymentID: cfg.DeploymentID, SQL: sql, ConfigFile: cfg.File}
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
