-- 000004_delivery_manual_attempt: whether a delivery was a manual retry, and
-- its attempt number.
ALTER TABLE deliveries
  ADD COLUMN manual boolean NOT NULL DEFAULT false,
  ADD COLUMN attempt integer NOT NULL DEFAULT 0;

ALTER TABLE event_delivery_index
  ADD COLUMN manual boolean NOT NULL DEFAULT false,
  ADD COLUMN attempt integer NOT NULL DEFAULT 0;
