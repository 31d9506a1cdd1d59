//! The Telegram update decoder on arbitrary bodies: it must never panic.
#![no_main]

use channels::telegram::update::{BotIdentity, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let bot = BotIdentity {
        id: 7_000_000_001,
        username: "toko_sapa_bot".to_owned(),
    };
    let _ = decode(body, &bot);
});
