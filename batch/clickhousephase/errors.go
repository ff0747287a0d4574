package clickhousephase

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

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outpost-migrate/outpost/report"
)

// Server error codes (ClickHouse's src/Common/ErrorCodes.cpp) by the report
// code their class deserves.
var exceptionCodes = map[int32]report.Code{
	// AUTHENTICATION_FAILED, UNKNOWN_USER, REQUIRED_PASSWORD,
	// WRONG_PASSWORD, IP_ADDRESS_NOT_ALLOWED, ACCESS_DENIED, READONLY,
	// NOT_ENOUGH_PRIVILEGES
	516: report.CodePermission, 192: report.CodePermission, 194: report.CodePermission,
	193: report.CodePermission, 195: report.CodePermission, 497: report.CodePermission,
	164: report.CodePermission, 291: report.CodePermission,
	// UNKNOWN_DATABASE
	81: report.CodeConfig,
	// TIMEOUT_EXCEEDED, TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION,
	// SOCKET_TIMEOUT, NETWORK_ERROR, MEMORY_LIMIT_EXCEEDED,
	// TABLE_IS_READ_ONLY, DEADLOCK_AVOIDED, KEEPER_EXCEPTION,
	// TOO_MANY_PARTS, ALL_CONNECTION_TRIES_FAILED
	159: report.CodeTemporary, 202: report.CodeTemporary, 203: report.CodeTemporary,
	209: report.CodeTemporary, 210: report.CodeTemporary, 241: report.CodeTemporary,
	242: report.CodeTemporary, 473: report.CodeTemporary, 999: report.CodeTemporary,
	252: report.CodeTemporary, 279: report.CodeTemporary,
}

// classify wraps err with what was being done and the report code its class
// deserves; fallback is the code of an error of no known class (a
// statement's SQL error inside a migration: report.CodeMigrationFailed).
// Context cancellation is returned wrapped, unclassified, so that the runner
// sees an interruption or a deadline.
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
		return fmt.Errorf("%s: %w", msg, err)
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if code, ok := exceptionCodes[ex.Code]; ok {
			return report.Wrap(code, err, "%s", msg)
		}
		return report.Wrap(fallback, err, "%s", msg)
	}
	var httpErr *clickhouse.HTTPError
	if errors.As(err, &httpErr) {
		switch {
		case httpErr.StatusCode == 401 || httpErr.StatusCode == 403:
			return report.Wrap(report.CodePermission, err, "%s", msg)
		case httpErr.StatusCode == 502 || httpErr.StatusCode == 503 || httpErr.StatusCode == 504:
			return report.Wrap(report.CodeUnreachable, err, "%s", msg)
		}
		return report.Wrap(fallback, err, "%s", msg)
	}
	if tlsMismatch(err) {
		return report.Wrap(report.CodeConfig, err, "%s (check CLICKHOUSE_TLS_ENABLED and the server's certificate)", msg).(*report.Error).With("setting", "clickhouse.tls_enabled")
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &netErr) || errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, clickhouse.ErrAcquireConnTimeout) || errors.Is(err, clickhouse.ErrConnectionClosed) {
		return report.Wrap(report.CodeUnreachable, err, "%s", msg)
	}
	return report.Wrap(fallback, err, "%s", msg)
}

// tlsMismatch says whether a connection failed on TLS itself: TLS to a
// plaintext server, plaintext to a TLS server, or a certificate that does
// not verify. Retrying cannot help; the setting must change.
func tlsMismatch(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &recErr) {
		return true
	}
	m := err.Error()
	return strings.Contains(m, "x509:") || strings.Contains(m, "server gave HTTP response to HTTPS client") ||
		strings.Contains(m, "first record does not look like a TLS handshake") || strings.Contains(m, "malformed HTTP response")
}
