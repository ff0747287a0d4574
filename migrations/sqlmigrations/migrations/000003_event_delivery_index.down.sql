DROP TABLE IF EXISTS event_delivery_index;
