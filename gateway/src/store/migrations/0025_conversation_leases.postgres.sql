-- Conversation leases held in the database: the fallback of distributed mode while Redis is
-- unreachable (see coord/redis.rs), shared by every replica on the database. One row per leased
-- conversation: `holder` is the lease token, `expires_at` Unix ms by the database's own clock
-- (replicas with skewed clocks agree). A row whose holder died stays, expired, until the
-- conversation is leased again (the acquiring upsert takes it over) — at most one per
-- conversation.
CREATE TABLE conversation_leases (
    conversation_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
