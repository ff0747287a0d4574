package sqlphase

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/report"
)

// classify wraps err with what was being done and the report code its
// class deserves; fallback is the code of an error of no known class (for
// example report.CodeMigrationFailed for SQL that failed inside a
// migration). Context cancellation is not classified: it is returned
// wrapped, so that the runner sees context.Canceled (interrupted) or
// context.DeadlineExceeded (timed out). A nil err gives nil.
func classify(ctx context.Context, err error, fallback report.Code, format string, args ...any) error {
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
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "42501":
			// invalid_password, invalid_authorization_specification,
			// insufficient_privilege
			return report.Wrap(report.CodePermission, err, "%s", msg)
		case "3D000", "3F000":
			// invalid_catalog_name (no such database), invalid_schema_name
			return report.Wrap(report.CodeConfig, err, "%s", msg)
		case "57P01", "57P02", "57P03", "53300":
			// admin_shutdown, crash_shutdown, cannot_connect_now,
			// too_many_connections: the server is there but not serving.
			return report.Wrap(report.CodeUnreachable, err, "%s", msg)
		case "55P03", "57014":
			// lock_not_available, query_canceled (statement or lock
			// timeout): worth a retry.
			return report.Wrap(report.CodeTemporary, err, "%s", msg)
		}
		if len(pgErr.Code) == 2+3 && pgErr.Code[:2] == "08" {
			return report.Wrap(report.CodeUnreachable, err, "%s", msg)
		}
		return report.Wrap(fallback, err, "%s", msg)
	}
	if isTLSMismatch(err) {
		// sslmode asks for TLS the server does not offer, or a certificate
		// that does not verify: retrying cannot help, the URL must change.
		return report.Wrap(report.CodeConfig, err, "%s (check sslmode and the server's TLS setup)", msg).(*report.Error).With("setting", "postgres")
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return report.Wrap(report.CodeUnreachable, err, "%s", msg)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return report.Wrap(report.CodeUnreachable, err, "%s", msg)
	}
	return report.Wrap(fallback, err, "%s", msg)
}

// failedVersion adds the version of the migration that failed to a
// classified error's details, for the report's error object.
func failedVersion(err error, version int, step string) error {
	var e *report.Error
	if errors.As(err, &e) {
		e.With("version", version)
		if step != "" {
			e.With("step", step)
		}
	}
	return err
}

// isTLSMismatch says whether a connection failed on TLS itself: the server
// refused TLS (sslmode=require against a server without ssl), or its
// certificate did not verify (verify-ca, verify-full).
func isTLSMismatch(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "server refused TLS connection") || strings.Contains(msg, "x509:")
}
