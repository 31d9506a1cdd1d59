-- Tenant API keys for the admin REST API. Only a SHA-256 of the whole key is stored; the
-- prefix is public (shown in listings, used to look the key up and to revoke it).
CREATE TABLE api_keys (
    prefix TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
