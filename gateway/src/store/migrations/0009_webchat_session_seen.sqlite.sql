-- When a web chat session was last used; sessions idle longer than
-- webchat.session_idle_timeout are expired. NULL (sessions created before): created_at counts.
ALTER TABLE webchat_sessions ADD COLUMN last_seen_at BIGINT;
