-- Human handoff: who owns a conversation handed to people, and since when it waits for one.
ALTER TABLE conversations ADD COLUMN assignee TEXT;
ALTER TABLE conversations ADD COLUMN waiting_since BIGINT;
CREATE INDEX conversations_queue ON conversations (tenant_id, state, waiting_since);
