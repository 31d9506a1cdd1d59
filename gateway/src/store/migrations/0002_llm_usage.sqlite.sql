-- Language model: token usage per tenant and conversation, owner instructions, citations.
ALTER TABLE tenants ADD COLUMN instructions TEXT;
ALTER TABLE messages ADD COLUMN citations TEXT;
CREATE TABLE llm_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX llm_usage_tenant ON llm_usage (tenant_id, created_at);
CREATE INDEX llm_usage_conversation ON llm_usage (tenant_id, conversation_id);
