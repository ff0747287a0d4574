package redismigrations

import "github.com/outpost-migrate/outpost/batch/redisphase"

// HashTags is 001: the copy of every legacy key to its hash-tagged name.
// Its work is the key rename and the TTL (copy.go, rdb.go); it edits no
// field, so it has no edit of its own: the field transforms of the pass
// are composed over each copy on the way (see compose).
const HashTags = "001_hash_tags"

var hashTags = &transform{Migration: redisphase.Migration{
	Name:        HashTags,
	Description: "copy every legacy tenant:* key to its hash-tagged name (cluster-safe), keeping fields byte for byte and TTLs; legacy keys are kept",
	NotApplicable: func(prefix string) string {
		if prefix != "" {
			return "DEPLOYMENT_ID is set: prefixed deployments always used hash-tagged keys"
		}
		return ""
	},
	Copies: true,
}}
