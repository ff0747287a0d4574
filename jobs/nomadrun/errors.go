package nomadrun

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/outpost-migrate/outpost/report"
)

// Reasons, in the report's error.details.reason.
const (
	ReasonSpecInvalid      = "spec_invalid"       // 78: the job file does not decode or breaks the rules
	ReasonUsage            = "usage"              // 64: bad --meta for the job
	ReasonNomadConfig      = "nomad_config"       // 78: bad address or TLS files
	ReasonUnreachable      = "nomad_unreachable"  // 69: no connection to Nomad
	ReasonUnavailable      = "nomad_unavailable"  // 69: Nomad answered 5xx (no leader, ...)
	ReasonACLDenied        = "acl_denied"         // 77: 401/403 from Nomad
	ReasonJobRejected      = "job_rejected"       // 78: Nomad refused the job (400)
	ReasonNotFound         = "not_found"          // 1: the job or allocation vanished (purged, GC)
	ReasonNomadError       = "nomad_error"        // 1: any other answer
	ReasonAllocLost        = "allocation_lost"    // 75: the node went away
	ReasonTaskNotRun       = "task_not_run"       // 1: no Terminated event (driver, setup, template failure)
	ReasonNoAllocation     = "no_allocation"      // 1: the job died without an allocation of this run
	ReasonNoReport         = "task_no_report"     // 1 (70 if the task exited 0): stdout had no report
	ReasonReportInvalid    = "report_invalid"     // 70: the report failed validation
	ReasonLogsUnreadable   = "logs_unreadable"    // as classified: the task's stdout could not be read
	ReasonTimeout          = "timeout"            // 75: --timeout reached; the job is left running
	ReasonInterrupted      = "interrupted"        // 130/143: the runner was stopped; the job is left running
	ReasonJobStopped       = "job_stopped"        // 1: someone stopped the job before it ran
	ReasonSupersededByJob  = "job_superseded"     // 1: the job was registered again by someone else
	ReasonAllocUnsupported = "allocation_unknown" // 1: an allocation status the runner does not know
)

// Error is a failure of the runner itself (as opposed to a task that ran and
// reported a failure, which is relayed). Run returns it after printing the
// runner's own JobRunReport for it.
//
// Its Code is one of package report's closed list (so callers switch on one
// vocabulary) and decides the exit code through report.ExitCode; Reason says
// what happened on the Nomad side.
type Error struct {
	Code     report.Code
	Reason   string // one of the Reason* constants
	Message  string
	ExitCode int
	Err      error
}

func (e *Error) Error() string {
	if e.Err != nil && !strings.Contains(e.Message, e.Err.Error()) {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether a rerun may succeed unchanged.
func (e *Error) Retryable() bool { return report.Retryable(e.Code) }

func newError(code report.Code, reason string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...), ExitCode: report.ExitCode(code), Err: err}
}

// classify turns an error of the Nomad client into a runner Error; doing says
// what was being done ("register job x").
func classify(err error, doing string) *Error {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) && ure.HasStatusCode() {
		sc := ure.StatusCode()
		body := strings.TrimSpace(ure.Body())
		switch {
		case sc == http.StatusForbidden || sc == http.StatusUnauthorized || strings.Contains(body, api.PermissionDeniedErrorContent):
			return newError(report.CodePermission, ReasonACLDenied, nil,
				"%s: Nomad denied the request (%d %s); the token in NOMAD_TOKEN needs a policy that allows it", doing, sc, body)
		case sc == http.StatusBadRequest:
			return newError(report.CodeConfig, ReasonJobRejected, nil, "%s: Nomad rejected the request (400): %s", doing, body)
		case sc == http.StatusNotFound:
			return newError(report.CodeUnknown, ReasonNotFound, nil, "%s: Nomad answered 404: %s", doing, body)
		case sc >= 500:
			return newError(report.CodeUnreachable, ReasonUnavailable, nil, "%s: Nomad is unavailable (%d): %s", doing, sc, body)
		default:
			return newError(report.CodeUnknown, ReasonNomadError, nil, "%s: Nomad answered %d: %s", doing, sc, body)
		}
	}
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		recordErr  tls.RecordHeaderError
		netErr     net.Error
		certInvErr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certInvErr):
		return newError(report.CodeConfig, ReasonNomadConfig, err,
			"%s: TLS verification of Nomad failed; check NOMAD_CACERT and NOMAD_TLS_SERVER_NAME", doing)
	case errors.As(err, &recordErr):
		return newError(report.CodeConfig, ReasonNomadConfig, err, "%s: Nomad does not speak TLS on that address (http vs https?)", doing)
	case errors.As(err, &netErr):
		return newError(report.CodeUnreachable, ReasonUnreachable, err, "%s: cannot reach Nomad", doing)
	}
	return newError(report.CodeUnknown, ReasonNomadError, err, "%s", doing)
}
