//! Statements and entries: the canonical encoding, the framing and the
//! binding between the statement and the attestation.

mod fixtures;

use attestlog::claim::{canonical_json, verify_entry, Entry, Statement, MAX_ENTRY_SIZE};
use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use attestlog::nitro::{NitroVerifier, TrustRoots};
use fixtures::*;
use proptest::prelude::*;

#[test]
fn statement_round_trips_canonically() {
    let (statement, bytes) = statement(b"artifact", &commit(3));
    assert_eq!(Statement::parse(&bytes).expect("parse"), statement);
    assert_eq!(statement.subjects[0].sha256, sha256(b"artifact"));
    assert_eq!(statement.source.git_commit, commit(3));
    assert_eq!(canonical_json(&statement.json).expect("canonical"), bytes);
    // Keys are sorted and there is no white space.
    let text = String::from_utf8(bytes).expect("utf8");
    assert!(text.starts_with("{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicate\":"));
    assert!(!text.contains(' ') || text.contains("\" \""));
}

#[test]
fn non_canonical_or_incomplete_statements_are_refused() {
    let (statement, bytes) = statement(b"artifact", &commit(0xab));
    let pretty = serde_json::to_vec_pretty(&statement.json).expect("pretty");
    assert_eq!(
        Statement::parse(&pretty).unwrap_err().code(),
        "bad_statement"
    );
    let text = String::from_utf8(bytes).expect("utf8");
    for (from, to) in [
        (
            "https://in-toto.io/Statement/v1",
            "https://in-toto.io/Statement/v0.1",
        ),
        (
            "https://slsa.dev/provenance/v1",
            "https://slsa.dev/provenance/v0.2",
        ),
        (&commit(0xab)[..], &commit(0xab)[..12]),
        (&commit(0xab)[..], &commit(0xab).to_uppercase()[..]),
        ("\"gitCommit\"", "\"sha1\""),
        ("\"name\":\"hello\"", "\"name\":\"\""),
        ("https://attestlog.test/builder", ""),
    ] {
        let bad = text.replacen(from, to, 1);
        assert!(
            Statement::parse(bad.as_bytes()).is_err(),
            "accepted {from} -> {to}"
        );
    }
    // Duplicate keys re-encode differently and are refused.
    let dup = text.replacen("{\"_type\":", "{\"_type\":\"x\",\"_type\":", 1);
    assert!(Statement::parse(dup.as_bytes()).is_err());
    // Floats have no unique text form.
    let float = text.replacen(
        "\"internalParameters\":{}",
        "\"internalParameters\":{\"x\":1.5}",
        1,
    );
    assert!(Statement::parse(float.as_bytes()).is_err());
}

#[test]
fn entry_framing_is_exact() {
    let entry = Entry::encode(b"{}", b"doc").expect("encode");
    assert_eq!(entry, b"ATL\x01\x00\x02{}\x00\x03doc");
    assert_eq!(Entry::decode(&entry).expect("decode").attestation, b"doc");
    let mut trailing = entry.clone();
    trailing.push(0);
    for bad in [
        &entry[..entry.len() - 1],
        &trailing[..],
        b"ATL\x02\x00\x02{}\x00\x03doc",
        b"ATL\x01\x00\x00\x00\x03doc",
        b"",
    ] {
        assert_eq!(
            Entry::decode(bad).unwrap_err().code(),
            "bad_entry_encoding",
            "{bad:?}"
        );
    }
    let big = vec![b'x'; MAX_ENTRY_SIZE];
    assert_eq!(
        Entry::encode(&big, b"doc").unwrap_err().code(),
        "entry_too_large"
    );
    assert_eq!(
        Entry::decode(&vec![0; MAX_ENTRY_SIZE + 1])
            .unwrap_err()
            .code(),
        "entry_too_large"
    );
}

#[test]
fn verify_entry_checks_the_binding() {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let verifier = NitroVerifier::new(nsm.trust_roots());
    let good = entry(&nsm, b"artifact", &commit(1), &pcrs(1));
    let claim = verify_entry(&good, &verifier).expect("valid entry");
    assert_eq!(claim.statement.source.git_commit, commit(1));
    assert_eq!(claim.document.pcr(0), Some(&pcrs(1)[&0][..]));

    // The same attestation paired with another statement.
    let (_, other) = statement(b"artifact", &commit(2));
    let parts = Entry::decode(&good).expect("decode");
    let swapped = Entry::encode(&other, parts.attestation).expect("encode");
    assert_eq!(
        verify_entry(&swapped, &verifier).unwrap_err().code(),
        "user_data_mismatch"
    );

    // An attestation with no user_data at all.
    let doc = nsm
        .attest(
            &AttestationRequest {
                user_data: None,
                nonce: None,
                public_key: None,
            },
            &pcrs(1),
            NOW_MS,
        )
        .expect("attest");
    let bare = Entry::encode(parts.statement, &doc).expect("encode");
    assert_eq!(
        verify_entry(&bare, &verifier).unwrap_err().code(),
        "user_data_mismatch"
    );

    // The simulated root is not AWS's.
    let aws = NitroVerifier::new(TrustRoots::aws());
    assert_eq!(
        verify_entry(&good, &aws).unwrap_err().code(),
        "untrusted_root"
    );
}

proptest! {
    #[test]
    fn entry_and_statement_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(entry) = Entry::decode(&bytes) {
            prop_assert_eq!(Entry::encode(entry.statement, entry.attestation).ok(), Some(bytes.clone()));
        }
        let _ = Statement::parse(&bytes);
    }
}
