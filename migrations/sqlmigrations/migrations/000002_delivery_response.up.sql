-- 000002_delivery_response: the destination's response, when there was one.
ALTER TABLE deliveries
  ADD COLUMN code text,
  ADD COLUMN response_data jsonb;
