//! Signed-note vectors (C2SP example, Go sumdb note) and negatives.

mod common;

use attestlog::tlog::note::{verify_note, NoteSigner, NoteVerifierKey, SignedNote};
use serde_json::Value;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))
}

#[test]
fn c2sp_example_verifies() {
    let Some(v) = common::vectors("signed-note.json") else {
        return;
    };
    let ex = &v["c2sp_example"];
    let key = NoteVerifierKey::parse(s(ex, "verifier_key")).unwrap();
    assert_eq!(key.name(), "example.com/foo");
    assert_eq!(key.key_id(), 0x530d903a);
    assert_eq!(key.to_text(), s(ex, "verifier_key"));
    let n = verify_note(s(ex, "note"), &[key]).unwrap();
    assert_eq!(n.text, "This is an example message.\n");
    assert_eq!(n.signatures.len(), 1);
    let parsed = SignedNote::parse(s(ex, "note")).unwrap();
    assert_eq!(parsed.to_text(), s(ex, "note"));
}

#[test]
fn go_sumdb_note_vectors() {
    let Some(v) = common::vectors("signed-note.json") else {
        return;
    };
    let g = &v["go_sumdb_note"];
    let peter = NoteVerifierKey::parse(s(g, "verifier_key")).unwrap();
    let enoch = NoteVerifierKey::parse(s(g, "second_verifier_key")).unwrap();

    // Signer key text round trip, from the text and from the seed.
    let signer = NoteSigner::from_private_key_text(s(g, "signer_key")).unwrap();
    assert_eq!(signer.private_key_text(), s(g, "signer_key"));
    assert_eq!(signer.verifier_key_text(), s(g, "verifier_key"));
    let seed: [u8; 32] = hex::decode(s(g, "ed25519_seed_hex"))
        .unwrap()
        .try_into()
        .unwrap();
    let from_seed = NoteSigner::from_seed("PeterNeumann", seed).unwrap();
    assert_eq!(from_seed.private_key_text(), s(g, "signer_key"));
    let pub_b64 = s(g, "verifier_key").splitn(3, '+').nth(2).unwrap();
    assert!(pub_b64.contains('+') || pub_b64.len() == 44);
    assert_eq!(
        hex::encode(&base64_decode(pub_b64)[1..]),
        s(g, "ed25519_public_hex")
    );

    // Ed25519 is deterministic: signing reproduces the vector byte for byte.
    assert_eq!(signer.sign(s(g, "text")).unwrap(), s(g, "signed_by_peter"));

    let n = verify_note(s(g, "signed_by_peter"), std::slice::from_ref(&peter)).unwrap();
    assert_eq!(n.text, s(g, "text"));
    // Signed by both: each key alone verifies (the other line is unknown).
    let both = s(g, "signed_by_both");
    assert_eq!(
        verify_note(both, std::slice::from_ref(&peter))
            .unwrap()
            .signatures
            .len(),
        1
    );
    assert_eq!(
        verify_note(both, std::slice::from_ref(&enoch))
            .unwrap()
            .signatures
            .len(),
        1
    );
    let n = verify_note(both, &[peter.clone(), enoch.clone(), peter.clone()]).unwrap();
    assert_eq!(n.signatures.len(), 2);
    assert_eq!(SignedNote::parse(both).unwrap().to_text(), both);

    // Only Enoch's key against Peter-only note: no known signature.
    let e = verify_note(s(g, "signed_by_peter"), &[enoch]).unwrap_err();
    assert_eq!(e.code(), "unverified_note");

    for bad in g["invalid_verifier_keys"].as_array().unwrap() {
        assert!(
            NoteVerifierKey::parse(bad.as_str().unwrap()).is_err(),
            "{bad}"
        );
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn note_negatives() {
    let Some(v) = common::vectors("signed-note.json") else {
        return;
    };
    let g = &v["go_sumdb_note"];
    let peter = NoteVerifierKey::parse(s(g, "verifier_key")).unwrap();
    let note = s(g, "signed_by_peter");
    let keys = std::slice::from_ref(&peter);

    // Tampered text: known key, bad signature.
    let tampered = note.replacen("problem", "Problem", 1);
    assert_eq!(
        verify_note(&tampered, keys).unwrap_err().code(),
        "invalid_signature"
    );
    // Wrong key with the same name and ID is impossible to build; a different
    // key under the same name is just unknown.
    let other = NoteSigner::generate("PeterNeumann").unwrap();
    let other_key = other.verifier_key().unwrap();
    assert_eq!(
        verify_note(note, &[other_key]).unwrap_err().code(),
        "unverified_note"
    );
    // Bad base64 in the signature line.
    let bad64 = note.replacen("x08go", "x08g!", 1);
    assert_eq!(
        verify_note(&bad64, keys).unwrap_err().code(),
        "malformed_note"
    );
    // Missing blank line, missing final newline, control characters.
    assert!(SignedNote::parse(&note.replacen("\n\n", "\n", 1)).is_err());
    assert!(SignedNote::parse(note.trim_end_matches('\n')).is_err());
    assert!(SignedNote::parse(&note.replacen("If", "I\tf", 1)).is_err());

    // 16 signatures accepted, 100 accepted, 101 rejected.
    let text = s(g, "text");
    let signer = NoteSigner::from_private_key_text(s(g, "signer_key")).unwrap();
    let signed = signer.sign(text).unwrap();
    let own_line = signed
        .strip_prefix(text)
        .unwrap()
        .trim_start_matches('\n')
        .to_owned();
    for (count, ok) in [(16usize, true), (100, true), (101, false)] {
        let mut n = format!("{text}\n");
        for i in 0..count - 1 {
            let o = NoteSigner::from_seed(&format!("other{i}"), [i as u8; 32]).unwrap();
            let line = o.sign(text).unwrap();
            n.push_str(line.strip_prefix(text).unwrap().trim_start_matches('\n'));
        }
        n.push_str(&own_line);
        let res = verify_note(&n, keys);
        assert_eq!(res.is_ok(), ok, "{count} signatures: {res:?}");
        if !ok {
            assert_eq!(res.unwrap_err().code(), "too_many_signatures");
        }
    }
}

#[test]
fn key_text_rules() {
    let signer = NoteSigner::generate("example.com/log").unwrap();
    let vk = NoteVerifierKey::parse(&signer.verifier_key_text()).unwrap();
    assert_eq!(vk.to_text(), signer.verifier_key_text());
    let round = NoteSigner::from_private_key_text(&signer.private_key_text()).unwrap();
    assert_eq!(round.verifier_key_text(), signer.verifier_key_text());
    for bad_name in ["", "a b", "a+b", "a\u{a0}b"] {
        assert_eq!(
            NoteSigner::generate(bad_name).unwrap_err().code(),
            "invalid_key_name"
        );
    }
    let text = signer.verifier_key_text();
    let (name, rest) = text.split_once('+').unwrap();
    let (id, key) = rest.split_once('+').unwrap();
    let bad_id = format!(
        "{name}+{:08x}+{key}",
        u32::from_str_radix(id, 16).unwrap() ^ 1
    );
    assert_eq!(
        NoteVerifierKey::parse(&bad_id).unwrap_err().code(),
        "key_id_mismatch"
    );
    assert!(NoteVerifierKey::parse(&format!("{name}+{id}")).is_err());
    assert!(NoteVerifierKey::parse(&format!("{name}+0{id}+{key}")).is_err());
    assert!(NoteVerifierKey::parse(&format!("{name}+{id}+{key}=")).is_err());
    assert!(NoteSigner::from_private_key_text(&text).is_err());
    assert_eq!(
        NoteSigner::generate("x")
            .unwrap()
            .sign("no newline")
            .unwrap_err()
            .code(),
        "invalid_note_text"
    );
}
