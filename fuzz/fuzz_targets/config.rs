//! The config loader on arbitrary TOML: it must never panic; every problem is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    if let Ok(text) = std::str::from_utf8(text) {
        let _ = gateway::config::Config::from_toml(text);
    }
});
