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

    /// Attacker signature bytes under a trusted ML-DSA-44 witness's name and
    /// key ID: refused (never counted), never a panic, whatever the length.
    #[test]
    fn mldsa_verifier_refuses_random_signatures(
        sig in proptest::collection::vec(any::<u8>(), 0..2600),
        ts in any::<u64>(),
        exact in any::<bool>(),
    ) {
        use attestlog::tlog::cosignature::{CosignatureKind, MLDSA44_SIGNATURE_LEN};
        use base64::Engine;
        static W: std::sync::OnceLock<CosignatureSigner> = std::sync::OnceLock::new();
        let w = W.get_or_init(|| {
            CosignatureSigner::from_seed_kind("w", CosignatureKind::MlDsa44, [1; 32]).unwrap()
        });
        let log = NoteSigner::from_seed("example.com/test", [2; 32]).unwrap();
        let note = log
            .sign("example.com/test\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
            .unwrap();
        let mut bytes = w.key_id().to_be_bytes().to_vec();
        bytes.extend_from_slice(&ts.to_be_bytes());
        let mut sig = sig;
        if exact {
            sig.resize(MLDSA44_SIGNATURE_LEN, 0);
        }
        bytes.extend_from_slice(&sig);
        let line = format!(
            "\u{2014} w {}\n",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        let r = verify_checkpoint(
            &format!("{note}{line}"),
            &log.verifier_key().unwrap(),
            &[w.verifier_key()],
            0,
        );
        prop_assert_eq!(r.unwrap_err().code(), "invalid_cosignature");
    }
}
