//! Checkpoint and cosignature vectors, witness quorum rules, body grammar.

mod common;

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::cosignature::{CosignatureSigner, CosignatureVerifierKey};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use proptest::prelude::*;
use serde_json::Value;
use sha2::Digest;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))
}

fn witness_seed() -> [u8; 32] {
    sha2::Sha256::digest(b"witness").into()
}

#[test]
fn checkpoint_vectors_verify_against_rfc6962_roots() {
    let (Some(v), Some(r)) = (
        common::vectors("signed-note.json"),
        common::vectors("rfc6962.json"),
    ) else {
        return;
    };
    let c = &v["checkpoint_example"];
    let key = NoteVerifierKey::parse(s(c, "verifier_key")).unwrap();
    for (name, size) in [("size_8", 8u64), ("size_6", 6)] {
        let vc = verify_checkpoint(s(c, name), &key, &[], 0).unwrap();
        assert_eq!(vc.checkpoint.origin, "example.com/test");
        assert_eq!(vc.checkpoint.size, size);
        let root = r["roots_by_size"][size.to_string()].as_str().unwrap();
        assert_eq!(hex::encode(vc.checkpoint.root_hash), root);
        assert!(vc.cosigners.is_empty());
        // The log signature regenerates byte-exactly from the Go seed.
        let seed: [u8; 32] = hex::decode(s(&v["go_sumdb_note"], "ed25519_seed_hex"))
            .unwrap()
            .try_into()
            .unwrap();
        let signer = NoteSigner::from_seed("example.com/test", seed).unwrap();
        assert_eq!(signer.verifier_key_text(), s(c, "verifier_key"));
        assert_eq!(signer.sign(&vc.checkpoint.to_body()).unwrap(), s(c, name));
    }
}

