package report

import (
	"context"
	"errors"
	"fmt"
)

// Error is an error that knows its Code. Wrap lower-level errors in one with
// E or Wrap at the place where the class of failure is known; callers above
// add context with fmt.Errorf("...: %w", err) and the code survives.
type Error struct {
	Code    Code
	Message string
	// Details are extra facts for the report's error object (the lock holder,
	// the setting that is wrong, ...). They must never hold secrets.
	Details map[string]any
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Message != "" {
		return e.Message + ": " + e.Err.Error()
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// E makes an Error with a formatted message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap classifies err under code, with a message saying what was being done.
// A nil err gives nil.
func Wrap(code Code, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// With adds a detail and returns e, for chaining.
func (e *Error) With(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// CodeOf finds the outermost Code in err's chain. Context cancellation that
// nobody classified is reported as a timeout; anything else unclassified is
// CodeUnknown.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeTimeout
	}
	return CodeUnknown
}

// DetailsOf collects the details of every Error in err's chain, outer first
// winning.
func DetailsOf(err error) map[string]any {
	out := map[string]any{}
	for err != nil {
		if e, ok := err.(*Error); ok {
			for k, v := range e.Details {
				if _, seen := out[k]; !seen {
					out[k] = v
				}
			}
		}
		err = errors.Unwrap(err)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
