// Package lock is the migration lock: one migration at a time across every
// instance of this tool and of Outpost itself.
//
// # The lease
//
// The lock is the Redis string P+".outpost:migration_lock" (Key), the very key
// Outpost's own migrator takes with SET NX EX 3600 and a random token, so the
// two exclude each other. Acquire takes it with SET NX and a one-hour TTL (the
// bound on how long a crashed holder blocks everyone). The value is JSON that
// names the holder (run id, host, pid, command, start time, tool version, and
// the Nomad allocation or Kubernetes pod when the environment says so) and
// carries a fencing token: a counter, kept in the lock's hash slot under
// SlotKey(key, "fence"), that one Lua script increments atomically with the
// SET NX, so every acquisition gets a larger token than the one before.
//
// While the run lives a goroutine extends the TTL every TTL/3 with a
// compare-and-extend script. When the value is gone or is no longer ours, the
// lease is lost: Lost() is closed, Err() is a report.CodeLockLost error and
// every fenced write fails from then on. A Redis error during renewal is
// retried until the TTL would have run out; only then is the lease given up,
// because by then Redis has expired the key.
//
// # Fenced writes
//
// Progress (checkpoints, run records) is written only through the lease:
// HSet and Del run one Lua script that compares the lock value and writes, so
// a run that lost its lease cannot move a checkpoint even by a moment. The
// keys they write must live in the lock's hash slot (make them with SlotKey):
// a script's keys must share one slot on Redis Cluster. Check is the cheap
// form (the local lost flag plus a GET compare) for writes that cannot be
// fenced by a script (PostgreSQL), and Lease implements batch.Fence.
//
// # Hash slots
//
// SlotKey(lockKey, s) is "{" + lockKey + "}:" + s. The lock key has no braces,
// so Redis hashes all of it; the companion's hash tag is the same text, so the
// two share a slot on a cluster (the tests check this with CLUSTER KEYSLOT).
// Should a DEPLOYMENT_ID contain braces, SlotKey keeps whatever slot the lock
// key already has, and Acquire refuses a key for which no companion can share
// the slot (report.CodeConfig).
//
// # --lock-timeout: DefaultWait is 30 seconds
//
// A busy lock is worth a short wait, not an immediate failure and not a long
// one. The common collision is benign and brief: two deploys, two Nomad
// allocations or several Kubernetes init containers start "apply" together;
// the first applies (usually seconds), the others should wait, find nothing
// pending and exit 0 rather than 75. Orchestrators make that matter: Nomad
// batch jobs ship with no restarts, so waiting must happen inside the tool.
// A long default would be wrong the other way: a lock left by a crashed run
// lasts up to an hour, and a person at a terminal (or a CI step) should learn
// who holds it within seconds, not sit silently; they see lock_waiting events
// while it waits, and LOCK_HELD names the holder when it gives up. Callers
// that know better (Ansible retrying on rc 75, a long migration queued
// behind another) pass their own --lock-timeout; 0 fails at once.
//
// # Concurrency
//
// Acquire, Inspect and ForceUnlock are safe for concurrent use. A Lease's
// methods are safe for concurrent use; its renewal goroutine runs until
// Release or until the lease is lost, independently of the context given to
// Acquire (that context bounds only the acquisition and its wait).
package lock
