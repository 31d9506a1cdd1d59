-- Usage per tenant, day (in the tenant's time zone, `YYYY-MM-DD`) and channel kind, counted in
-- the transactions that store the messages; first-response times per conversation (their
-- median is computed when read); the regression report stored with each published version;
-- console quota overrides; one-time notices to each owner.
CREATE TABLE usage_daily (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    channel TEXT NOT NULL,
    messages_in BIGINT NOT NULL DEFAULT 0,
    messages_out BIGINT NOT NULL DEFAULT 0,
    conversations BIGINT NOT NULL DEFAULT 0,
    handoffs BIGINT NOT NULL DEFAULT 0,
    answer_turns BIGINT NOT NULL DEFAULT 0,
    answered BIGINT NOT NULL DEFAULT 0,
    abstained BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, channel)
);
CREATE TABLE usage_first_responses (
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    day TEXT NOT NULL,
    channel TEXT NOT NULL,
    ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX usage_first_responses_day ON usage_first_responses (tenant_id, day);
ALTER TABLE bot_versions ADD COLUMN regression TEXT;
CREATE TABLE tenant_quotas (
    tenant_id TEXT PRIMARY KEY,
    monthly_messages BIGINT NOT NULL,
    monthly_llm_tokens BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE owner_notices (
    tenant_id TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, staff_id, kind, period)
);
