//! The web chat message body (`POST /v1/webchat/messages`): it must never panic, and whatever it
//! accepts is within the documented bounds.
#![no_main]

use gateway::http::webchat::decode_message;
use libfuzzer_sys::fuzz_target;

const MAX_CHARS: usize = 2_000;

fuzz_target!(|body: &[u8]| {
    if let Ok(message) = decode_message(body, MAX_CHARS) {
        let id = &message.client_message_id;
        assert!(!id.is_empty() && id.len() <= 100, "client id length: {id:?}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')),
            "client id characters: {id:?}"
        );
        assert_eq!(message.text.trim(), message.text, "text is trimmed");
        assert!(!message.text.is_empty(), "text is not empty");
        assert!(message.text.chars().count() <= MAX_CHARS, "text is within the limit");
    }
});
