//! Bundles, entries, statements and tlog-proof texts.
#![no_main]

use attestlog::bundle::Bundle;
use attestlog::claim::{Entry, Statement};
use attestlog::tlog::proof::TlogProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        assert_eq!(
            Bundle::parse(bundle.to_json().as_bytes()).ok(),
            Some(bundle)
        );
    }
    if let Ok(entry) = Entry::decode(data) {
        let _ = Statement::parse(entry.statement);
        assert_eq!(
            Entry::encode(entry.statement, entry.attestation)
                .ok()
                .as_deref(),
            Some(data)
        );
    }
    let _ = Statement::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(proof) = TlogProof::parse(text) {
            assert_eq!(TlogProof::parse(&proof.to_text()).ok(), Some(proof));
        }
    }
});
