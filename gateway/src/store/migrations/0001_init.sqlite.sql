CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    locale TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE channel_accounts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    name TEXT NOT NULL,
    credentials BLOB,
    created_at BIGINT NOT NULL,
    UNIQUE (kind, external_id)
);
CREATE INDEX channel_accounts_tenant ON channel_accounts (tenant_id);
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    channel_account_id TEXT NOT NULL REFERENCES channel_accounts(id),
    external_id TEXT NOT NULL,
    display_name TEXT,
    unreachable BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (channel_account_id, external_id)
);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    channel_account_id TEXT NOT NULL REFERENCES channel_accounts(id),
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    state TEXT NOT NULL,
    locale TEXT NOT NULL,
    abstain_streak BIGINT NOT NULL DEFAULT 0,
    handoff_reason TEXT,
    last_inbound_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);
CREATE INDEX conversations_contact ON conversations (contact_id);
CREATE TABLE webchat_sessions (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    channel_account_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT,
    UNIQUE (channel_account_id, external_id)
);
CREATE INDEX inbox_pending ON inbox (conversation_id, id) WHERE processed_at IS NULL;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    external_id TEXT,
    inbox_id BIGINT,
    in_reply_to TEXT,
    choices TEXT,
    status TEXT,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_inbox ON messages (inbox_id);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    channel_account_id TEXT NOT NULL,
    channel_kind TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT,
    provider_message_id TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_conversation ON outbox (conversation_id, id);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    ref_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE unanswered_questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    query TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX unanswered_tenant ON unanswered_questions (tenant_id, created_at);
