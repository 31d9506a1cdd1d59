-- WhatsApp usernames: a customer may be known by a business-scoped user id (`US.1349…`)
-- instead of, or next to, a phone number. `contacts.external_id` stays the address we send
-- to (the phone number when known, else the user id); `user_id` links both to one contact.
ALTER TABLE contacts ADD COLUMN user_id TEXT;
ALTER TABLE contacts ADD COLUMN parent_user_id TEXT;
ALTER TABLE contacts ADD COLUMN username TEXT;
CREATE UNIQUE INDEX contacts_user_id ON contacts (channel_account_id, user_id);
