-- A conversation keeps one pending follow-up that each later answer moves (instead of one
-- cancelled row per answer): how many times it was moved.
ALTER TABLE follow_ups ADD COLUMN reschedules BIGINT NOT NULL DEFAULT 0;
