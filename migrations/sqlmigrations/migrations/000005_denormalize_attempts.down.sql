-- Restores the version-4 schema. The data it dropped (orphaned deliveries,
-- event_delivery_index rows) does not come back.
DROP INDEX IF EXISTS idx_attempts_id;
DROP INDEX IF EXISTS idx_attempts_event_time;
DROP INDEX IF EXISTS idx_attempts_tenant_topic_time;
DROP INDEX IF EXISTS idx_attempts_tenant_status_time;
DROP INDEX IF EXISTS idx_attempts_tenant_dest_time;
DROP INDEX IF EXISTS idx_attempts_tenant_time;
DROP INDEX IF EXISTS idx_events_tenant_topic_time;
DROP INDEX IF EXISTS idx_events_tenant_time;
DROP INDEX IF EXISTS idx_events_id;

ALTER TABLE attempts RENAME COLUMN attempt_number TO attempt;
ALTER TABLE attempts_default RENAME TO deliveries_default;
ALTER TABLE attempts RENAME TO deliveries;
ALTER TABLE deliveries
  DROP COLUMN tenant_id,
  DROP COLUMN topic,
  DROP COLUMN event_time,
  DROP COLUMN eligible_for_retry,
  DROP COLUMN event_data,
  DROP COLUMN event_metadata;

ALTER TABLE events ADD COLUMN time_id text GENERATED ALWAYS AS (
  lpad(CAST(EXTRACT(EPOCH FROM time AT TIME ZONE 'UTC') AS bigint)::text, 10, '0') || '_' || id
) STORED;

CREATE INDEX events_tenant_id_time_id_idx ON events (tenant_id, time_id DESC);
CREATE INDEX events_tenant_id_destination_id_idx ON events (tenant_id, destination_id);
CREATE INDEX deliveries_event_id_idx ON deliveries (event_id);
CREATE INDEX deliveries_event_id_status_idx ON deliveries (event_id, status);

CREATE TABLE event_delivery_index (
  event_id         text        NOT NULL,
  delivery_id      text        NOT NULL,
  tenant_id        text        NOT NULL,
  destination_id   text        NOT NULL,
  event_time       timestamptz NOT NULL,
  delivery_time    timestamptz NOT NULL,
  topic            text        NOT NULL,
  status           text        NOT NULL,
  time_event_id    text GENERATED ALWAYS AS (
    lpad(CAST(EXTRACT(EPOCH FROM event_time AT TIME ZONE 'UTC') AS bigint)::text, 10, '0') || '_' || event_id
  ) STORED,
  time_delivery_id text GENERATED ALWAYS AS (
    lpad(CAST(EXTRACT(EPOCH FROM delivery_time AT TIME ZONE 'UTC') AS bigint)::text, 10, '0') || '_' || delivery_id
  ) STORED,
  manual           boolean     NOT NULL DEFAULT false,
  attempt          integer     NOT NULL DEFAULT 0,
  PRIMARY KEY (delivery_time, event_id, delivery_id)
) PARTITION BY RANGE (delivery_time);

CREATE TABLE event_delivery_index_default PARTITION OF event_delivery_index DEFAULT;

CREATE INDEX idx_event_delivery_index_main ON event_delivery_index (
  tenant_id, destination_id, topic, status,
  event_time DESC, delivery_time DESC,
  time_event_id, time_delivery_id
);
