-- The phone verification step of a conversation (JSON: {"step": "awaiting_code", …});
-- NULL: none under way.
ALTER TABLE conversations ADD COLUMN verification TEXT;
