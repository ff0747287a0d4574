package redismigrations_test

import "time"

func msDuration(ms float64) time.Duration { return time.Duration(ms) * time.Millisecond }
