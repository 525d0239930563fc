//! The simulated NSM: round trips, structure, persistence and leaf lifetime.
#![cfg(feature = "sim-nsm")]

use std::collections::BTreeMap;

use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use attestlog::nitro::{AttestationDocument, NitroError, NitroVerifier, TrustRoots, VerifyTime};
use ciborium::Value;
use coset::{CborSerializable, CoseSign1};

const NOW: u64 = 1_767_472_867; // 2026-01-03
const TS_MS: u64 = (NOW + 600) * 1000 + 123;

fn code<T>(r: &Result<T, NitroError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn pcrs(fill: u8) -> BTreeMap<u8, Vec<u8>> {
    (0u8..16)
        .map(|i| (i, vec![fill.wrapping_add(i); 48]))
        .collect()
}

fn request() -> AttestationRequest {
    AttestationRequest {
        user_data: Some(b"build-digest".to_vec()),
        nonce: Some(vec![7; 32]),
        public_key: Some(vec![4; 97]),
    }
}

#[test]
fn round_trip_fields_equal_the_request() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let want = pcrs(1);
    let bytes = nsm.attest(&request(), &want, TS_MS).unwrap();
    for v in [
        NitroVerifier::new(nsm.trust_roots()),
        NitroVerifier::without_cache(nsm.trust_roots()),
    ] {
        let doc = v.verify(&bytes, VerifyTime::DocumentTimestamp).unwrap();
        assert_eq!(doc.timestamp_ms, TS_MS);
        assert_eq!(doc.pcrs, want);
        assert_eq!(doc.user_data.as_deref(), Some(&b"build-digest"[..]));
        assert_eq!(doc.nonce, Some(vec![7; 32]));
        assert_eq!(doc.public_key, Some(vec![4; 97]));
        assert_eq!(doc.cabundle.len(), 4);
        assert_eq!(doc.cabundle[0], nsm.root_der());
        assert_eq!(doc.module_id, nsm.module_id());
        assert!(!doc.is_debug());
        v.verify(&bytes, VerifyTime::UnixSeconds(NOW + 3600))
            .unwrap();
    }
    // Absent optional fields come back as None.
    let bare = nsm
        .attest(&AttestationRequest::default(), &want, TS_MS)
        .unwrap();
    let doc = NitroVerifier::new(nsm.trust_roots())
        .verify(&bare, VerifyTime::DocumentTimestamp)
        .unwrap();
    assert_eq!(
        (doc.user_data, doc.nonce, doc.public_key),
        (None, None, None)
    );
}

#[test]
fn structure_matches_aws() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let bytes = nsm.attest(&request(), &pcrs(1), TS_MS).unwrap();
    assert_eq!(&bytes[..7], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0]);
    let sign1 = CoseSign1::from_slice(&bytes).unwrap();
    assert_eq!(sign1.signature.len(), 96);
    let payload: Value = ciborium::from_reader(sign1.payload.as_deref().unwrap()).unwrap();
    let Value::Map(entries) = payload else {
        panic!("map")
    };
    let keys: Vec<_> = entries
        .iter()
        .map(|(k, _)| k.as_text().unwrap().to_string())
        .collect();
    let aws = [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
        "public_key",
        "user_data",
        "nonce",
    ];
    assert_eq!(keys, aws);
    // A tagged copy is a second encoding of the same attestation: refused.
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&bytes);
    let v = NitroVerifier::new(nsm.trust_roots());
    assert_eq!(code(&v.verify(&bytes, VerifyTime::DocumentTimestamp)), "ok");
    assert_eq!(
        code(&v.verify(&tagged, VerifyTime::DocumentTimestamp)),
        "tagged_envelope"
    );
}

/// The `field` of an `invalid_field` error, from both parse and verify (which must agree).
fn invalid_field(v: &NitroVerifier, bytes: &[u8]) -> Option<&'static str> {
    let parsed = AttestationDocument::parse(bytes).err();
    let verified = v.verify(bytes, VerifyTime::DocumentTimestamp).err();
    assert_eq!(parsed, verified);
    match parsed {
        Some(NitroError::InvalidField { field, .. }) => Some(field),
        None => None,
        Some(other) => panic!("expected invalid_field, got {other}"),
    }
}

