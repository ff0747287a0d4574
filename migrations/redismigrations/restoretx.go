package redismigrations

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/batch/scan"
)

// txRetries bounds how often a chunk's transaction is sent again after
// the lock key was touched while the lock still holds this run's value
// (the lease's own renewal touches it).
const txRetries = 5

// restoreTx is restore for a fenced pass on a standalone server: the
// chunk's RESTOREs go in one MULTI/EXEC under WATCH of the lock, after
// reading that the lock holds this run's value. EXEC runs them only if the
// lock was neither changed nor expired in between, so no twin is written
// once the lease is gone, exactly as the fenced scripts; without a script,
// the server spends on each twin only its RESTORE (a script per batch
// spent a third more), and the watch of others' writes sees the writes as
// the writer's own. ok is false when the server refused the transaction
// as a whole (EXECABORT: a command rejected when queued, such as OOM) or
// the lock key kept being touched: the caller then writes the chunk with
// the scripts, which report per twin.
func (s *Set) restoreTx(ctx context.Context, ws []twinWrite, payloads [][]byte) (errs []error, ok bool, err error) {
	deadline, value, lockKey := s.fenceArgs(ctx)
	c := s.writer(ctx, ws[0].name)
	for attempt := 0; attempt < txRetries; attempt++ {
		if err := scan.CheckFence(ctx); err != nil {
			return nil, false, err
		}
		var cmds []goredis.Cmder
		err := c.Watch(ctx, func(tx *goredis.Tx) error {
			v, err := tx.Get(ctx, lockKey).Result()
			if err != nil && err != goredis.Nil {
				return err
			}
			if v != value {
				return errLockLost
			}
			cmds, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				for i, w := range ws {
					ttl, abs := w.expiry.restoreArgs()
					if abs {
						p.Do(ctx, "restore", w.name, ttl, payloads[i], "absttl")
					} else {
						p.Do(ctx, "restore", w.name, ttl, payloads[i])
					}
				}
				return nil
			})
			return err
		}, lockKey)
		switch {
		case errors.Is(err, goredis.TxFailedErr):
			continue // the lock key was touched: read it again
		case err == errLockLost:
			return nil, false, lockLostError(deadline, lockKey)
		case err != nil && goredis.HasErrorPrefix(err, "EXECABORT"):
			return nil, false, nil
		case err != nil && len(cmds) != len(ws):
			return nil, false, rediserr.Classify(err, "RESTORE in a transaction")
		}
		errs = make([]error, len(ws))
		for i, cmd := range cmds {
			errs[i] = cmd.Err()
		}
		return errs, true, nil
	}
	// Touched again and again while still this run's: the scripts, which
	// check the lock's value and the lease's deadline, take over.
	return nil, false, nil
}

// writer is the connection that writes key on a standalone server: the
// watched writer while the watch holds, else the run's client.
func (s *Set) writer(ctx context.Context, key string) *goredis.Client {
	if w := s.others.Writer(ctx, key); w != nil {
		return w
	}
	return s.c.(*goredis.Client)
}
