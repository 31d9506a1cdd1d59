-- How long the chat waited for an agent the last time it was claimed or assigned (the wait
-- notice's "typical wait" is the median of a tenant's recent ones).
ALTER TABLE conversations ADD COLUMN last_wait_ms BIGINT;
-- What the agent's part of the conversation was about, for the bot after a hand back.
ALTER TABLE conversations ADD COLUMN handoff_summary TEXT;
