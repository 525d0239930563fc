//! `nitro-cli run-enclave` output (progress lines, then a JSON object).
#![no_main]

use enclave_builder::launcher::parse_run_output;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = parse_run_output(text) {
        assert!(!info.enclave_id.is_empty());
    }
});
