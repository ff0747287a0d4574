package redismigrations

import (
	"fmt"
	"strconv"
	"time"
)

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