#[test]
fn signed_documents_breaking_aws_field_rules_are_refused() {
    // Each document is correctly signed by the simulated NSM; only the field breaks
    // a rule of AWS's attestation_process.md 3.2.2.2.
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let with = |user_data: Option<Vec<u8>>, nonce: Option<Vec<u8>>, public_key: Option<Vec<u8>>| {
        let req = AttestationRequest {
            user_data,
            nonce,
            public_key,
        };
        nsm.attest(&req, &pcrs(1), TS_MS).unwrap()
    };
    let over = vec![1u8; 1025];
    let max = vec![1u8; 1024];
    // timestamp 0
    let zero_time = nsm.attest(&request(), &pcrs(1), 0).unwrap();
    assert_eq!(invalid_field(&v, &zero_time), Some("timestamp"));
    // empty public_key (1..=1024 bytes when present)
    assert_eq!(
        invalid_field(&v, &with(None, None, Some(vec![]))),
        Some("public_key")
    );
    // over AWS's 1024-byte limits
    assert_eq!(
        invalid_field(&v, &with(Some(over.clone()), None, None)),
        Some("user_data")
    );
    assert_eq!(
        invalid_field(&v, &with(None, Some(over.clone()), None)),
        Some("nonce")
    );
    assert_eq!(
        invalid_field(&v, &with(None, None, Some(over))),
        Some("public_key")
    );
    // At the limits, and the empty user_data and nonce AWS allows (a real document
    // carries an empty user_data), all verify.
    for ok in [
        with(Some(max.clone()), Some(max.clone()), Some(max)),
        with(Some(vec![]), Some(vec![]), Some(vec![1])),
    ] {
        assert_eq!(invalid_field(&v, &ok), None);
    }
    // The smallest timestamp AWS allows parses (its chain is not valid in 1970).
    let one_ms = nsm.attest(&request(), &pcrs(1), 1).unwrap();
    assert_eq!(AttestationDocument::parse(&one_ms).unwrap().timestamp_ms, 1);
    // PCR rules: 1..=32 registers, index 0..=31.
    let bad_index: BTreeMap<u8, Vec<u8>> = [(32u8, vec![0; 48])].into();
    let doc = nsm.attest(&request(), &bad_index, TS_MS).unwrap();
    assert_eq!(invalid_field(&v, &doc), Some("pcrs"));
    let all: BTreeMap<u8, Vec<u8>> = (0u8..32).map(|i| (i, vec![i; 48])).collect();
    let doc = nsm.attest(&request(), &all, TS_MS).unwrap();
    assert_eq!(invalid_field(&v, &doc), None);
}

#[test]
fn fails_under_aws_roots() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let bytes = nsm.attest(&request(), &pcrs(1), TS_MS).unwrap();
    for v in [
        NitroVerifier::new(TrustRoots::aws()),
        NitroVerifier::without_cache(TrustRoots::aws()),
    ] {
        assert_eq!(
            code(&v.verify(&bytes, VerifyTime::DocumentTimestamp)),
            "untrusted_root"
        );
    }
    // Another simulator's root does not help either.
    let other = SimulatedNsm::generate(NOW).unwrap();
    let v = NitroVerifier::new(other.trust_roots());
    assert_eq!(
        code(&v.verify(&bytes, VerifyTime::DocumentTimestamp)),
        "untrusted_root"
    );
    // Trusting via PEM works like trusting via DER.
    let mut roots = TrustRoots::empty();
    roots.add_pem(&nsm.root_pem()).unwrap();
    assert!(roots.contains(nsm.root_der()));
    let v = NitroVerifier::new(roots);
    assert_eq!(code(&v.verify(&bytes, VerifyTime::DocumentTimestamp)), "ok");
}

#[test]
fn save_load_round_trip_with_private_key_modes() {
    use std::os::unix::fs::PermissionsExt;
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let dir = tempfile::tempdir().unwrap();
    nsm.save(dir.path()).unwrap();
    // Saving twice (over existing files) keeps working and keeps modes.
    nsm.save(dir.path()).unwrap();
    let mut keys = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if name.ends_with(".key.pem") {
            assert_eq!(mode, 0o600, "{name}");
            keys += 1;
        }
    }
    assert_eq!(keys, 4);
    let root_mode = std::fs::metadata(dir.path().join("root.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(root_mode & 0o044, 0o044, "root.pem must be readable by all");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("root.pem")).unwrap(),
        nsm.root_pem()
    );

    let loaded = SimulatedNsm::load(dir.path()).unwrap();
    assert_eq!(loaded.root_der(), nsm.root_der());
    assert_eq!(loaded.module_id(), nsm.module_id());
    let bytes = loaded.attest(&request(), &pcrs(3), TS_MS).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let doc = v.verify(&bytes, VerifyTime::DocumentTimestamp).unwrap();
    assert_eq!(doc.pcrs, pcrs(3));
    // A document from the original and one from the loaded copy share the CA chain.
    let orig = nsm.attest(&request(), &pcrs(3), TS_MS).unwrap();
    let orig_doc = AttestationDocument::parse(&orig).unwrap();
    assert_eq!(orig_doc.cabundle, doc.cabundle);

    // A key that does not match its certificate is refused.
    let other = SimulatedNsm::generate(NOW).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    other.save(dir2.path()).unwrap();
    std::fs::copy(
        dir2.path().join("instance.key.pem"),
        dir.path().join("instance.key.pem"),
    )
    .unwrap();
    let err = SimulatedNsm::load(dir.path())
        .err()
        .expect("mismatched key");
    assert_eq!(err.code(), "invalid_state");
    assert_eq!(
        SimulatedNsm::load(&dir.path().join("missing"))
            .err()
            .unwrap()
            .code(),
        "io"
    );
}

