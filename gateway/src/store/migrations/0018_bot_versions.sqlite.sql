-- Versioned bot settings: every publish is a new version (the highest is live); one draft
-- per tenant.
CREATE TABLE bot_versions (
    tenant_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    settings TEXT NOT NULL,
    author TEXT NOT NULL,
    note TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE bot_drafts (
    tenant_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    author TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
