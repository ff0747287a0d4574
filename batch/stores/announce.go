package stores

import (
	"context"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/config"
	"github.com/outpost-migrate/outpost/report"
)

// unreachableNodes explains a cluster that answers at the configured
// address but whose nodes announce addresses this machine cannot dial (a
// cluster in Docker, behind a tunnel): a report.CodeUnreachable error that
// names them and Outpost's dev_cluster_host_override. It returns nil when
// that is not the case (then the original error stands).
func unreachableNodes(ctx context.Context, c config.Redis, cause error) error {
	if !c.Cluster || c.HostOverride {
		return nil
	}
	tlsConf, err := RedisTLS(c)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*probeTimeout)
	defer cancel()
	seed := redis.NewClient(&redis.Options{Addr: c.Addr(), Username: c.Username, Password: c.Password, TLSConfig: tlsConf,
		DialTimeout: probeTimeout, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer seed.Close()
	slots, err := seed.ClusterSlots(ctx).Result()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var bad []string
	for _, s := range slots {
		for _, n := range s.Nodes {
			if seen[n.Addr] {
				continue
			}
			seen[n.Addr] = true
			conn, err := (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", n.Addr)
			if err != nil {
				bad = append(bad, n.Addr)
				continue
			}
			_ = conn.Close()
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return report.Wrap(report.CodeUnreachable, cause, "redis: the cluster at %s announces its nodes as %s, which cannot be reached from here; if they are behind Docker or a tunnel, set REDIS_DEV_CLUSTER_HOST_OVERRIDE=true (--redis-dev-cluster-host-override, redis.dev_cluster_host_override) to reach every node through %s, as Outpost does (development only)",
		c.Addr(), strings.Join(bad, ", "), c.Host).(*report.Error).With("setting", config.KeyRedisHostOverride)
}
