package redismigrations

import (
	"github.com/outpost-migrate/outpost/batch/redisphase"
	"github.com/outpost-migrate/outpost/report"
)

// Entity is 003: entity=tenant|destination where missing.
const Entity = "003_entity"

var entity = &transform{
	Migration: redisphase.Migration{Name: Entity, Description: "set entity=tenant|destination where missing on hash-tagged tenant and destination hashes"},
	reads:     []string{"entity"},
	edit: func(k Key, fields map[string]string) ([]fieldEdit, []report.Issue) {
		if _, ok := fields["entity"]; ok {
			return nil, nil
		}
		return []fieldEdit{{field: "entity", value: k.Kind.Entity()}}, nil
	},
	final: func(k Key, fields map[string]string) []report.Issue {
		want := k.Kind.Entity()
		v, ok := fields["entity"]
		switch {
		case !ok:
			return []report.Issue{{Field: "entity", Reason: "entity missing", Expected: want}}
		case v != want:
			return []report.Issue{{Field: "entity", Reason: "wrong entity", Expected: want, Actual: v}}
		}
		return nil
	},
	// The twin may hold the entity of its kind that its legacy record lacks.
	keeps: func(k Key, field, _ string, inLegacy bool, twin string) bool {
		return !inLegacy && field == "entity" && twin == k.Kind.Entity()
	},
}
