-- 000001_init: the event log. Both tables are range-partitioned on time with
-- a DEFAULT partition; indexes are created without names so PostgreSQL names
-- them (events_tenant_id_time_id_idx, ...), as Outpost's schema has them.
CREATE TABLE events (
  id                 text        NOT NULL,
  tenant_id          text        NOT NULL,
  destination_id     text        NOT NULL,
  time               timestamptz NOT NULL,
  topic              text        NOT NULL,
  eligible_for_retry boolean     NOT NULL,
  data               jsonb       NOT NULL,
  metadata           jsonb       NOT NULL,
  -- 10-digit zero-padded UTC epoch seconds, "_", id: a sortable cursor.
  time_id            text GENERATED ALWAYS AS (
    lpad(CAST(EXTRACT(EPOCH FROM time AT TIME ZONE 'UTC') AS bigint)::text, 10, '0') || '_' || id
  ) STORED,
  PRIMARY KEY (time, id)
) PARTITION BY RANGE (time);

CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE INDEX ON events (tenant_id, time_id DESC);
CREATE INDEX ON events (tenant_id, destination_id);

CREATE TABLE deliveries (
  id             text        NOT NULL,
  event_id       text        NOT NULL,
  destination_id text        NOT NULL,
  status         text        NOT NULL,
  time           timestamptz NOT NULL,
  PRIMARY KEY (time, id)
) PARTITION BY RANGE (time);

CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;

CREATE INDEX ON deliveries (event_id);
CREATE INDEX ON deliveries (event_id, status);
