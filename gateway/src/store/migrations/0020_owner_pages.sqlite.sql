-- When an API key was last accepted (Unix ms; NULL: never), shown on the owner's API keys
-- page. Written at most once a minute per key.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
-- When each knowledge document was first uploaded and last changed: the index keeps content,
-- not dates, and the owner's knowledge page lists both.
CREATE TABLE knowledge_documents (
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, document_id)
);
