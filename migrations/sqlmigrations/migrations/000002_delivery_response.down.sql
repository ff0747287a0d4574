ALTER TABLE deliveries
  DROP COLUMN IF EXISTS response_data,
  DROP COLUMN IF EXISTS code;
