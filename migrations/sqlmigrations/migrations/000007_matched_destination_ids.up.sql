-- 000007_matched_destination_ids: an event records every destination it
-- matched instead of one destination_id.
ALTER TABLE events ADD COLUMN matched_destination_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX ON events USING gin (matched_destination_ids);
DROP INDEX IF EXISTS events_tenant_id_destination_id_idx;
ALTER TABLE events DROP COLUMN destination_id;
