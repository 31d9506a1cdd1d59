-- Progress of a message sent as several provider messages: each part's provider id is recorded
-- with its position as soon as the provider accepts it, so a retried or re-claimed send resumes
-- after the parts already sent instead of sending them again. Rows written before this
-- migration have no position (NULL), which the unique index allows.
ALTER TABLE outbox_parts ADD COLUMN part_index BIGINT;
CREATE UNIQUE INDEX outbox_parts_position ON outbox_parts (outbox_id, part_index);
