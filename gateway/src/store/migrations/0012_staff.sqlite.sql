-- Staff (owners and agents) of a tenant, their set-password links, console sessions, pending
-- two-factor logins and the audit log of their actions. Passwords are argon2id PHC strings;
-- link, session and CSRF tokens are stored as SHA-256 hashes only.
CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT,
    whatsapp TEXT,
    telegram_chat_id BIGINT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, email)
);
CREATE TABLE staff_links (
    token_hash TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE staff_sessions (
    token_hash TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    tenant_id TEXT NOT NULL,
    csrf_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE TABLE staff_login_challenges (
    challenge_id TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL REFERENCES staff(id),
    tenant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    staff_id TEXT,
    action TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_tenant ON audit_log (tenant_id, created_at);
