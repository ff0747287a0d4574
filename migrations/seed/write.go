package seed

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/redis/go-redis/v9"
)

const (
	// pipelineSize is the number of commands sent in one round trip.
	pipelineSize = 1000
	// writeWorkers pipelines are in flight at once: generation, the client
	// and the server overlap, which on 2 cores roughly doubles the rate of
	// one synchronous pipeline.
	writeWorkers = 4
	// unitSize is how many items (tenants or unrelated keys) a worker
	// claims at a time.
	unitSize = 64
)

// Write writes the dataset of opts through client (a *redis.Client or a
// *redis.ClusterClient: a cluster pipeline is split by slot, and every
// command's reply is checked). Hashes are written with one HSET of all
// fields, TTLs with PEXPIRE (SET ... PX for strings).
//
// Write adds to what is there: it expects the dataset's keys to be absent
// (a fresh server or database) and deletes nothing. Tenants are generated
// and written by a few goroutines in parallel, so keys arrive in no
// particular order; the content depends only on opts. On error the
// keyspace holds part of the dataset.
func Write(ctx context.Context, client redis.UniversalClient, opts Options) (Stats, error) {
	c, err := opts.compile()
	if err != nil {
		return Stats{}, err
	}
	total := int64(c.Tenants) + int64(c.UnrelatedKeys)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		next     atomic.Int64
		mu       sync.Mutex
		stats    Stats
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for w := 0; w < writeWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st Stats
			pipe := client.Pipeline()
			for {
				a := next.Add(unitSize) - unitSize
				if a >= total {
					break
				}
				for i := a; i < min(a+unitSize, total); i++ {
					if i < int64(c.Tenants) {
						t := c.tenant(int(i))
						st.addTenant(&t)
						for _, k := range t.Keys() {
							queue(ctx, pipe, k)
						}
					} else {
						k := c.unrelated(int(i - int64(c.Tenants)))
						st.addKey(&k)
						queue(ctx, pipe, &k)
					}
				}
				if pipe.Len() >= pipelineSize {
					n, err := flush(ctx, pipe)
					st.Commands += n
					if err != nil {
						fail(err)
						return
					}
				}
			}
			n, err := flush(ctx, pipe)
			st.Commands += n
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			stats.add(st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Stats{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	return stats, nil
}

// queue adds the commands that create k.
func queue(ctx context.Context, pipe redis.Pipeliner, k *Key) {
	switch k.Type {
	case TypeHash:
		args := make([]any, 0, 2*len(k.Fields))
		for _, f := range k.Fields {
			args = append(args, f.Name, f.Value)
		}
		pipe.HSet(ctx, k.Name, args...)
	case TypeString:
		pipe.Set(ctx, k.Name, k.Value, k.TTL)
		return
	case TypeSet:
		m := make([]any, len(k.Members))
		for i, v := range k.Members {
			m[i] = v
		}
		pipe.SAdd(ctx, k.Name, m...)
	case TypeZSet:
		z := make([]redis.Z, len(k.ZMembers))
		for i, v := range k.ZMembers {
			z[i] = redis.Z{Score: v.Score, Member: v.Member}
		}
		pipe.ZAdd(ctx, k.Name, z...)
	}
	if k.TTL > 0 {
		pipe.PExpire(ctx, k.Name, k.TTL)
	}
}

// flush sends the queued commands and checks every reply (Exec reports only
// the first error, and a cluster pipeline runs per node).
func flush(ctx context.Context, pipe redis.Pipeliner) (int, error) {
	if pipe.Len() == 0 {
		return 0, nil
	}
	cmds, _ := pipe.Exec(ctx)
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return len(cmds), classifyRedis(err, "seed: %s", cmdString(cmd))
		}
	}
	return len(cmds), nil
}

// cmdString names a command and its key, never its values (credentials).
func cmdString(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) >= 2 {
		return fmt.Sprintf("%v %q", args[0], fmt.Sprint(args[1]))
	}
	return cmd.Name()
}

// classifyRedis gives a Redis error its report code, as rediserr decides
// for every package.
func classifyRedis(err error, format string, args ...any) error {
	return rediserr.Wrapf(err, format, args...)
}
