//! Nitro verification against the real AWS documents in ../shared/nitro-samples.

mod common;

use attestlog::nitro::{
    AttestationDocument, NitroError, NitroVerifier, TrustRoots, VerifyTime,
    AWS_NITRO_ROOT_G1_SHA256,
};
use ciborium::Value;
use coset::{CborSerializable, CoseSign1};
use sha2::{Digest, Sha256};

const DAY: u64 = 86_400;

fn code<T>(r: &Result<T, NitroError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn embedded_aws_root_matches_published_hash() {
    use base64::Engine;
    let pem = include_str!("../src/nitro/aws-nitro-root-g1.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    assert_eq!(hex::encode(Sha256::digest(&der)), AWS_NITRO_ROOT_G1_SHA256);
    let roots = TrustRoots::aws();
    assert!(roots.contains(&der));
    assert_eq!(roots.len(), 1);
    if let Some(dir) = common::shared_dir() {
        let shared = std::fs::read(dir.join("nitro-samples/aws-nitro-root-g1.der")).unwrap();
        assert_eq!(shared, der);
    }
}

#[test]
fn valid_documents_verify_at_verify_at_and_document_timestamp() {
    let Some(samples) = common::samples() else {
        return;
    };
    let cached = NitroVerifier::new(TrustRoots::aws());
    let cold = NitroVerifier::without_cache(TrustRoots::aws());
    let mut count = 0;
    for s in samples.iter().filter(|s| s.valid()) {
        let at = s.u64("verify_at_unix");
        for v in [&cached, &cold] {
            let doc = v
                .verify(&s.bytes, VerifyTime::UnixSeconds(at))
                .unwrap_or_else(|e| panic!("{}: {e}", s.file));
            assert_eq!(doc, AttestationDocument::parse(&s.bytes).unwrap());
            v.verify(&s.bytes, VerifyTime::DocumentTimestamp)
                .unwrap_or_else(|e| panic!("{} at document timestamp: {e}", s.file));
        }
        count += 1;
    }
    assert_eq!(count, 14);
}

#[test]
fn valid_documents_fail_a_day_before_and_after() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    for s in samples.iter().filter(|s| s.valid()) {
        let at = s.u64("verify_at_unix");
        let before = v.verify(&s.bytes, VerifyTime::UnixSeconds(at - DAY));
        assert_eq!(code(&before), "certificate_not_yet_valid", "{}", s.file);
        let after = v.verify(&s.bytes, VerifyTime::UnixSeconds(at + DAY));
        assert_eq!(code(&after), "certificate_expired", "{}", s.file);
        // Edges of the leaf's window, as recorded in the manifest.
        let from = s.u64("chain_valid_from_unix");
        let until = s.u64("chain_valid_until_unix");
        assert_eq!(
            code(&v.verify(&s.bytes, VerifyTime::UnixSeconds(from))),
            "ok"
        );
        assert_eq!(
            code(&v.verify(&s.bytes, VerifyTime::UnixSeconds(until))),
            "ok"
        );
        let late = v.verify(&s.bytes, VerifyTime::UnixSeconds(until + 1));
        assert_eq!(code(&late), "certificate_expired", "{}", s.file);
        let early = v.verify(&s.bytes, VerifyTime::UnixSeconds(from - 1));
        assert_eq!(code(&early), "certificate_not_yet_valid", "{}", s.file);
    }
}

#[test]
fn mock_rooted_document_is_untrusted() {
    let Some(samples) = common::samples() else {
        return;
    };
    let mock = samples
        .iter()
        .find(|s| s.file == "oyster-mock-root.cbor")
        .expect("mock sample");
    assert!(!mock.valid());
    let at = VerifyTime::UnixSeconds(mock.u64("verify_at_unix"));
    for v in [
        NitroVerifier::new(TrustRoots::aws()),
        NitroVerifier::without_cache(TrustRoots::aws()),
    ] {
        assert_eq!(code(&v.verify(&mock.bytes, at)), "untrusted_root");
        assert_eq!(
            code(&v.verify(&mock.bytes, VerifyTime::DocumentTimestamp)),
            "untrusted_root"
        );
    }
    // It is internally consistent: trusting its own root (explicitly) makes it verify,
    // which shows the rejection above is the pinning and nothing else.
    let doc = AttestationDocument::parse(&mock.bytes).unwrap();
    let mut roots = TrustRoots::empty();
    roots.add_der(doc.cabundle[0].clone()).unwrap();
    assert_eq!(
        code(&NitroVerifier::new(roots).verify(&mock.bytes, at)),
        "ok"
    );
}

#[test]
fn parsed_fields_match_manifest() {
    let Some(samples) = common::samples() else {
        return;
    };
    for s in &samples {
        let doc =
            AttestationDocument::parse(&s.bytes).unwrap_or_else(|e| panic!("{}: {e}", s.file));
        assert_eq!(doc.digest, "SHA384");
        assert_eq!(doc.timestamp_ms, s.u64("timestamp_ms"), "{}", s.file);
        assert_eq!(doc.timestamp_unix(), s.u64("timestamp_ms") / 1000);
        for (i, key) in ["pcr0", "pcr1", "pcr2"].iter().enumerate() {
            let want = s.meta[*key].as_str().unwrap();
            assert_eq!(
                hex::encode(doc.pcr(i as u8).unwrap()),
                want,
                "{} {key}",
                s.file
            );
        }
        assert_eq!(
            doc.user_data.as_ref().map(Vec::len),
            s.opt_len("user_data_len"),
            "{}",
            s.file
        );
        assert_eq!(
            doc.nonce.as_ref().map(Vec::len),
            s.opt_len("nonce_len"),
            "{}",
            s.file
        );
        assert_eq!(
            doc.public_key.as_ref().map(Vec::len),
            s.opt_len("public_key_len"),
            "{}",
            s.file
        );
        // The manifest marks the mock document as debug although its PCR1/PCR2 are not zero;
        // the contract defines debug as PCR0..2 all zero, so only AWS documents are compared.
        if s.meta["aws_root"] == true {
            assert_eq!(doc.is_debug(), s.meta["debug_mode"] == true, "{}", s.file);
        }
        if s.meta["aws_root"] == true {
            assert_eq!(doc.cabundle.len(), 4, "{}", s.file);
        }
        let indefinite = s.meta["payload_map_indefinite"] == true;
        let sign1 = CoseSign1::from_slice(&s.bytes).unwrap();
        assert_eq!(sign1.payload.unwrap()[0] == 0xbf, indefinite, "{}", s.file);
    }
    assert!(samples
        .iter()
        .any(|s| s.meta["payload_map_indefinite"] == true));
}

/// Flips one bit and verifies at the document's own time (cached verifier).
fn flipped(
    v: &NitroVerifier,
    bytes: &[u8],
    pos: usize,
    bit: u8,
) -> Result<AttestationDocument, NitroError> {
    let mut b = bytes.to_vec();
    b[pos] ^= 1 << bit;
    v.verify(&b, VerifyTime::DocumentTimestamp)
}

#[test]
fn single_bit_flips_in_signature_and_payload_fail() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    for (n, s) in samples.iter().filter(|s| s.valid()).enumerate() {
        let len = s.bytes.len();
        // The signature is the last 96 bytes. Every bit for the first document,
        // one bit in every byte for the others.
        for pos in len - 96..len {
            let bits: Vec<u8> = if n == 0 {
                (0..8).collect()
            } else {
                vec![(pos % 8) as u8]
            };
            for bit in bits {
                assert_eq!(
                    code(&flipped(&v, &s.bytes, pos, bit)),
                    "cose_signature",
                    "{} sig byte {pos}",
                    s.file
                );
            }
        }
        // Anywhere in the envelope and payload: every 7th byte, rotating bits.
        for pos in (0..len - 96).step_by(7) {
            let r = flipped(&v, &s.bytes, pos, (pos % 8) as u8);
            assert!(r.is_err(), "{}: flip at {pos} accepted", s.file);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn single_bit_flips_in_certificates_fail_in_the_chain_checks() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    for s in samples.iter().filter(|s| s.valid()) {
        let doc = AttestationDocument::parse(&s.bytes).unwrap();
        let mut certs: Vec<(usize, &Vec<u8>)> = doc.cabundle.iter().enumerate().collect();
        certs.push((doc.cabundle.len(), &doc.certificate));
        for (position, der) in certs {
            let start = find(&s.bytes, der).expect("cert bytes in document");
            for off in (0..der.len()).step_by(13) {
                let r = flipped(&v, &s.bytes, start + off, (off % 8) as u8);
                let c = code(&r);
                if position == 0 {
                    assert_eq!(c, "untrusted_root", "{} root byte {off}", s.file);
                } else {
                    // Caught by the certificate checks, before the COSE signature.
                    assert!(
                        !matches!(c, "ok" | "cose_signature"),
                        "{} cert {position} byte {off}: {c}",
                        s.file
                    );
                }
            }
        }
    }
}

/// Re-encodes a document with its payload changed by `edit`, keeping the signature.
fn reencode(bytes: &[u8], edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let mut sign1 = CoseSign1::from_slice(bytes).unwrap();
    let mut value: Value = ciborium::from_reader(sign1.payload.as_deref().unwrap()).unwrap();
    let Value::Map(entries) = &mut value else {
        panic!("map")
    };
    edit(entries);
    let mut payload = Vec::new();
    ciborium::into_writer(&value, &mut payload).unwrap();
    sign1.payload = Some(payload);
    sign1.to_vec().unwrap()
}

fn cabundle_mut(entries: &mut [(Value, Value)]) -> &mut Vec<Value> {
    let (_, v) = entries
        .iter_mut()
        .find(|(k, _)| *k == Value::Text("cabundle".into()))
        .unwrap();
    match v {
        Value::Array(a) => a,
        _ => panic!("cabundle"),
    }
}

#[test]
fn replacing_the_root_with_another_self_signed_root_fails() {
    let Some(samples) = common::samples() else {
        return;
    };
    let mock = samples.iter().find(|s| !s.valid()).unwrap();
    let mock_root = AttestationDocument::parse(&mock.bytes).unwrap().cabundle[0].clone();
    let mut both = TrustRoots::aws();
    both.add_der(mock_root.clone()).unwrap();
    let aws_only = NitroVerifier::new(TrustRoots::aws());
    let trusting_both = NitroVerifier::new(both);
    for s in samples.iter().filter(|s| s.valid()) {
        let forged = reencode(&s.bytes, |m| {
            cabundle_mut(m)[0] = Value::Bytes(mock_root.clone())
        });
        let at = VerifyTime::DocumentTimestamp;
        assert_eq!(
            code(&aws_only.verify(&forged, at)),
            "untrusted_root",
            "{}",
            s.file
        );
        let c = code(&trusting_both.verify(&forged, at));
        assert!(
            matches!(c, "chain_signature" | "issuer_mismatch"),
            "{}: {c}",
            s.file
        );
    }
}

#[test]
fn unsupported_algorithm_and_tagged_envelope() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    let s = samples.iter().find(|s| s.valid()).unwrap();
    assert_eq!(&s.bytes[..6], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22]);
    // Tag 18 is not signed: a tagged copy is a second encoding (see nitro_encoding.rs).
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&s.bytes);
    assert_eq!(
        code(&v.verify(&tagged, VerifyTime::DocumentTimestamp)),
        "tagged_envelope"
    );
    // Protected header {1: -36} (ES512) with the same length.
    let mut es512 = s.bytes.clone();
    es512[5] = 0x23;
    assert_eq!(
        code(&AttestationDocument::parse(&es512)),
        "unsupported_algorithm"
    );
    let mut trailing = s.bytes.clone();
    trailing.push(0);
    assert_eq!(
        code(&AttestationDocument::parse(&trailing)),
        "malformed_cose"
    );
}

