-- Follow-ups: one message the bot sends when a customer goes quiet after an answer. A row is
-- scheduled by the turn commit that answered (replacing the conversation's pending one),
-- claimed by the follow-up worker with a lease (`locked_until`), and leaves `pending` exactly
-- once: `sent` in the same transaction that queues its outbox row, or `cancelled`/`skipped`
-- with a `reason`.
CREATE TABLE follow_ups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    -- `scheduled` (quiet time after the answer) or `quiet` (deferred past quiet hours).
    kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    text TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    locked_until BIGINT,
    message_id BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX follow_ups_due ON follow_ups (due_at) WHERE state = 'pending';
CREATE INDEX follow_ups_conversation ON follow_ups (conversation_id, state);
CREATE INDEX follow_ups_contact_sent ON follow_ups (tenant_id, contact_id, updated_at) WHERE state = 'sent';
-- The customer asked for no follow-ups ("berhenti"/"stop"/"unsubscribe") until "mulai"/"start".
ALTER TABLE contacts ADD COLUMN follow_up_opt_out BIGINT NOT NULL DEFAULT 0;
