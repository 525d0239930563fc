//! Attestation documents: parsing and full verification must never panic.
#![no_main]

use std::sync::OnceLock;

use attestlog::nitro::{AttestationDocument, NitroVerifier, TrustRoots, VerifyTime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static VERIFIER: OnceLock<NitroVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| NitroVerifier::new(TrustRoots::aws()));
    let parsed = AttestationDocument::parse(data);
    let verified = verifier.verify(data, VerifyTime::DocumentTimestamp);
    // Whatever parse refuses, verify refuses too.
    if parsed.is_err() {
        assert!(verified.is_err());
    }
    let _ = verifier.verify(data, VerifyTime::UnixSeconds(1_767_472_867));
});
