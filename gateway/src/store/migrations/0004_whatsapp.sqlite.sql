ALTER TABLE messages ADD COLUMN content_kind TEXT;
ALTER TABLE messages ADD COLUMN media TEXT;
ALTER TABLE messages ADD COLUMN status_at BIGINT;
ALTER TABLE messages ADD COLUMN error_code TEXT;
CREATE INDEX outbox_provider_message ON outbox (channel_account_id, provider_message_id);
CREATE INDEX conversations_contact_state ON conversations (contact_id, state);
