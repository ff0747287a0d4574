-- 000005_denormalize_attempts: every delivery carries its event's tenant_id,
-- topic, time, eligible_for_retry, data and metadata; deliveries becomes
-- attempts; event_delivery_index and events.time_id go; new indexes.
--
-- Run as one file (golang-migrate, psql) this is one transaction. The
-- migration tool runs it in three parts, split at the "-- +outpost" markers:
-- "add_columns" and "finish" each in one transaction, and "backfill" in
-- bounded batches in physical (ctid) order, each in its own short
-- transaction with a checkpoint, by the Go step registered under that name
-- (its SQL below is the single-statement equivalent). schema_migrations says version
-- 5 dirty from the end of add_columns to the end of finish.

-- +outpost step add_columns
ALTER TABLE deliveries
  ADD COLUMN tenant_id text,
  ADD COLUMN topic text,
  ADD COLUMN event_time timestamptz,
  ADD COLUMN eligible_for_retry boolean,
  ADD COLUMN event_data jsonb,
  ADD COLUMN event_metadata jsonb;

-- Built before the backfill so that each batch finds its events by id
-- through an index instead of scanning the events table.
CREATE INDEX idx_events_id ON events (id);

-- +outpost batched backfill
UPDATE deliveries AS d
SET tenant_id          = e.tenant_id,
    topic              = e.topic,
    event_time         = e.time,
    eligible_for_retry = e.eligible_for_retry,
    event_data         = e.data,
    event_metadata     = e.metadata
FROM events AS e
WHERE e.id = d.event_id;

-- A delivery whose event is gone cannot be denormalized: drop it.
DELETE FROM deliveries AS d
WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.id = d.event_id);

-- +outpost step finish
-- Writers wait from here to the commit (readers do not): a delivery
-- inserted between the catch-up and the DELETE below would be deleted.
LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE;

-- Catch up rows the backfill did not reach (written behind its position or
-- past its end while it ran; none when the file runs as one transaction),
-- so SET NOT NULL cannot fail.
UPDATE deliveries AS d
SET tenant_id          = e.tenant_id,
    topic              = e.topic,
    event_time         = e.time,
    eligible_for_retry = e.eligible_for_retry,
    event_data         = e.data,
    event_metadata     = e.metadata
FROM events AS e
WHERE d.tenant_id IS NULL AND e.id = d.event_id;

DELETE FROM deliveries WHERE tenant_id IS NULL;

ALTER TABLE deliveries
  ALTER COLUMN tenant_id SET NOT NULL,
  ALTER COLUMN topic SET NOT NULL,
  ALTER COLUMN event_time SET NOT NULL,
  ALTER COLUMN eligible_for_retry SET NOT NULL,
  ALTER COLUMN event_data SET NOT NULL,
  ALTER COLUMN event_metadata SET NOT NULL;

-- PostgreSQL keeps index and constraint names on a rename: the primary keys
-- stay deliveries_pkey and deliveries_default_pkey (000010 renames them).
ALTER TABLE deliveries RENAME TO attempts;
ALTER TABLE deliveries_default RENAME TO attempts_default;
ALTER TABLE attempts RENAME COLUMN attempt TO attempt_number;

DROP TABLE event_delivery_index;

-- Dropping time_id drops events_tenant_id_time_id_idx with it; it must be
-- gone before idx_events_tenant_time is created, whose partition index
-- takes the same name (events_default_tenant_id_time_id_idx).
ALTER TABLE events DROP COLUMN time_id;

DROP INDEX IF EXISTS events_tenant_id_time_id_idx;
DROP INDEX IF EXISTS events_tenant_id_destination_id_idx;
DROP INDEX IF EXISTS deliveries_event_id_idx;
DROP INDEX IF EXISTS deliveries_event_id_status_idx;

CREATE INDEX idx_events_tenant_time ON events (tenant_id, time DESC, id DESC);
CREATE INDEX idx_events_tenant_topic_time ON events (tenant_id, topic, time DESC, id DESC);

CREATE INDEX idx_attempts_tenant_time ON attempts (tenant_id, time DESC, id DESC);
CREATE INDEX idx_attempts_tenant_dest_time ON attempts (tenant_id, destination_id, time DESC, id DESC);
CREATE INDEX idx_attempts_tenant_status_time ON attempts (tenant_id, status, time DESC, id DESC);
CREATE INDEX idx_attempts_tenant_topic_time ON attempts (tenant_id, topic, time DESC, id DESC);
CREATE INDEX idx_attempts_event_time ON attempts (event_id, time DESC, id DESC);
CREATE INDEX idx_attempts_id ON attempts (id);
