package scan_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outpost-migrate/outpost/batch/scan"
	"github.com/outpost-migrate/outpost/batch/servertest"
)

// Redis 6 has no CLUSTER SHARDS: the topology is read with CLUSTER NODES,
// proven here by a user the server refuses CLUSTER SHARDS.
func TestTopologyWithoutClusterShards(t *testing.T) {
	cl := servertest.RedisCluster(t, servertest.WithACLUser("nosh", "pw", "~*", "&*", "+@all", "-cluster|shards"))
	cc := cl.Client(t)
	ctx := context.Background()
	err := cc.ClusterShards(ctx).Err()
	require.Error(t, err)
	require.Contains(t, err.Error(), "NOPERM", "the user must not be able to run CLUSTER SHARDS")

	topo, err := scan.Topology(ctx, cc)
	require.NoError(t, err)
	require.True(t, topo.Settled, topo.Why)
	require.Len(t, strings.Split(topo.Fingerprint, ";"), 3, topo.Fingerprint)

	want := fill(t, cc, "tenant:", 3_000)
	rec := newRecorder()
	ex := &scan.Executor{Client: cc, Spec: scan.Spec{Match: "tenant:*", Count: 500}, Store: &scan.Store{Client: cc, LockKey: lockKey},
		Name: "apply", Fingerprint: "m", RunID: "r-1"}
	res, err := ex.Pass(ctx, rec.step)
	require.NoError(t, err)
	require.True(t, res.Complete)
	require.False(t, res.TopologyChanged, res.TopologyWhy)
	require.Equal(t, sorted(want), rec.keys())
}

// A slot in flight (MIGRATING/IMPORTING, as redis-cli --cluster reshard
// leaves it while it moves keys one by one) makes the topology unsettled,
// and a pass that saw it reports TopologyChanged; a slot that changed owner
// changes the fingerprint.
func TestTopologySlotInFlightAndMoved(t *testing.T) {
	cl := servertest.RedisCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	fill(t, cc, "tenant:", 500)
	t0, err := scan.Topology(ctx, cc)
	require.NoError(t, err)
	require.True(t, t0.Settled, t0.Why)

	slot := int64(100)
	var owner, other *redis.Client
	var otherID, ownerID string
	for i := range cl.Nodes {
		c := cl.Nodes[i].Client(t)
		id, err := c.Do(ctx, "CLUSTER", "MYID").Text()
		require.NoError(t, err)
		nodes, err := c.Do(ctx, "CLUSTER", "NODES").Text()
		require.NoError(t, err)
		mine := false
		for _, l := range strings.Split(nodes, "\n") {
			if strings.Contains(l, "myself") && strings.Contains(l, " 0-") {
				mine = true
			}
		}
		if mine {
			owner, ownerID = c, id
		} else if other == nil {
			other, otherID = c, id
		}
	}
	require.NotNil(t, owner)
	require.NoError(t, other.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ownerID).Err())
	require.NoError(t, owner.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", otherID).Err())
	t1, err := scan.Topology(ctx, cc)
	require.NoError(t, err)
	require.False(t, t1.Settled)
	require.Contains(t, t1.Why, "in flight")

	rec := newRecorder()
	ex := &scan.Executor{Client: cc, Spec: scan.Spec{Match: "tenant:*", Count: 100}}
	res, err := ex.Pass(ctx, rec.step)
	require.NoError(t, err)
	require.True(t, res.TopologyChanged, "a pass over a slot in flight may miss keys")

	// Finish the move: the slot has a new owner (and a new epoch).
	keys, err := owner.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, 1000).StringSlice()
	require.NoError(t, err)
	for _, k := range keys {
		require.NoError(t, owner.Migrate(ctx, other.Options().Addr[:strings.LastIndex(other.Options().Addr, ":")],
			other.Options().Addr[strings.LastIndex(other.Options().Addr, ":")+1:], k, 0, 5e9).Err())
	}
	for i := range cl.Nodes {
		require.NoError(t, cl.Nodes[i].Client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", otherID).Err())
	}
	t2, err := scan.Topology(ctx, cc)
	require.NoError(t, err)
	require.True(t, t2.Settled, t2.Why)
	require.NotEqual(t, t0.Fingerprint, t2.Fingerprint)
}
