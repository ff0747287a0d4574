package nomadrun

import (
	"errors"

	"github.com/outpost-migrate/outpost/report"
)

// Command is the command of the runner's own report (kind
// report.KindJobRun, schemas/jobrun.json).
const Command = "jobs nomad run"

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

// marshalOwn finishes rep, the runner's JobRunReport started by Run, for
// err and encodes it as one compact line without a trailing newline. The
// outcome, exit code, rc and failed flag come from report.Finish, so they
// follow the one table of package report; error.details carries the Nomad
// side's reason and IDs, extra.nomad the facts.
func marshalOwn(rep *report.Report, facts *NomadFacts, err error) []byte {
	var e *Error
	if !errors.As(err, &e) {
		e = newError(report.CodeUnknown, ReasonNomadError, err, "%v", err)
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
	if facts != nil {
		rep.Extra = map[string]any{"nomad": facts}
	}
	// Finish reads the code, message and details from a report.Error; the
	// message is the runner's whole error text.
	rep.Finish(&report.Error{Code: e.Code, Message: e.Error(), Details: details}, false)
	// Encoding a Report of plain values cannot fail.
	line, _ := report.Marshal(rep, nil)
	return line
}
