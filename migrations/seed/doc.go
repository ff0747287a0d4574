// Package seed generates realistic, deterministic Outpost data for tests,
// demos and benchmarks of the migrations, and computes what that data must
// look like once migrated, independently of the migration code.
//
// # Redis
//
// The model is a pure function of Options: tenant i and unrelated key i are
// each drawn from their own PCG stream seeded from (Seed, i), so any record
// can be generated alone, datasets are streamed (ForEachTenant, ForEachKey:
// memory does not grow with the keyspace; 5M keys never sit in memory) and
// the output is byte-identical across runs, machines and Go versions (only
// PCG's raw output is used; every derived draw is computed here). The values
// drawn do not depend on Layout or DeploymentID, so the v0, v1 and v3
// renderings of one seed hold the same records.
//
// Per tenant (Options.Tenants of them):
//   - the tenant hash: id, created_at, on 40% updated_at, on 30% metadata
//     (JSON); or, soft-deleted (SoftDeletedRatio), only deleted_at with the
//     remainder of a 7-day TTL (between 1 h and 7 days);
//   - 0..2×DestinationsPerTenant destinations (uniform): id, type (mostly
//     webhook; aws_sqs, rabbitmq, hookdeck, aws_kinesis, azure_servicebus,
//     gcp_pubsub), topics ("*" on 30%, else 1-3 comma-joined), config (JSON
//     object of strings), credentials, created_at, on 50% updated_at,
//     disabled_at on DisabledRatio, delivery_metadata on 30%, metadata on 30%,
//     filter (JSON) on 25%; soft-deleted ones (SoftDeletedRatio, and every
//     destination of a soft-deleted tenant) hold only deleted_at with a TTL;
//   - the summary hash, one field per listed destination holding
//     {"id","type","topics":[...],"filter" (when set),"disabled"}: soft-deleted
//     destinations and MissingFromSummaryRatio of the live ones are not
//     listed; a tenant listing nothing has no summary key.
//
// Ids: ColonIDRatio of tenant ids and of destination ids contain ':'
// ("org:x:1", "dest:3:abc"); no id contains '{', '}' or "destination", so
// v0 names parse unambiguously and v1 hash tags are the whole tenant id.
// With BinaryCredentials, credentials and delivery_metadata are random bytes
// shaped like AES-256-GCM output, each with a 0x00 and never valid UTF-8.
//
// Timestamps of layouts 0 and 1 are RFC3339 in a mix of the UTC offsets of
// Options.Zones (DefaultZones when empty) and of five precisions: 9
// fractional digits, RFC3339Nano with trailing zeros trimmed, milliseconds,
// microseconds and whole seconds. Layouts 2 and 3 store created_at and
// updated_at as Unix milliseconds (computed from the instant, not by
// parsing); disabled_at and deleted_at stay RFC3339 in every layout, as the
// migrations leave them. Layout 3 adds entity=tenant|destination.
// The model's clock is fixed (2025-09-01T00:00:00Z).
//
// Key names follow the storage spec: layout 0 tenant:<tid>,
// tenant:<tid>:destinations, tenant:<tid>:destination:<did>, never prefixed
// (a DeploymentID with layout 0 is a report.CodeConfig error); layouts 1-3
// P+tenant:{<tid>}:tenant and so on, P being "<DeploymentID>:" or "".
//
// UnrelatedKeys keys that a migration must leave alone: P+outpost:installation_id,
// P+outpost:log_retention_ttl, P+tenant_idx (a string or hash stand-in for
// the search index), outpost:lock (string, TTL), then in turn
// P+idempotency:* strings with a TTL, P+alert:* sets (half with a TTL),
// P+rsmq:*:Q hashes and P+rsmq:* sorted sets.
//
// DefaultOptions: 1000 tenants, 3 destinations per tenant on average, seed 1,
// layout 0, 5% soft-deleted, 5% ids with ':', 3% missing from the summary,
// 10% disabled, binary credentials, 100 unrelated keys.
//
// Write puts a dataset into Redis (standalone or cluster) with pipelines of
// about 1000 commands from a few goroutines. Expect and ExpectAfterCleanup
// list every key the keyspace must hold after migrations 001-003 (and after
// cleanup); Check compares a live keyspace, every master of a cluster, with
// them. Count gives a dataset's Stats without writing it.
//
// # PostgreSQL
//
// WritePostgres fills events, deliveries and (from schema version 3)
// event_delivery_index with COPY, streaming, deterministically from
// PGOptions.Seed, including orphan deliveries whose event does not exist.
//
// # Concurrency
//
// Every function is safe for concurrent use; Write uses several connections
// of the client's pool at once.
package seed
