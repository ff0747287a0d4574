package redismigrations

import (
	"fmt"
	"strconv"
	"time"

	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/report"
)

// Timestamps is 002: RFC3339 created_at/updated_at to Unix milliseconds.
const Timestamps = "002_timestamps"

var timestamps = &transform{
	Migration: redisphase.Migration{Name: Timestamps, Description: "turn RFC3339 created_at/updated_at into Unix milliseconds on hash-tagged tenant and destination hashes"},
	reads:     TimestampFields,
	// Values that cannot be converted are kept as they are and reported.
	edit: func(_ Key, fields map[string]string) (es []fieldEdit, bad []report.Issue) {
		for _, f := range TimestampFields {
			v, ok := fields[f]
			if !ok {
				continue
			}
			ms, changed, err := ToUnixMilli(v)
			switch {
			case err != nil:
				bad = append(bad, report.Issue{Field: f, Reason: "cannot convert: neither Unix milliseconds nor an RFC3339 time", Actual: shown(f, v)})
			case changed:
				es = append(es, fieldEdit{field: f, value: ms})
			}
		}
		return es, bad
	},
	final: func(_ Key, fields map[string]string) (out []report.Issue) {
		for _, f := range TimestampFields {
			v, ok := fields[f]
			if !ok {
				continue
			}
			if _, changed, err := ToUnixMilli(v); err != nil || changed {
				out = append(out, report.Issue{Field: f, Reason: "not Unix milliseconds", Actual: shown(f, v)})
			}
		}
		return out
	},
	// The twin may hold the same instant in Unix milliseconds.
	keeps: func(k Key, field, legacy string, inLegacy bool, twin string) bool {
		return inLegacy && k.Kind != KindSummary && has(TimestampFields, field) && SameInstant(legacy, twin)
	},
}

// TimestampFields are the fields migration 002 converts. disabled_at and
// deleted_at are left as they are: Outpost's server converts them lazily.
var TimestampFields = []string{"created_at", "updated_at"}

// ToUnixMilli converts one timestamp value to Unix milliseconds. A value
// that is already an integer is returned unchanged with changed=false (a
// reader treats any integer as milliseconds). RFC3339 and RFC3339Nano values
// are converted, truncating (not rounding) below the millisecond; anything
// else is an error.
func ToUnixMilli(v string) (out string, changed bool, err error) {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return v, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return "", false, fmt.Errorf("%q is neither Unix milliseconds nor an RFC3339 time", v)
	}
	return strconv.FormatInt(floorMilli(t), 10), true, nil
}

// floorMilli is UnixMilli rounded toward minus infinity: time.UnixMilli
// already floors because the nanosecond part is never negative.
func floorMilli(t time.Time) int64 { return t.UnixMilli() }

// SameInstant says whether two timestamp values (each RFC3339 or Unix ms)
// name the same millisecond.
func SameInstant(a, b string) bool {
	am, _, errA := ToUnixMilli(a)
	bm, _, errB := ToUnixMilli(b)
	return errA == nil && errB == nil && am == bm
}
