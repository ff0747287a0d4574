package redisphase

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
)

// CleanupScope says what cleanup would remove, for the question asked
// before it: the migration whose preserved keys it removes and how many
// keys that migration recorded as copied (0 when it recorded none). It
// reads one hash and changes nothing.
func (p *Phase) CleanupScope(ctx context.Context) (migration string, copied int64, err error) {
	_, requires := p.set.Cleanup()
	if len(requires) == 0 {
		return "", 0, nil
	}
	v, err := p.c.HGet(ctx, p.StateKey(requires[0]), "changed").Result()
	if err != nil && err != redis.Nil {
		return "", 0, rediserr.Classify(err, "read migration state "+requires[0])
	}
	copied, _ = strconv.ParseInt(v, 10, 64)
	return "redis/" + requires[0], copied, nil
}
