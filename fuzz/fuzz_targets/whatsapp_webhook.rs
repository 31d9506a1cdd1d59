//! The WhatsApp Cloud API webhook decoder on arbitrary bodies: it must never panic, and a body
//! it accepts decodes the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(delivery) = channels::whatsapp::webhook::decode(body) {
        let again = channels::whatsapp::webhook::decode(body).map(|d| format!("{d:?}"));
        assert_eq!(again.ok(), Some(format!("{delivery:?}")));
    }
});
