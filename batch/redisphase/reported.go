package redisphase

import (
	"context"

	"github.com/outpost-migrate/outpost/batch/lock"
	"github.com/outpost-migrate/outpost/batch/rediserr"
)

// Records the catch-up reported stay as they were: a twin another client
// changed is never overwritten, and a record too big for the server's
// limits is not copied. A rerun's pass counts a record whose twin exists as
// done, so without a memory of them it would record the migrations applied
// with those twins still stale. Each apply therefore keeps the names its
// catch-up reported in a set in the lock's slot (reportedKey), and the next
// apply's catch-up looks at them again: reported again while they still
// differ, settled once someone reconciled them (the twin agrees, or is
// gone and copied again). The catch-up handles at most
// scan.DefaultOthersMax keys per run, which bounds the set.

// reportedKey is the set of names the last apply's catch-up reported,
// among the tool's own keys in the lock's slot.
func (p *Phase) reportedKey() string { return lock.SlotKey(p.lockKey, "reported") }

// readReported returns the names the last apply's catch-up reported.
func (p *Phase) readReported(ctx context.Context) ([]string, error) {
	keys, err := p.c.SMembers(ctx, p.reportedKey()).Result()
	if err != nil {
		return nil, rediserr.Classify(err, "read the records an earlier apply reported ("+p.reportedKey()+")")
	}
	return keys, nil
}

// saveReported replaces the set with keys (none: the set is deleted).
func (p *Phase) saveReported(ctx context.Context, keys []string) error {
	pipe := p.c.TxPipeline()
	pipe.Del(ctx, p.reportedKey())
	for lo := 0; lo < len(keys); lo += 1000 {
		part := keys[lo:min(lo+1000, len(keys))]
		members := make([]any, len(part))
		for i, k := range part {
			members[i] = k
		}
		pipe.SAdd(ctx, p.reportedKey(), members...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return rediserr.Classify(err, "save the records this apply reported ("+p.reportedKey()+")")
	}
	return nil
}