#[test]
fn chain_cache_gives_identical_verdicts() {
    let Some(samples) = common::samples() else {
        return;
    };
    let cached = NitroVerifier::new(TrustRoots::aws());
    let cold = NitroVerifier::without_cache(TrustRoots::aws());
    for round in 0..2 {
        for s in &samples {
            let at = s.u64("verify_at_unix");
            let from = s.u64("chain_valid_from_unix");
            let until = s.u64("chain_valid_until_unix");
            let times = [
                VerifyTime::UnixSeconds(at),
                VerifyTime::DocumentTimestamp,
                VerifyTime::UnixSeconds(at - DAY),
                VerifyTime::UnixSeconds(at + DAY),
                VerifyTime::UnixSeconds(from - 1),
                VerifyTime::UnixSeconds(until + 1),
                VerifyTime::UnixSeconds(0),
                VerifyTime::UnixSeconds(u64::MAX),
                VerifyTime::UnixSeconds(at + 40 * 365 * DAY),
            ];
            for t in times {
                let a = cached.verify(&s.bytes, t);
                let b = cold.verify(&s.bytes, t);
                assert_eq!(a, b, "{} round {round} at {t:?}", s.file);
            }
        }
    }
    // One distinct cabundle per AWS document (the mock root is rejected before caching).
    assert!(cached.cached_chains() >= 1);
    assert_eq!(cold.cached_chains(), 0);
}

