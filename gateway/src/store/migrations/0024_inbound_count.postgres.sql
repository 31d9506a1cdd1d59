-- Customer messages per conversation, counted by the statement that stamps last_inbound_at (so
-- telling a conversation's first message takes no extra read on the single writer), and the
-- times of its first customer message and of its first response (bot or agent), set by the
-- statements that already write the conversation: the usage page's first-response times come
-- from them (older ones stay in usage_first_responses; 0 marks a conversation recorded there).
ALTER TABLE conversations ADD COLUMN inbound_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN first_inbound_at BIGINT;
ALTER TABLE conversations ADD COLUMN first_response_at BIGINT;
UPDATE conversations SET inbound_count = 1, first_inbound_at = last_inbound_at WHERE last_inbound_at IS NOT NULL;
UPDATE conversations SET first_response_at = 0 WHERE id IN (SELECT conversation_id FROM usage_first_responses);
CREATE INDEX conversations_first_response ON conversations (tenant_id, first_response_at) WHERE first_response_at IS NOT NULL;
