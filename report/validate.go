package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/outpost-migrate/outpost/schemas"
)

var (
	compileOnce sync.Once
	compiled    map[string]*jsonschema.Schema
	compileErr  error
)

// Compiler returns a compiler loaded with every published schema under its
// $id, so that nothing is ever fetched from the network.
func Compiler() (*jsonschema.Compiler, error) {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.AssertFormat = true
	c.LoadURL = func(u string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("schema %s is not embedded; refusing to fetch", u)
	}
	for _, name := range schemas.Names() {
		b, _ := schemas.Get(name)
		if err := c.AddResource(schemas.ID(name), bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
	}
	return c, nil
}

// Schema returns the compiled schema called name ("apply", "progress", ...).
func Schema(name string) (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		c, err := Compiler()
		if err != nil {
			compileErr = err
			return
		}
		compiled = map[string]*jsonschema.Schema{}
		for _, n := range schemas.Names() {
			s, err := c.Compile(schemas.ID(n))
			if err != nil {
				compileErr = fmt.Errorf("compile schema %s: %w", n, err)
				return
			}
			compiled[n] = s
		}
	})
	if compileErr != nil {
		return nil, compileErr
	}
	s, ok := compiled[name]
	if !ok {
		return nil, fmt.Errorf("no schema called %q", name)
	}
	return s, nil
}

// ValidateJSON checks one JSON report (as printed) against the schema of its
// kind.
func ValidateJSON(doc []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("report is not JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("report is not a JSON object")
	}
	kind, _ := obj["kind"].(string)
	if kind == "" {
		return fmt.Errorf("report has no kind")
	}
	return validateAs(schemas.ForKind(kind), v)
}

// ValidateEvent checks one progress/log event line.
func ValidateEvent(line []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("event is not JSON: %w", err)
	}
	return validateAs("progress", v)
}

func validateAs(name string, v any) error {
	s, err := Schema(name)
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s schema: %w", name, err)
	}
	return nil
}

// Validate checks a report value by encoding it as it would be printed.
func Validate(r *Report) error {
	b, err := Marshal(r, nil)
	if err != nil {
		return err
	}
	return ValidateJSON(b)
}