#[test]
fn parse_never_panics_on_truncated_prefixes() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    for s in &samples {
        for n in 0..s.bytes.len() {
            assert!(AttestationDocument::parse(&s.bytes[..n]).is_err());
            if n % 97 == 0 {
                assert!(v
                    .verify(&s.bytes[..n], VerifyTime::DocumentTimestamp)
                    .is_err());
            }
        }
    }
}

#[test]
fn trust_roots_reject_non_roots() {
    let Some(samples) = common::samples() else {
        return;
    };
    let doc = AttestationDocument::parse(&samples[0].bytes).unwrap();
    let mut roots = TrustRoots::empty();
    assert_eq!(
        code(&roots.add_der(doc.cabundle[1].clone())),
        "invalid_root"
    );
    assert_eq!(
        code(&roots.add_der(doc.certificate.clone())),
        "invalid_root"
    );
    assert_eq!(code(&roots.add_der(vec![1, 2, 3])), "invalid_root");
    assert!(roots.is_empty());
    let pem = include_str!("../src/nitro/aws-nitro-root-g1.pem");
    roots.add_pem(&format!("{pem}{pem}")).unwrap();
    assert_eq!(roots.len(), 1);
    assert!(roots.contains(&doc.cabundle[0]));
    let v = NitroVerifier::new(TrustRoots::empty());
    assert_eq!(
        code(&v.verify(&samples[0].bytes, VerifyTime::DocumentTimestamp)),
        "untrusted_root"
    );
}
