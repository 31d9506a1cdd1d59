-- Telegram: the long-polling offset of a bot account, and the phone number a customer shared
-- (kept for OTP and identity).
ALTER TABLE channel_accounts ADD COLUMN poll_offset BIGINT;
ALTER TABLE contacts ADD COLUMN phone TEXT;
