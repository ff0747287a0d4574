package servertest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const clusterReadyTimeout = 30 * time.Second

// Cluster is a Redis Cluster of three masters without replicas, owned by
// one test.
type Cluster struct {
	Addrs []string // host:port of the three masters
	Host  string   // 127.0.0.1
	Ports []int
	Nodes []*RedisServer // the masters, e.g. to Stop or Restart one

	Username string // credentials as for RedisServer
	Password string
}

// RedisCluster starts three redis-server processes with cluster mode on,
// joins them with `redis-cli --cluster create ... --cluster-replicas 0
// --cluster-yes`, and waits until every node reports cluster_state:ok with
// all 16384 slots covered. All nodes are stopped at cleanup.
//
// Options: WithPassword, WithACLUser, WithPersistence and WithConfig are
// honoured; WithTLS is not supported for clusters.
func RedisCluster(t testing.TB, opts ...RedisOption) *Cluster {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tls {
		t.Fatalf("servertest: RedisCluster does not support WithTLS")
	}
	cfg.cluster = true
	cli, err := FindBinary("redis-cli")
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Start the three nodes in parallel: most of the start is waiting.
	nodes := make([]*RedisServer, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = newRedisServer(t, cfg)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
	c := &Cluster{Host: "127.0.0.1", Nodes: nodes, Username: nodes[0].Username, Password: nodes[0].Password}
	for _, n := range nodes {
		c.Addrs = append(c.Addrs, n.Addr)
		c.Ports = append(c.Ports, n.Port)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if cfg.password != "" {
		// redis-cli talks to every node as the default user.
		args = append(args, "-a", cfg.password, "--no-auth-warning")
	}
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("servertest: redis-cli --cluster create failed: %v\n%s\n%s", err, out.String(), c.logTails())
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("servertest: cluster not ready: %v\nredis-cli output:\n%s\n%s", err, out.String(), c.logTails())
	}
	return c
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "--- %s log (%s):\n%s\n", n.Addr, n.LogFile, logTail(n.LogFile, 15))
	}
	return b.String()
}

// waitReady polls CLUSTER INFO on every node until the cluster is ok and
// each node knows the owner of all slots and all three nodes.
func (c *Cluster) waitReady(ctx context.Context) error {
	var last string
	for _, n := range c.Nodes {
		cl := redis.NewClient(n.Options())
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if err != nil {
				last = err.Error()
			} else {
				last = info
			}
			select {
			case <-ctx.Done():
				cl.Close()
				return fmt.Errorf("node %s: %v; last CLUSTER INFO: %s", n.Addr, ctx.Err(), last)
			case <-time.After(20 * time.Millisecond):
			}
		}
		cl.Close()
	}
	return nil
}

// Options returns go-redis cluster options for the cluster.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:    append([]string(nil), c.Addrs...),
		Username: c.Username,
		Password: c.Password,
	}
}

// Client returns a go-redis cluster client, closed at cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cl := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}
