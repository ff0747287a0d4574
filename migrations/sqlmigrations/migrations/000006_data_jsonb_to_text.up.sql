-- 000006_data_jsonb_to_text: jsonb reorders an object's keys; payloads must
-- keep theirs, so the payload columns become text.
ALTER TABLE events ALTER COLUMN data TYPE text USING data::text;
ALTER TABLE attempts ALTER COLUMN event_data TYPE text USING event_data::text;
