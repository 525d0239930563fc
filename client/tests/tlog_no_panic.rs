//! Parsers never panic on arbitrary input.

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::cosignature::{CosignatureSigner, CosignatureVerifierKey};
use attestlog::tlog::note::{verify_note, NoteSigner, NoteVerifierKey, SignedNote};
use attestlog::tlog::proof::TlogProof;
use attestlog::tlog::tiles::{parse_entry_bundle, TilePath};
use proptest::prelude::*;

/// Strings biased toward the formats' own alphabet.
fn texty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9+/=\n .x\u{2014}-]{0,200}",
        "(tile/(entries|[0-9]{1,3})/(x[0-9]{3}/){0,3}[0-9]{1,4}(\\.p/[0-9]{1,3})?)",
        "(c2sp.org/tlog-proof@v1\n)?(extra [A-Za-z0-9+/=]{0,8}\n)?(index [0-9]{1,3}\n)?([A-Za-z0-9+/]{43}=\n){0,3}\n?[a-z\n]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(s in texty(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedNote::parse(&s);
        let _ = NoteVerifierKey::parse(&s);
        let _ = NoteSigner::from_private_key_text(&s);
        let _ = CosignatureVerifierKey::parse(&s);
        let _ = CosignatureSigner::from_private_key_text(&s);
        let _ = Checkpoint::parse_body(&s);
        let _ = TlogProof::parse(&s);
        let _ = TilePath::parse(&s);
        let _ = parse_entry_bundle(&bytes);
        let _ = parse_entry_bundle(s.as_bytes());
    }

    #[test]
    fn verifiers_never_panic(body in "[a-z.]{1,8}\n[0-9]{1,3}\n[A-Za-z0-9+/]{43}=\n", sigs in "(\u{2014} [a-z.]{1,8} [A-Za-z0-9+/]{0,100}={0,2}\n){0,4}", ext in "[ -~]{0,30}") {
        let key = NoteVerifierKey::parse("example.com/test+b3576301+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        let w = CosignatureSigner::from_seed("w", [1; 32]).unwrap().verifier_key();
        for note in [format!("{body}\n{sigs}"), format!("{body}{ext}\n\n{sigs}")] {
            let _ = verify_note(&note, std::slice::from_ref(&key));
            let _ = verify_checkpoint(&note, &key, std::slice::from_ref(&w), 1);
        }
    }
}
