package nomadrun

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Kind and Command of the runner's own report.
const (
	Kind       = "JobRunReport"
	Command    = "jobs nomad run"
	APIVersion = "outpost.migrate/v1"
)

// ownReport is the JobRunReport envelope (schemas/jobrun.json). The runner
// prints it only when it cannot relay the task's report.
type ownReport struct {
	APIVersion string    `json:"api_version"`
	Kind       string    `json:"kind"`
	Command    string    `json:"command"`
	Outcome    string    `json:"outcome"`
	ExitCode   int       `json:"exit_code"`
	RC         int       `json:"rc"`
	Changed    bool      `json:"changed"`
	Failed     bool      `json:"failed"`
	Msg        string    `json:"msg"`
	RunID      string    `json:"run_id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	DurationMS int64     `json:"duration_ms"`
	Tool       toolDoc   `json:"tool"`
	Extra      *extraDoc `json:"extra,omitempty"`
	Error      *errorDoc `json:"error"`
}

type toolDoc struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type extraDoc struct {
	Nomad *NomadFacts `json:"nomad"`
}

type errorDoc struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Retryable bool           `json:"retryable"`
	Details   map[string]any `json:"details,omitempty"`
}

// NomadFacts is what the runner learnt about the job, in the report's
// extra.nomad and in Result.
type NomadFacts struct {
	Addr              string   `json:"addr,omitempty"`
	Namespace         string   `json:"namespace,omitempty"`
	Region            string   `json:"region,omitempty"`
	JobID             string   `json:"job_id,omitempty"`
	DispatchedJobID   string   `json:"dispatched_job_id,omitempty"`
	EvalID            string   `json:"eval_id,omitempty"`
	JobStatus         string   `json:"job_status,omitempty"`
	AllocID           string   `json:"alloc_id,omitempty"`
	NodeID            string   `json:"node_id,omitempty"`
	NodeName          string   `json:"node_name,omitempty"`
	TaskGroup         string   `json:"task_group,omitempty"`
	Task              string   `json:"task,omitempty"`
	ClientStatus      string   `json:"client_status,omitempty"`
	ClientDescription string   `json:"client_description,omitempty"`
	TaskState         string   `json:"task_state,omitempty"`
	TaskExitCode      *int     `json:"task_exit_code,omitempty"`
	TaskSignal        *int     `json:"task_signal,omitempty"`
	OOMKilled         bool     `json:"oom_killed,omitempty"`
	Events            []string `json:"events,omitempty"`
}

// maxEvents caps the task events copied into a report.
const maxEvents = 10

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "r-" + hex.EncodeToString(b[:])
}

// marshalOwn builds the runner's report for err, one compact line without a
// trailing newline.
func marshalOwn(runID, version string, started, finished time.Time, facts *NomadFacts, err error) []byte {
	var e *Error
	if !errors.As(err, &e) {
		e = newError(CodeUnknown, ReasonNomadError, err, "%v", err)
	}
	details := map[string]any{"reason": e.Reason}
	if facts != nil && facts.JobID != "" {
		details["job_id"] = facts.JobID
	}
	if facts != nil && facts.DispatchedJobID != "" {
		details["dispatched_job_id"] = facts.DispatchedJobID
	}
	if facts != nil && facts.AllocID != "" {
		details["alloc_id"] = facts.AllocID
	}
	msg := e.Error()
	r := ownReport{
		APIVersion: APIVersion,
		Kind:       Kind,
		Command:    Command,
		Outcome:    outcomes[e.Code],
		ExitCode:   e.ExitCode,
		RC:         e.ExitCode,
		Failed:     e.ExitCode != 0 && e.ExitCode != 2,
		Msg:        msg,
		RunID:      runID,
		StartedAt:  started.UTC(),
		FinishedAt: finished.UTC(),
		DurationMS: finished.Sub(started).Milliseconds(),
		Tool:       toolDoc{Name: "outpost", Version: version},
		Error:      &errorDoc{Code: e.Code, Message: msg, Retryable: e.Retryable(), Details: details},
	}
	if r.Outcome == "" {
		r.Outcome = "failed"
	}
	if facts != nil {
		r.Extra = &extraDoc{Nomad: facts}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(r)
	return bytes.TrimRight(buf.Bytes(), "\n")
}
