package scan

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/outpost-migrate/outpost/batch/rediserr"
	"github.com/outpost-migrate/outpost/report"
)

// Writer writes keys in the lock's hash slot only while the lease holds
// (lock.Lease). It is what fences checkpoints.
type Writer interface {
	HSet(ctx context.Context, key string, values map[string]string) error
	Del(ctx context.Context, keys ...string) error
}

// Store keeps checkpoints in Redis, in hashes whose hash tag is the lock
// key's full name ("{" + lockKey + "}:checkpoint:" + name), so that one
// script can check the lease and write the checkpoint atomically, also on a
// cluster. A hash holds a "meta" field and one "node:<id>" field per master.
type Store struct {
	Client  redis.UniversalClient
	LockKey string
	// Writer fences writes; nil writes directly (tests, runs without a
	// lease).
	Writer Writer
}

// Meta describes the pass a checkpoint belongs to.
type Meta struct {
	Fingerprint string `json:"fingerprint"`
	Topology    string `json:"topology"`
	RunID       string `json:"run_id"`
	ResumedBy   string `json:"resumed_by,omitempty"`
	StartedAt   string `json:"started_at"`
	UpdatedAt   string `json:"updated_at"`
}

// SavedNode is one master's position.
type SavedNode struct {
	Node        string                   `json:"node"`
	Addr        string                   `json:"addr"`
	ServerRunID string                   `json:"server_run_id"`
	Cursor      string                   `json:"cursor"`
	Done        bool                     `json:"done"`
	Scanned     int64                    `json:"scanned"`
	Counts      map[string]report.Counts `json:"counts"`
	RunID       string                   `json:"run_id"`
	UpdatedAt   string                   `json:"updated_at"`
}

// Saved is a whole checkpoint.
type Saved struct {
	Meta  Meta
	Nodes map[string]SavedNode
}

// node is the saved position of node id; false when there is none (or no
// checkpoint at all).
func (s *Saved) node(id string) (SavedNode, bool) {
	if s == nil {
		return SavedNode{}, false
	}
	n, ok := s.Nodes[id]
	return n, ok
}

// Key is the Redis key of checkpoint name.
func (s *Store) Key(name string) string { return "{" + s.LockKey + "}:checkpoint:" + name }

// Load reads checkpoint name; nil when there is none.
func (s *Store) Load(ctx context.Context, name string) (*Saved, error) {
	m, err := s.Client.HGetAll(ctx, s.Key(name)).Result()
	if err != nil {
		return nil, rediserr.Classify(err, "read checkpoint "+name)
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := &Saved{Nodes: map[string]SavedNode{}}
	for f, v := range m {
		switch {
		case f == "meta":
			if err := json.Unmarshal([]byte(v), &out.Meta); err != nil {
				return nil, report.Wrap(report.CodeDataRefused, err, "checkpoint %s: bad meta", name)
			}
		case strings.HasPrefix(f, "node:"):
			var n SavedNode
			if err := json.Unmarshal([]byte(v), &n); err != nil {
				return nil, report.Wrap(report.CodeDataRefused, err, "checkpoint %s: bad node entry", name)
			}
			out.Nodes[n.Node] = n
		}
	}
	return out, nil
}

// SaveMeta writes the meta field.
func (s *Store) SaveMeta(ctx context.Context, name string, m Meta) error {
	b, _ := json.Marshal(m)
	return s.hset(ctx, name, map[string]string{"meta": string(b)})
}

// SaveNode writes one node's position.
func (s *Store) SaveNode(ctx context.Context, name string, n SavedNode) error {
	b, _ := json.Marshal(n)
	return s.hset(ctx, name, map[string]string{"node:" + n.Node: string(b)})
}

// Clear deletes checkpoint name.
func (s *Store) Clear(ctx context.Context, name string) error {
	if s.Writer != nil {
		return s.Writer.Del(ctx, s.Key(name))
	}
	return rediserr.Classify(s.Client.Del(ctx, s.Key(name)).Err(), "clear checkpoint "+name)
}

func (s *Store) hset(ctx context.Context, name string, v map[string]string) error {
	if s.Writer != nil {
		return s.Writer.HSet(ctx, s.Key(name), v)
	}
	return rediserr.Classify(s.Client.HSet(ctx, s.Key(name), v).Err(), "save checkpoint "+name)
}
