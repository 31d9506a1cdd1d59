-- A conversation keeps one pending follow-up that each later answer moves (instead of one
-- cancelled row per answer): how many times it was moved. The unique partial index makes the
-- move one upsert, and finds the pending row for the cancel.
ALTER TABLE follow_ups ADD COLUMN reschedules BIGINT NOT NULL DEFAULT 0;
DROP INDEX follow_ups_conversation;
CREATE UNIQUE INDEX follow_ups_pending ON follow_ups (conversation_id) WHERE state = 'pending';
