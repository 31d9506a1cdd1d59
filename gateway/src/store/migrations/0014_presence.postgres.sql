-- Agents' presence (auto-assignment gives waiting chats to online agents) and when each was
-- last given one (round-robin order).
ALTER TABLE staff ADD COLUMN presence TEXT NOT NULL DEFAULT 'away';
ALTER TABLE staff ADD COLUMN last_assigned_at BIGINT;
