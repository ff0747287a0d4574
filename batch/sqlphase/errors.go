package sqlphase

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/batch/versioned"
	"github.com/outpost-migrate/outpost/report"
)

// classify wraps err with what was being done and the report code its
// class deserves (see versioned.Classifier.Classify); fallback is the code
// of an error of no known class (for example report.CodeMigrationFailed
// for SQL that failed inside a migration).
var classify = versioned.Classifier{
	Server: serverCode,
	Unreachable: func(err error) bool {
		var connErr *pgconn.ConnectError
		return errors.As(err, &connErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err)
	},
	TLSHint: "check sslmode and the server's TLS setup",
	Setting: "postgres",
}.Classify

// serverCode classifies an error PostgreSQL sent by its SQLSTATE.
func serverCode(err error, fallback report.Code) (report.Code, bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return "", false
	}
	switch pgErr.Code {
	case "28P01", "28000", "42501":
		// invalid_password, invalid_authorization_specification,
		// insufficient_privilege
		return report.CodePermission, true
	case "3D000", "3F000":
		// invalid_catalog_name (no such database), invalid_schema_name
		return report.CodeConfig, true
	case "57P01", "57P02", "57P03", "53300":
		// admin_shutdown, crash_shutdown, cannot_connect_now,
		// too_many_connections: the server is there but not serving.
		return report.CodeUnreachable, true
	case "55P03", "57014":
		// lock_not_available, query_canceled (statement or lock
		// timeout): worth a retry.
		return report.CodeTemporary, true
	}
	if len(pgErr.Code) == 2+3 && pgErr.Code[:2] == "08" {
		// connection_exception and its subclasses
		return report.CodeUnreachable, true
	}
	return fallback, true
}
