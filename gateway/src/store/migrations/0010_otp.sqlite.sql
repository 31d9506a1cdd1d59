-- One-time codes. A challenge stores only an HMAC of its code under the server key; the code
-- travels sealed (AEAD, bound to the challenge) in its outbox rows until the send is final.
CREATE TABLE otp_challenges (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    locale TEXT NOT NULL,
    channel TEXT NOT NULL,
    code_hmac TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    verified_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX otp_recipient ON otp_challenges (tenant_id, recipient, created_at);
CREATE INDEX otp_tenant_created ON otp_challenges (tenant_id, created_at);
CREATE UNIQUE INDEX otp_idempotency ON otp_challenges (tenant_id, idempotency_key);
-- Outbox rows of one-time codes: sent before ordinary answers (priority 1), holding the code
-- sealed until the send is final. A fallback channel's row waits in state 'held'.
ALTER TABLE outbox ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN sealed_code TEXT;
ALTER TABLE outbox ADD COLUMN otp_challenge_id TEXT;
CREATE INDEX outbox_otp ON outbox (otp_challenge_id);
-- API key scopes, comma-separated; NULL: every scope (keys created before scopes).
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
