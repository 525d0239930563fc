//! `attestlog-build.toml` files (from the repository being built): env names are checked.
#![no_main]

use enclave_builder::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = parse(text) {
        // Only names a shell accepts reach the sandbox's environment.
        for name in config.env.keys() {
            let b = name.as_bytes();
            assert!(!b.is_empty() && !b[0].is_ascii_digit(), "{name:?}");
            assert!(
                b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_'),
                "{name:?}"
            );
        }
    }
});
