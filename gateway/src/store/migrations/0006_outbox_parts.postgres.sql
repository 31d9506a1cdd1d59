-- Provider ids of the earlier parts of an outbound message sent as several provider messages
-- (a long WhatsApp text split in parts): delivery statuses may refer to any part. The last
-- part's id stays in outbox.provider_message_id.
CREATE TABLE outbox_parts (
    tenant_id TEXT NOT NULL,
    channel_account_id TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    outbox_id BIGINT NOT NULL
);
CREATE INDEX outbox_parts_provider_message ON outbox_parts (tenant_id, channel_account_id, provider_message_id);
CREATE INDEX outbox_parts_outbox ON outbox_parts (outbox_id);
