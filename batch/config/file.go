package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/joho/godotenv"
	"gopkg.in/yaml.v3"

	"github.com/outpost-migrate/outpost/report"
)

// ReadFile reads a YAML config file, or a .env file when the name says so
// (".env", "x.env", ".env.production"). It returns the settings of Table it
// finds and the top-level keys of a YAML file it ignores.
func ReadFile(path string) (Settings, []string, error) {
	if err := checkConfigFileSize(path); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, report.Wrap(report.CodeConfig, err, "cannot read config file %s", path).(*report.Error).With("setting", "config").With("source", "--config/CONFIG")
	}
	// Outpost reads a name ending in .env (any case) as a .env file.
	base := strings.ToLower(filepath.Base(path))
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
	for _, row := range Table {
		if v, ok := m[row.Env]; ok {
			s[row.Key] = v
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

// readYAML reads the settings of Table from a file in Outpost's shape.
// The sections the table reads (redis:, clickhouse:) are strict: a typo
// there is an error listing the names that exist, not a silent default.
// Every other top-level key is Outpost's business and is only returned as
// ignored.
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
	s := Settings{}
	var ignored []string
	secs := sections()
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], deref(doc.Content[i+1])
		if _, ok := Lookup(k.Value); ok {
			if err := setScalar(path, s, k.Value, v); err != nil {
				return nil, nil, err
			}
			continue
		}
		names, ok := secs[k.Value]
		if !ok {
			ignored = append(ignored, k.Value)
			continue
		}
		if err := readSection(path, s, k.Value, names, v); err != nil {
			return nil, nil, err
		}
	}
	return s, ignored, nil
}

// readSection reads one strict section (redis:) into s.
func readSection(path string, s Settings, sec string, names []string, n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return report.E(report.CodeConfig, "config file %s: line %d: %s must be a mapping", path, n.Line, sec).With("setting", sec)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		key := sec + "." + k.Value
		if _, ok := Lookup(key); !ok {
			return report.E(report.CodeConfig, "config file %s: line %d: unknown setting %s (the settings under %s: are %s)", path, k.Line, key, sec, strings.Join(names, ", ")).With("setting", key)
		}
		if err := setScalar(path, s, key, deref(n.Content[i+1])); err != nil {
			return err
		}
	}
	return nil
}

// setScalar keeps a scalar's text (Load parses it, so that a wrong type is
// reported with the setting's name); null sets nothing.
func setScalar(path string, s Settings, key string, n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return report.E(report.CodeConfig, "config file %s: line %d: %s: expected a single value, got a %s", path, n.Line, key, kindName(n.Kind)).With("setting", key)
	}
	s[key] = n.Value
	return nil
}

// deref follows a YAML alias (*name) to its anchor.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}
