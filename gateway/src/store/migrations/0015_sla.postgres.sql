-- When a waiting chat's customer was told again that the team will reply (SLA re-notify).
ALTER TABLE conversations ADD COLUMN renotified_at BIGINT;
