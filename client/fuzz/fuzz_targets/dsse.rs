//! DSSE envelopes: parse, canonical round trip, and signature checks.
#![no_main]

use attestlog::dsse::{Envelope, PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

/// DER SubjectPublicKeyInfo of RFC 8032's first Ed25519 test key.
const KEY: [u8; 44] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, 0xd7, 0x5a, 0x98, 0x01,
    0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3,
    0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::parse(data) {
        // What parses re-parses, from its canonical JSON, to the same envelope.
        assert_eq!(
            Envelope::parse(env.to_json().as_bytes()).ok(),
            Some(env.clone())
        );
        assert!(env.payload_type != PAYLOAD_TYPE || env.check_statement(&env.payload).is_ok());
        let _ = env.verify(Some(&KEY));
        assert!(env.verify(None).is_err());
    }
});
