-- Customer messages per conversation, counted by the statement that stamps last_inbound_at (so
-- telling a conversation's first message takes no extra read on the single writer).
ALTER TABLE conversations ADD COLUMN inbound_count BIGINT NOT NULL DEFAULT 0;
UPDATE conversations SET inbound_count = 1 WHERE last_inbound_at IS NOT NULL;
