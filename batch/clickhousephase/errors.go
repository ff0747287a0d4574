package clickhousephase

import (
	"errors"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outpost-migrate/outpost/batch/versioned"
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
// deserves (see versioned.Classifier.Classify); fallback is the code of an
// error of no known class (a statement's SQL error inside a migration:
// report.CodeMigrationFailed).
var classify = versioned.Classifier{
	Server: serverCode,
	Unreachable: func(err error) bool {
		return errors.Is(err, clickhouse.ErrAcquireConnTimeout) || errors.Is(err, clickhouse.ErrConnectionClosed)
	},
	TLSHint: "check CLICKHOUSE_TLS_ENABLED and the server's certificate",
	Setting: "clickhouse.tls_enabled",
}.Classify

// serverCode classifies an exception of the native protocol or an HTTP
// status of the HTTP interface.
func serverCode(err error, fallback report.Code) (report.Code, bool) {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		if code, ok := exceptionCodes[ex.Code]; ok {
			return code, true
		}
		return fallback, true
	}
	var httpErr *clickhouse.HTTPError
	if errors.As(err, &httpErr) {
		switch httpErr.StatusCode {
		case 401, 403:
			return report.CodePermission, true
		case 502, 503, 504:
			return report.CodeUnreachable, true
		}
		return fallback, true
	}
	return "", false
}
