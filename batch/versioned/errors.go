package versioned

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/outpost-migrate/outpost/report"
)

// Classifier gives a store driver's errors their report codes. The order is
// the same for every store: context first, then what is already
// classified, the server's own errors, TLS, the network, the fallback.
type Classifier struct {
	// Server returns the code of an error the server sent (a SQLSTATE, an
	// exception code, an HTTP status): ok false when err is none of them.
	// fallback is the classify call's, for server errors of no known class.
	Server func(err error, fallback report.Code) (code report.Code, ok bool)
	// Unreachable reports the driver's own errors that mean the connection
	// failed or broke, besides the net and io errors every driver shares.
	Unreachable func(err error) bool
	// TLSHint follows the message of a TLS mismatch: what to check.
	TLSHint string
	// Setting is the setting a TLS mismatch is about (the error's
	// "setting" detail).
	Setting string
}

// Classify wraps err with what was being done (format, args) and the
// report code its class deserves; fallback is the code of an error of no
// known class (report.CodeMigrationFailed for SQL that failed inside a
// migration). Context cancellation is not classified: it is returned
// wrapped, so that the runner sees context.Canceled (interrupted) or
// context.DeadlineExceeded (timed out). A nil err gives nil.
func (c Classifier) Classify(ctx context.Context, err error, fallback report.Code, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", msg, ctx.Err())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	if report.CodeOf(err) != report.CodeUnknown {
		// Already classified (a lost lease from the fence, ...).
		return fmt.Errorf("%s: %w", msg, err)
	}
	if code, ok := c.Server(err, fallback); ok {
		return report.Wrap(code, err, "%s", msg)
	}
	if tlsMismatch(err) {
		// Retrying cannot help: the setting must change.
		return report.Wrap(report.CodeConfig, err, "%s (%s)", msg, c.TLSHint).(*report.Error).With("setting", c.Setting)
	}
	if netFailure(err) || c.Unreachable(err) {
		return report.Wrap(report.CodeUnreachable, err, "%s", msg)
	}
	return report.Wrap(fallback, err, "%s", msg)
}

// netFailure says whether err is a failed or broken connection as the net
// and io packages report it.
func netFailure(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &netErr) || errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// tlsMismatch says whether a connection failed on TLS itself: TLS to a
// plaintext server (which refuses it, or answers in plaintext), plaintext
// to a TLS server, or a certificate that does not verify.
func tlsMismatch(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &recErr) {
		return true
	}
	m := err.Error()
	for _, s := range []string{"x509:", "server refused TLS connection", "server gave HTTP response to HTTPS client",
		"first record does not look like a TLS handshake", "malformed HTTP response"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}
