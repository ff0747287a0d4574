-- 000009_response_data_jsonb_to_text: like 000006, for the response body.
ALTER TABLE attempts ALTER COLUMN response_data TYPE text USING response_data::text;
