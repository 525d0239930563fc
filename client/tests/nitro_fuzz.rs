//! Property tests: parse and verify never panic on arbitrary or mutated input.

mod common;

use attestlog::nitro::{AttestationDocument, NitroVerifier, TrustRoots, VerifyTime};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = AttestationDocument::parse(&bytes);
        let v = NitroVerifier::new(TrustRoots::aws());
        let _ = v.verify(&bytes, VerifyTime::DocumentTimestamp);
    }

    #[test]
    fn random_cbor_prefixed_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Start like a real envelope so decoding goes deeper than the first byte.
        let mut bytes = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0];
        bytes.extend_from_slice(&tail);
        let _ = AttestationDocument::parse(&bytes);
    }
}

#[test]
fn mutated_samples_never_panic_and_never_verify() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    let strategy = (
        0..samples.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    );
    runner
        .run(&strategy, |(i, edits)| {
            let mut bytes = samples[i].bytes.clone();
            let mut changed = false;
            for (idx, val) in edits {
                let pos = idx.index(bytes.len());
                changed |= bytes[pos] != val;
                bytes[pos] = val;
            }
            let _ = AttestationDocument::parse(&bytes);
            let r = v.verify(&bytes, VerifyTime::DocumentTimestamp);
            if changed {
                prop_assert!(r.is_err());
            }
            Ok(())
        })
        .unwrap();
}
