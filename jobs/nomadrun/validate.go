package nomadrun

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// basicValidate is the check used when Options.Validate is nil: one JSON
// object with api_version and a numeric exit_code.
func basicValidate(line []byte) error {
	var doc map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("report is not a JSON object: %w", err)
	}
	if dec.More() {
		return errors.New("report has data after the JSON object")
	}
	var v string
	if err := json.Unmarshal(doc["api_version"], &v); err != nil || v == "" {
		return errors.New("report has no api_version")
	}
	if _, ok := reportExitCode(line); !ok {
		return errors.New("report has no numeric exit_code")
	}
	return nil
}

// reportExitCode reads the exit_code field of a report line.
func reportExitCode(line []byte) (int, bool) {
	var doc struct {
		ExitCode *int `json:"exit_code"`
	}
	if err := json.Unmarshal(line, &doc); err != nil || doc.ExitCode == nil {
		return 0, false
	}
	return *doc.ExitCode, true
}