#[test]
fn leaf_is_valid_for_three_hours() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let bytes = nsm.attest(&request(), &pcrs(1), TS_MS).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let ts = TS_MS / 1000;
    let at = |t| code(&v.verify(&bytes, VerifyTime::UnixSeconds(t)));
    assert_eq!(at(ts), "ok");
    assert_eq!(at(ts + 3 * 3600 - 60), "ok");
    assert_eq!(at(ts + 3 * 3600), "ok");
    assert_eq!(at(ts + 3 * 3600 + 60), "certificate_expired");
    assert_eq!(at(ts - 60), "certificate_not_yet_valid");
    // The document's own time keeps verifying long after the leaf expired.
    assert_eq!(code(&v.verify(&bytes, VerifyTime::DocumentTimestamp)), "ok");
    // Beyond the instance CA (90 days) the chain is expired too.
    assert_eq!(at(NOW + 100 * 86_400), "certificate_expired");
}

#[test]
fn leaf_is_reused_while_valid_and_cached_verdicts_match() {
    let nsm = SimulatedNsm::generate(NOW).expect("generate");
    let cached = NitroVerifier::new(nsm.trust_roots());
    let uncached = NitroVerifier::without_cache(nsm.trust_roots());
    let first = nsm.attest(&request(), &pcrs(1), TS_MS).expect("attest");
    let later = nsm
        .attest(&request(), &pcrs(2), TS_MS + 3_600_000)
        .expect("attest");
    let next_day = nsm
        .attest(&request(), &pcrs(3), TS_MS + 86_400_000)
        .expect("attest");
    let leaf = |doc: &[u8]| AttestationDocument::parse(doc).expect("parse").certificate;
    // Like a real NSM: one leaf for documents within its 3 hours, a new one after.
    assert_eq!(leaf(&first), leaf(&later));
    assert_ne!(leaf(&first), leaf(&next_day));
    // The leaf cache never changes a verdict, whatever the order and time.
    let ts = TS_MS / 1000;
    for (doc, at) in [
        (&first, ts),
        (&later, ts + 3600),
        (&first, ts + 3 * 3600 + 60),
        (&later, ts - 60),
        (&next_day, ts + 86_400),
        (&first, ts + 86_400),
    ] {
        let at = VerifyTime::UnixSeconds(at);
        assert_eq!(
            code(&cached.verify(doc, at)),
            code(&uncached.verify(doc, at))
        );
    }
    assert_eq!(
        code(&cached.verify(&first, VerifyTime::UnixSeconds(ts + 3 * 3600 + 60))),
        "certificate_expired"
    );
}

#[test]
fn debug_mode_is_detected_from_zero_pcrs() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let zero: BTreeMap<u8, Vec<u8>> = (0u8..16).map(|i| (i, vec![0; 48])).collect();
    let doc = v
        .verify(
            &nsm.attest(&request(), &zero, TS_MS).unwrap(),
            VerifyTime::DocumentTimestamp,
        )
        .unwrap();
    assert!(doc.is_debug());
    // Only PCR0..2 matter; a non-zero PCR2 is not debug, nor is a missing PCR1.
    let mut partial = zero.clone();
    partial.insert(2, vec![1; 48]);
    let doc =
        AttestationDocument::parse(&nsm.attest(&request(), &partial, TS_MS).unwrap()).unwrap();
    assert!(!doc.is_debug());
    let mut missing = zero;
    missing.remove(&1);
    let doc =
        AttestationDocument::parse(&nsm.attest(&request(), &missing, TS_MS).unwrap()).unwrap();
    assert!(!doc.is_debug());
}

#[test]
fn sim_documents_with_every_signature_bit_flipped_fail() {
    let nsm = SimulatedNsm::generate(NOW).unwrap();
    let bytes = nsm.attest(&request(), &pcrs(1), TS_MS).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let len = bytes.len();
    for pos in len - 96..len {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            assert_eq!(
                code(&v.verify(&b, VerifyTime::DocumentTimestamp)),
                "cose_signature"
            );
        }
    }
}
