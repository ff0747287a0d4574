// Package rediserr classifies errors from Redis into report codes, in one
// place, so that every package turns "connection refused" into 69 and
// "NOPERM" into 77 the same way.
package rediserr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/report"
)

// Classify wraps err with the code its class deserves and says what was
// being done. nil stays nil; an error that already carries a code keeps it.
func Classify(err error, doing string) error {
	if err == nil {
		return nil
	}
	var re *report.Error
	if errors.As(err, &re) {
		return err
	}
	return report.Wrap(Code(err), err, "redis: %s", doing)
}

// Resharding says whether err is one a cluster answers while slots move
// between nodes (a redirect go-redis gave up following, a multi-key command
// over a slot in flight, a slot without an owner): the run is to be
// repeated once the cluster settles, it is no fault of the data.
func Resharding(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, ": "+p) {
			return true
		}
	}
	return false
}

// Wrapf is Classify for callers that word their own context and let their
// caller's cancellation decide: a context error and a reply nothing is known
// about (WRONGTYPE, a script error) are wrapped without a code, so an outer
// layer that knows more (a timeout it set, an interrupt) can classify them.
func Wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	code := Code(err)
	if code == report.CodeUnknown {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return report.Wrap(code, err, "%s", msg)
}

// Code returns the class of a Redis error.
func Code(err error) report.Code {
	if errors.Is(err, context.Canceled) {
		return report.CodeInterrupted
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return report.CodeTimeout
	}
	msg := err.Error()
	// Redis 7.0 words an ACL refusal inside a script "ERR The user executing
	// the script can't run this command" (or "... access ... the keys").
	for _, p := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "invalid username-password", "-NOPERM", "ERR AUTH", "user executing the script can't"} {
		if strings.Contains(msg, p) {
			return report.CodePermission
		}
	}
	if errors.Is(err, redis.ErrClosed) {
		return report.CodeUnreachable
	}
	if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "certificate") {
		// A TLS handshake failure is a configuration problem, not an outage:
		// retrying will not help.
		return report.CodeConfig
	}
	if strings.HasPrefix(msg, "OOM ") {
		// maxmemory reached under noeviction: a rerun meets the same
		// wall until someone raises maxmemory or frees memory.
		return report.CodeMemory
	}
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "MOVED ", "ASK "} {
		if strings.HasPrefix(msg, p) {
			return report.CodeTemporary
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(msg, "connection refused") || strings.Contains(msg, "i/o timeout") ||
		strings.Contains(msg, "no such host") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "use of closed network connection") || strings.Contains(msg, "redis: client is closed") {
		return report.CodeUnreachable
	}
	return report.CodeUnknown
}