#[test]
fn witness_cosignature_vector() {
    let Some(v) = common::vectors("signed-note.json") else {
        return;
    };
    let c = &v["checkpoint_example"];
    let w = &c["witness_cosignature_v1"];
    let log_key = NoteVerifierKey::parse(s(c, "verifier_key")).unwrap();
    let wkey = CosignatureVerifierKey::parse(s(w, "verifier_key")).unwrap();
    assert_eq!(wkey.name(), "witness.example.com/w1");
    assert_eq!(wkey.to_text(), s(w, "verifier_key"));

    let signer = CosignatureSigner::from_seed("witness.example.com/w1", witness_seed()).unwrap();
    assert_eq!(signer.verifier_key_text(), s(w, "verifier_key"));
    let round = CosignatureSigner::from_private_key_text(&signer.private_key_text()).unwrap();
    assert_eq!(round.verifier_key_text(), s(w, "verifier_key"));

    let body = Checkpoint::parse_body(
        "example.com/test\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    )
    .unwrap()
    .to_body();
    let line = signer.cosign(&body, 1679315147).unwrap();
    assert_eq!(line, s(w, "line"));

    let cosigned = format!("{}{}", s(c, "size_8"), s(w, "line"));
    let vc = verify_checkpoint(&cosigned, &log_key, std::slice::from_ref(&wkey), 1).unwrap();
    assert_eq!(
        vc.cosigners,
        vec![("witness.example.com/w1".to_owned(), 1679315147)]
    );
    assert_eq!(vc.note, cosigned);
    // Quorum 2 with one witness fails; duplicate keys count once.
    let e = verify_checkpoint(&cosigned, &log_key, &[wkey.clone(), wkey.clone()], 2).unwrap_err();
    assert_eq!(e.code(), "witness_quorum");
    // Without the cosignature line the quorum fails.
    let e =
        verify_checkpoint(s(c, "size_8"), &log_key, std::slice::from_ref(&wkey), 1).unwrap_err();
    assert_eq!(e.code(), "witness_quorum");
    // A cosignature over a different checkpoint (size_6 body) is invalid and rejects.
    let wrong = format!("{}{}", s(c, "size_6"), s(w, "line"));
    let e = verify_checkpoint(&wrong, &log_key, std::slice::from_ref(&wkey), 0).unwrap_err();
    assert_eq!(e.code(), "invalid_cosignature");
    // ...but is ignored if the witness is unknown.
    verify_checkpoint(&wrong, &log_key, &[], 0).unwrap();
}

fn setup(n: usize) -> (NoteSigner, Vec<CosignatureSigner>, String) {
    let log = NoteSigner::from_seed("example.com/log", [7; 32]).unwrap();
    let ws: Vec<_> = (0..n)
        .map(|i| CosignatureSigner::from_seed(&format!("w{i}.example"), [i as u8 + 1; 32]).unwrap())
        .collect();
    let body = Checkpoint {
        origin: "example.com/log".into(),
        size: 42,
        root_hash: [3; 32],
        extensions: vec!["ext line".into()],
    }
    .to_body();
    (log, ws, body)
}

#[test]
fn quorum_and_rejections() {
    let (log, ws, body) = setup(3);
    let log_key = log.verifier_key().unwrap();
    let wkeys: Vec<_> = ws.iter().map(|w| w.verifier_key()).collect();
    let mut note = log.sign(&body).unwrap();
    for (i, w) in ws.iter().enumerate().take(2) {
        note.push_str(&w.cosign(&body, 1_700_000_000 + i as u64).unwrap());
    }
    let vc = verify_checkpoint(&note, &log_key, &wkeys, 2).unwrap();
    assert_eq!(vc.cosigners.len(), 2);
    verify_checkpoint(&note, &log_key, &wkeys, 0).unwrap();
    assert_eq!(
        verify_checkpoint(&note, &log_key, &wkeys, 3)
            .unwrap_err()
            .code(),
        "witness_quorum"
    );
    // An unknown extra signature is ignored.
    let stranger = NoteSigner::from_seed("stranger", [9; 32]).unwrap();
    let extra = stranger.sign(&body).unwrap();
    let with_stranger = format!(
        "{note}{}",
        extra.strip_prefix(&format!("{body}\n")).unwrap()
    );
    verify_checkpoint(&with_stranger, &log_key, &wkeys, 2).unwrap();
    // A known witness with an invalid cosignature rejects (tampered timestamp).
    let bad = ws[2].cosign(&body, 5).unwrap().replacen(
        &ws[2].verifier_key().name().to_string(),
        "w2.example",
        1,
    );
    let mut bytes = bad.into_bytes();
    let n = bytes.len();
    bytes[n - 3] = if bytes[n - 3] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{note}{}", String::from_utf8(bytes).unwrap());
    let e = verify_checkpoint(&tampered, &log_key, &wkeys, 2).unwrap_err();
    assert_eq!(e.code(), "invalid_cosignature");
    // Wrong log key: origin mismatch; same name but another key: missing log signature.
    let other = NoteSigner::from_seed("example.com/other", [8; 32]).unwrap();
    assert_eq!(
        verify_checkpoint(&note, &other.verifier_key().unwrap(), &wkeys, 0)
            .unwrap_err()
            .code(),
        "origin_mismatch"
    );
    let impostor = NoteSigner::from_seed("example.com/log", [8; 32]).unwrap();
    assert_eq!(
        verify_checkpoint(&note, &impostor.verifier_key().unwrap(), &wkeys, 0)
            .unwrap_err()
            .code(),
        "missing_log_signature"
    );
    // Tampered body: log signature invalid.
    let t = note.replacen("\n42\n", "\n43\n", 1);
    assert_eq!(
        verify_checkpoint(&t, &log_key, &wkeys, 0)
            .unwrap_err()
            .code(),
        "invalid_log_signature"
    );
    // Cosigning refuses malformed bodies and huge timestamps.
    assert_eq!(
        ws[0].cosign("not a checkpoint\n", 1).unwrap_err().code(),
        "malformed_checkpoint"
    );
    assert_eq!(
        ws[0].cosign(&body, u64::MAX).unwrap_err().code(),
        "timestamp_out_of_range"
    );
}

#[test]
fn cosignature_key_rules() {
    let (_, ws, _) = setup(1);
    let text = ws[0].verifier_key_text();
    let (name, rest) = text.split_once('+').unwrap();
    let (id, key) = rest.split_once('+').unwrap();
    let bad_id = format!(
        "{name}+{:08x}+{key}",
        u32::from_str_radix(id, 16).unwrap() ^ 1
    );
    assert_eq!(
        CosignatureVerifierKey::parse(&bad_id).unwrap_err().code(),
        "key_id_mismatch"
    );
    // A type 0x01 note key is not a cosignature key.
    let note_key = NoteSigner::from_seed("w0.example", [1; 32])
        .unwrap()
        .verifier_key_text();
    assert_eq!(
        CosignatureVerifierKey::parse(&note_key).unwrap_err().code(),
        "unsupported_key_type"
    );
    assert!(NoteVerifierKey::parse(&text).is_err());
    assert!(CosignatureSigner::from_private_key_text(&text).is_err());
}

#[test]
fn checkpoint_body_grammar() {
    let good = [
        "o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "example.com/x\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nabc\ndef\n",
    ];
    for g in good {
        assert_eq!(Checkpoint::parse_body(g).unwrap().to_body(), g);
    }
    let bad = [
        "",
        "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n+1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n18446744073709551616\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nabc\n\n",
        "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nabc",
        "o\n1\n",
    ];
    for b in bad {
        let e = Checkpoint::parse_body(b).unwrap_err();
        assert_eq!(e.code(), "malformed_checkpoint", "{b:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The body parser agrees with tlog_tiles' checkpoint parser.
    #[test]
    fn prop_body_parser_agrees_with_tlog_tiles(
        lines in proptest::collection::vec("[a-z0-9+/=]{0,4}|[A-Za-z0-9+/]{43}=|0|[1-9][0-9]{0,3}", 0..6),
        trailing in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if trailing { text.push('\n'); }
        let ours = Checkpoint::parse_body(&text);
        let theirs = tlog_tiles::Checkpoint::from_bytes(text.as_bytes());
        prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}", text);
        if let Ok(c) = ours {
            prop_assert_eq!(c.to_body(), text);
        }
    }

    #[test]
    fn prop_cosign_verify_roundtrip(size in any::<u64>(), root in any::<[u8; 32]>(), ts in 0u64..=i64::MAX as u64) {
        let (log, ws, _) = setup(2);
        let body = Checkpoint { origin: "example.com/log".into(), size, root_hash: root, extensions: vec![] }.to_body();
        let mut note = log.sign(&body).unwrap();
        for w in &ws { note.push_str(&w.cosign(&body, ts).unwrap()); }
        let keys: Vec<_> = ws.iter().map(|w| w.verifier_key()).collect();
        let vc = verify_checkpoint(&note, &log.verifier_key().unwrap(), &keys, 2).unwrap();
        prop_assert_eq!(vc.checkpoint.size, size);
        prop_assert!(vc.cosigners.iter().all(|(_, t)| *t == ts));
    }
}
