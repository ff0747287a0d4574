-- destination_id comes back as the first matched destination ('' if none).
ALTER TABLE events ADD COLUMN destination_id text NOT NULL DEFAULT '';
UPDATE events SET destination_id = matched_destination_ids[1]
WHERE cardinality(matched_destination_ids) > 0;
ALTER TABLE events ALTER COLUMN destination_id DROP DEFAULT;
DROP INDEX IF EXISTS events_matched_destination_ids_idx;
ALTER TABLE events DROP COLUMN matched_destination_ids;
