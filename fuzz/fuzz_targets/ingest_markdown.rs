//! The knowledge ingester for .md documents on arbitrary bytes: it must never panic, and a
//! document it accepts has at least one chunk, each with a title and text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(document) = knowledge::ingest::parse("fuzz.md", bytes) {
        assert!(!document.chunks.is_empty(), "an accepted document has chunks");
        assert!(!document.title.is_empty(), "an accepted document has a title");
        for chunk in &document.chunks {
            assert!(!chunk.text.trim().is_empty(), "an empty chunk: {chunk:?}");
        }
    }
});
