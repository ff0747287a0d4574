package scan

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// Topo is a cluster's layout as the masters themselves state it.
type Topo struct {
	// Fingerprint lists each master's id, config epoch and slots (its own
	// view); "" on a standalone server. Two equal fingerprints of settled
	// topologies mean no key changed node in between: moving a slot bumps
	// the config epoch of the node that takes it, so even a slot moved
	// away and back changes the fingerprint.
	Fingerprint string
	// Settled is false while keys may be moving: a slot is migrating or
	// importing (keys travel one by one while the owner stays the same,
	// so a SCAN can miss one that moved from a node not yet scanned to a
	// node already scanned), a master reports itself as a replica (a
	// failover), or the nodes disagree on who owns which slots.
	Settled bool
	// Why says what is unsettled, for logs.
	Why string
}

// Topology reads the cluster's layout with CLUSTER NODES on every master,
// which Redis 3 to 7 all answer (CLUSTER SHARDS is Redis 7 only, and a
// node's migrating and importing slots appear only in its own CLUSTER
// NODES line). A standalone server is always settled.
func Topology(ctx context.Context, c redis.UniversalClient) (Topo, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return Topo{Settled: true}, nil
	}
	var mu sync.Mutex
	var own []nodeLine
	views := map[string]string{} // master addr -> its view of every master's slots
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		out, err := m.Do(ctx, "CLUSTER", "NODES").Text()
		if err != nil {
			return err
		}
		self, view := parseClusterNodes(out)
		mu.Lock()
		defer mu.Unlock()
		if self != nil {
			own = append(own, *self)
		}
		views[m.Options().Addr] = view
		return nil
	})
	if err != nil {
		return Topo{}, rediserr.Classify(err, "CLUSTER NODES")
	}
	return topoOf(own, views), nil
}

// topoOf combines the masters' own lines and full views.
func topoOf(own []nodeLine, views map[string]string) Topo {
	sort.Slice(own, func(i, j int) bool { return own[i].id < own[j].id })
	var fp, ownView, why []string
	for _, n := range own {
		fp = append(fp, fmt.Sprintf("%s@%s=%s", n.id, n.epoch, n.slots))
		if n.slots != "" {
			ownView = append(ownView, n.id+"="+n.slots)
		}
		if !n.master {
			why = append(why, n.id+" is no longer a master")
		}
		if n.moving != "" {
			why = append(why, n.id+" has slots in flight "+n.moving)
		}
	}
	want := strings.Join(ownView, ";")
	addrs := make([]string, 0, len(views))
	for a := range views {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		if views[a] != want {
			why = append(why, "the node at "+a+" sees another slot map")
			break
		}
	}
	return Topo{Fingerprint: strings.Join(fp, ";"), Settled: len(why) == 0, Why: strings.Join(why, "; ")}
}

// nodeLine is a node's own line of CLUSTER NODES.
type nodeLine struct {
	id, epoch string
	master    bool
	slots     string // sorted ranges, "a-b,c"
	moving    string // "[slot->-id]" / "[slot-<-id]" entries
}

// parseClusterNodes returns the "myself" line of a CLUSTER NODES reply and
// the map of masters to their slots that the node sees ("id=ranges;..."
// sorted, masters without slots left out).
func parseClusterNodes(out string) (*nodeLine, string) {
	var self *nodeLine
	var view []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := nodeLine{id: f[0], epoch: f[6]}
		flags := "," + f[2] + ","
		n.master = strings.Contains(flags, ",master,")
		var slots, moving []string
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				moving = append(moving, s)
			} else {
				slots = append(slots, s)
			}
		}
		sort.Strings(slots)
		sort.Strings(moving)
		n.slots = strings.Join(slots, ",")
		n.moving = strings.Join(moving, ",")
		if strings.Contains(flags, ",myself,") {
			self = &n
		}
		if n.master && n.slots != "" && !strings.Contains(flags, ",fail,") {
			view = append(view, n.id+"="+n.slots)
		}
	}
	sort.Strings(view)
	return self, strings.Join(view, ";")
}

// Node is one master.
type Node struct {
	// ID is the cluster node id (CLUSTER MYID), or "standalone".
	ID   string
	Addr string
	// RunID is the server process's run_id (INFO server): a cursor saved
	// against another run_id is useless.
	RunID  string
	client *redis.Client
}

// Nodes lists the masters of c with their ids and run_ids.
func Nodes(ctx context.Context, c redis.UniversalClient) ([]Node, error) {
	var clients []*redis.Client
	switch cc := c.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu.Lock()
			clients = append(clients, m)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, rediserr.Classify(err, "list cluster masters")
		}
	case *redis.Client:
		clients = []*redis.Client{cc}
	default:
		return nil, report.E(report.CodeInternal, "scan: unsupported client type %T", c)
	}
	nodes := make([]Node, 0, len(clients))
	for _, m := range clients {
		n := Node{ID: "standalone", Addr: m.Options().Addr, client: m}
		if _, ok := c.(*redis.ClusterClient); ok {
			id, err := m.Do(ctx, "CLUSTER", "MYID").Text()
			if err != nil {
				return nil, rediserr.Classify(err, "CLUSTER MYID on "+n.Addr)
			}
			n.ID = id
		}
		info, err := m.Info(ctx, "server").Result()
		switch {
		case err == nil:
			n.RunID = infoField(info, "run_id")
		case strings.Contains(err.Error(), "not supported") || strings.Contains(err.Error(), "unknown command"):
			// A server that hides its run_id (an in-process stand-in, a
			// proxy): cursors saved against it are never resumed.
		default:
			return nil, rediserr.Classify(err, "INFO server on "+n.Addr)
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
