//! Certificate-rule checks on chains built with rcgen (feature `sim-nsm` brings rcgen):
//! each test breaks exactly one rule of AWS's process and expects that rule's error,
//! from both the cached and the uncached verifier.
#![cfg(feature = "sim-nsm")]

use attestlog::nitro::{
    CoseParts, NitroError, NitroVerifier, TrustRoots, VerifyTime, NSM_PROTECTED_HEADER,
};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use ciborium::Value;
use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use time::OffsetDateTime;

const TS: i64 = 1_767_472_867;
const YEAR: i64 = 365 * 86_400;

#[derive(Clone)]
struct CertSpec {
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    window: (i64, i64),
    p256: bool,
    wrong_issuer_key: bool,
    /// Some((critical, DER)): basicConstraints written by hand instead of from `is_ca`.
    raw_bc: Option<(bool, Vec<u8>)>,
    /// Bytes of an extra non-critical private extension, to grow the certificate.
    pad: usize,
}

fn ca(path_len: Option<u8>) -> CertSpec {
    CertSpec {
        is_ca: IsCa::Ca(path_len.map_or(
            BasicConstraints::Unconstrained,
            BasicConstraints::Constrained,
        )),
        key_usages: vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ],
        window: (TS - YEAR, TS + YEAR),
        p256: false,
        wrong_issuer_key: false,
        raw_bc: None,
        pad: 0,
    }
}

fn leaf() -> CertSpec {
    CertSpec {
        is_ca: IsCa::ExplicitNoCa,
        key_usages: vec![KeyUsagePurpose::DigitalSignature],
        window: (TS - 10, TS + 3 * 3600),
        ..ca(None)
    }
}

/// root, regional (2), zonal (1), instance (0), leaf: AWS's shape.
fn aws_shape() -> Vec<CertSpec> {
    vec![ca(None), ca(Some(2)), ca(Some(1)), ca(Some(0)), leaf()]
}

struct Built {
    ders: Vec<Vec<u8>>,
    leaf_key: KeyPair,
}

fn build(specs: &[CertSpec]) -> Built {
    let mut ders = Vec::new();
    let mut prev: Option<(CertificateParams, KeyPair)> = None;
    let mut last_key = None;
    for (i, spec) in specs.iter().enumerate() {
        let alg = if spec.p256 {
            &PKCS_ECDSA_P256_SHA256
        } else {
            &PKCS_ECDSA_P384_SHA384
        };
        let key = KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, format!("cert {i}"));
        p.is_ca = spec.is_ca;
        if let Some((critical, content)) = &spec.raw_bc {
            // rcgen always marks basicConstraints critical: write it by hand instead.
            p.is_ca = IsCa::NoCa;
            let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 19], content.clone());
            ext.set_criticality(*critical);
            p.custom_extensions.push(ext);
        }
        if spec.pad > 0 {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![0; spec.pad]);
            ext.set_criticality(false);
            p.custom_extensions.push(ext);
        }
        p.key_usages = spec.key_usages.clone();
        p.not_before = OffsetDateTime::from_unix_timestamp(spec.window.0).unwrap();
        p.not_after = OffsetDateTime::from_unix_timestamp(spec.window.1).unwrap();
        let cert = match &prev {
            None => p.self_signed(&key).unwrap(),
            Some((ip, ik)) => {
                let wrong = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
                let signer = if spec.wrong_issuer_key { &wrong } else { ik };
                p.signed_by(&key, &Issuer::from_params(ip, signer)).unwrap()
            }
        };
        ders.push(cert.der().to_vec());
        if i + 1 == specs.len() {
            last_key = Some(key);
        } else {
            prev = Some((p, key));
        }
    }
    Built {
        ders,
        leaf_key: last_key.unwrap(),
    }
}

/// A document with `cabundle`, `leaf`, the payload map entries `extra` and the protected
/// header bytes `protected`, in the NSM's envelope encoding, COSE-signed by `signer`.
fn document_with(
    cabundle: &[Vec<u8>],
    leaf: &[u8],
    signer: &KeyPair,
    extra: Vec<(Value, Value)>,
    protected: &[u8],
) -> Vec<u8> {
    let pcrs = (0u8..3)
        .map(|i| (Value::Integer(i.into()), Value::Bytes(vec![i; 48])))
        .collect();
    let text = |s: &str| Value::Text(s.into());
    let mut map = vec![
        (text("module_id"), text("i-test-enc0")),
        (text("digest"), text("SHA384")),
        (
            text("timestamp"),
            Value::Integer(((TS as u64) * 1000).into()),
        ),
        (text("pcrs"), Value::Map(pcrs)),
        (text("certificate"), Value::Bytes(leaf.to_vec())),
        (
            text("cabundle"),
            Value::Array(cabundle.iter().cloned().map(Value::Bytes).collect()),
        ),
    ];
    map.extend(extra);
    let mut payload = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut payload).unwrap();
    let mut parts = CoseParts {
        protected: protected.to_vec(),
        payload,
        signature: Vec::new(),
    };
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, signer.serialized_der())
        .unwrap();
    parts.signature = pair
        .sign(&SystemRandom::new(), &parts.to_be_signed().unwrap())
        .unwrap()
        .as_ref()
        .to_vec();
    parts.encode().unwrap()
}

/// A document with `cabundle` and `leaf`, COSE-signed by `signer`.
fn document(cabundle: &[Vec<u8>], leaf: &[u8], signer: &KeyPair) -> Vec<u8> {
    let pcrs = (0u8..3)
        .map(|i| (Value::Integer(i.into()), Value::Bytes(vec![i; 48])))
        .collect();
    let text = |s: &str| Value::Text(s.into());
    let map = Value::Map(vec![
        (text("module_id"), text("i-test-enc0")),
        (text("digest"), text("SHA384")),
        (
            text("timestamp"),
            Value::Integer(((TS as u64) * 1000).into()),
        ),
        (text("pcrs"), Value::Map(pcrs)),
        (text("certificate"), Value::Bytes(leaf.to_vec())),
        (
            text("cabundle"),
            Value::Array(cabundle.iter().cloned().map(Value::Bytes).collect()),
        ),
        (text("public_key"), Value::Null),
        (text("user_data"), Value::Null),
        (text("nonce"), Value::Null),
    ]);
    let mut payload = Vec::new();
    ciborium::into_writer(&map, &mut payload).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, signer.serialized_der())
        .unwrap();
    CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .build(),
        )
        .payload(payload)
        .create_signature(b"", |tbs| {
            pair.sign(&SystemRandom::new(), tbs)
                .unwrap()
                .as_ref()
                .to_vec()
        })
        .build()
        .to_vec()
        .unwrap()
}

/// Verifies with both verifiers (twice for the cached one) and returns the common result.
fn verdict(built: &Built, bundle: &[Vec<u8>], signer: &KeyPair) -> Result<(), NitroError> {
    let doc = document(bundle, built.ders.last().unwrap(), signer);
    let mut roots = TrustRoots::empty();
    roots.add_der(built.ders[0].clone()).unwrap();
    let cold = NitroVerifier::without_cache(roots.clone());
    let cached = NitroVerifier::new(roots);
    let at = VerifyTime::DocumentTimestamp;
    let a = cold.verify(&doc, at).map(|_| ());
    let b = cached.verify(&doc, at).map(|_| ());
    let c = cached.verify(&doc, at).map(|_| ());
    assert_eq!(a, b);
    assert_eq!(a, c);
    a
}

fn check(specs: &[CertSpec]) -> Result<(), NitroError> {
    let built = build(specs);
    let n = built.ders.len();
    verdict(&built, &built.ders[..n - 1], &built.leaf_key)
}

#[test]
fn aws_shaped_chain_verifies() {
    assert_eq!(check(&aws_shape()), Ok(()));
    // A leaf without any basicConstraints extension is fine too.
    let mut s = aws_shape();
    s[4].is_ca = IsCa::NoCa;
    assert_eq!(check(&s), Ok(()));
}

#[test]
fn path_len_is_enforced() {
    // Another CA below the instance CA: the regional CA (pathLen 2, now 3 CAs below)
    // is the first to object.
    let mut s = aws_shape();
    s.insert(4, ca(None));
    assert_eq!(check(&s), Err(NitroError::PathLen(1)));
    // With unconstrained regional and zonal CAs, the instance CA (pathLen 0) objects.
    s[1] = ca(None);
    s[2] = ca(None);
    assert_eq!(check(&s), Err(NitroError::PathLen(3)));
    let mut s = aws_shape();
    s[1] = ca(Some(1)); // regional allows 1 CA below, has 2
    assert_eq!(check(&s), Err(NitroError::PathLen(1)));
}

#[test]
fn basic_constraints_are_enforced() {
    let mut s = aws_shape();
    s[2].is_ca = IsCa::NoCa; // zonal without basicConstraints
    assert_eq!(check(&s), Err(NitroError::BasicConstraints(2)));
    let mut s = aws_shape();
    s[3].is_ca = IsCa::ExplicitNoCa; // instance with CA:false
    assert_eq!(check(&s), Err(NitroError::BasicConstraints(3)));
    let mut s = aws_shape();
    s[4].is_ca = IsCa::Ca(BasicConstraints::Constrained(0)); // leaf claims CA
    assert_eq!(check(&s), Err(NitroError::BasicConstraints(4)));
}

#[test]
fn ca_basic_constraints_must_be_critical() {
    // attestation_process.md 3.2.3.2: basicConstraints "must appear as a critical
    // extension in all CA certificates".
    // DER of BasicConstraints { cA TRUE [, pathLenConstraint n] }.
    let ca_true = |path_len: Option<u8>| match path_len {
        None => vec![0x30, 0x03, 0x01, 0x01, 0xff],
        Some(n) => vec![0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, n],
    };
    let path_lens = [None, Some(2), Some(1), Some(0)];
    for (i, path_len) in path_lens.into_iter().enumerate() {
        // Written by hand and critical, as rcgen writes it: verifies.
        let mut s = aws_shape();
        s[i].raw_bc = Some((true, ca_true(path_len)));
        assert_eq!(check(&s), Ok(()), "cert {i}");
        // The same extension, not critical: refused.
        s[i].raw_bc = Some((false, ca_true(path_len)));
        assert_eq!(check(&s), Err(NitroError::BasicConstraints(i)), "cert {i}");
    }
}

#[test]
fn ca_without_key_usage_is_refused() {
    // Every CA must have keyCertSign, so a CA without a keyUsage extension fails.
    for i in 0..4 {
        let mut s = aws_shape();
        s[i].key_usages = vec![];
        assert_eq!(check(&s), Err(NitroError::KeyUsage(i)), "cert {i}");
    }
}

#[test]
fn leaf_with_path_len_is_refused() {
    // "pathLenConstraint must be undefined" for the target certificate; rcgen only
    // writes one with CA:true, so write CA:false with pathLen 0 by hand.
    let mut s = aws_shape();
    s[4].raw_bc = Some((false, vec![0x30, 0x03, 0x02, 0x01, 0x00])); // cA FALSE, pathLen 0
    let built = build(&s);
    let r = verdict(&built, &built.ders[..4], &built.leaf_key);
    assert_eq!(r, Err(NitroError::BasicConstraints(4)));
}

/// The `field` of the error for a document over `bundle`, leaf and signer of `built`.
fn refused_field(built: &Built, bundle: &[Vec<u8>]) -> Option<&'static str> {
    match verdict(built, bundle, &built.leaf_key) {
        Err(NitroError::InvalidField { field, .. }) => Some(field),
        Ok(()) => None,
        Err(e) => panic!("expected invalid_field, got {e}"),
    }
}

#[test]
fn certificates_over_1024_bytes_are_refused() {
    // cert = bytes .size (1..1024) for the leaf and every cabundle entry.
    let mut s = aws_shape();
    s[4].pad = 1024;
    let built = build(&s);
    assert!(built.ders[4].len() > 1024);
    assert_eq!(refused_field(&built, &built.ders[..4]), Some("certificate"));
    let mut s = aws_shape();
    s[3].pad = 1024;
    let built = build(&s);
    assert_eq!(refused_field(&built, &built.ders[..4]), Some("cabundle"));
    // Padded to just under the limit, the same chains verify.
    let mut s = aws_shape();
    s[3].pad = 200;
    s[4].pad = 200;
    let built = build(&s);
    assert!(built.ders[3].len() <= 1024 && built.ders[4].len() <= 1024);
    assert_eq!(refused_field(&built, &built.ders[..4]), None);
}

#[test]
fn envelope_rules_hold_for_correctly_signed_documents() {
    let built = build(&aws_shape());
    let mut roots = TrustRoots::empty();
    roots.add_der(built.ders[0].clone()).unwrap();
    let v = NitroVerifier::without_cache(roots);
    let at = VerifyTime::DocumentTimestamp;
    let (bundle, leaf) = (&built.ders[..4], &built.ders[4]);
    let doc = |extra: Vec<(Value, Value)>, protected: &[u8]| {
        document_with(bundle, leaf, &built.leaf_key, extra, protected)
    };
    let ok = doc(vec![], &NSM_PROTECTED_HEADER);
    assert_eq!(v.verify(&ok, at).map(|_| ()), Ok(()));
    // The ES384 header signed in a non-minimal encoding (key 1 as 18 01): the signature
    // holds, but it is not the NSM's encoding.
    let long_key = doc(vec![], &[0xa1, 0x18, 0x01, 0x38, 0x22]);
    assert_eq!(
        v.verify(&long_key, at).map(|_| ()),
        Err(NitroError::NoncanonicalEncoding)
    );
    // Another algorithm in the protected header.
    let es512 = doc(vec![], &[0xa1, 0x01, 0x38, 0x23]);
    assert_eq!(
        v.verify(&es512, at).map(|_| ()),
        Err(NitroError::UnsupportedAlgorithm)
    );
    // A payload over AWS's 16384 bytes (an unknown key carrying the bulk).
    let big = doc(
        vec![(Value::Text("padding".into()), Value::Bytes(vec![0; 16_384]))],
        &NSM_PROTECTED_HEADER,
    );
    assert_eq!(
        v.verify(&big, at).map_err(|e| e.code()),
        Err("payload_too_large")
    );
}

#[test]
fn key_usage_is_enforced() {
    let mut s = aws_shape();
    s[4].key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    assert_eq!(check(&s), Err(NitroError::KeyUsage(4)));
    let mut s = aws_shape();
    s[4].key_usages = vec![];
    assert_eq!(check(&s), Err(NitroError::KeyUsage(4)));
    let mut s = aws_shape();
    s[2].key_usages = vec![KeyUsagePurpose::DigitalSignature];
    assert_eq!(check(&s), Err(NitroError::KeyUsage(2)));
}

#[test]
fn every_certificate_must_be_valid_at_the_time() {
    for i in 0..5 {
        let mut s = aws_shape();
        s[i].window = (TS - 2 * YEAR, TS - 1);
        assert_eq!(
            check(&s),
            Err(NitroError::CertificateExpired(i)),
            "cert {i}"
        );
        let mut s = aws_shape();
        s[i].window = (TS + 1, TS + YEAR);
        assert_eq!(
            check(&s),
            Err(NitroError::CertificateNotYetValid(i)),
            "cert {i}"
        );
    }
}

#[test]
fn signatures_keys_and_order_are_enforced() {
    let mut s = aws_shape();
    s[2].wrong_issuer_key = true;
    assert_eq!(check(&s), Err(NitroError::ChainSignature(2)));
    let mut s = aws_shape();
    s[4].wrong_issuer_key = true;
    assert_eq!(check(&s), Err(NitroError::ChainSignature(4)));
    let mut s = aws_shape();
    s[2].p256 = true;
    assert_eq!(
        check(&s).map_err(|e| e.code()),
        Err("malformed_certificate")
    );

    let built = build(&aws_shape());
    let mut swapped = built.ders[..4].to_vec();
    swapped.swap(1, 2);
    assert_eq!(
        verdict(&built, &swapped, &built.leaf_key),
        Err(NitroError::IssuerMismatch(1))
    );
    // Dropping the instance CA: the leaf's issuer is missing.
    let short = built.ders[..3].to_vec();
    assert_eq!(
        verdict(&built, &short, &built.leaf_key),
        Err(NitroError::IssuerMismatch(3))
    );
    // COSE signed by a key other than the leaf's.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    assert_eq!(
        verdict(&built, &built.ders[..4], &other),
        Err(NitroError::CoseSignature)
    );
}

#[test]
fn verifier_is_send_and_sync_and_shares_its_cache() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NitroVerifier>();
    assert_send_sync::<TrustRoots>();
    let built = build(&aws_shape());
    let doc = document(&built.ders[..4], &built.ders[4], &built.leaf_key);
    let mut roots = TrustRoots::empty();
    roots.add_der(built.ders[0].clone()).unwrap();
    let v = std::sync::Arc::new(NitroVerifier::new(roots));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (v, doc) = (v.clone(), doc.clone());
            std::thread::spawn(move || {
                (0..10).all(|_| v.verify(&doc, VerifyTime::DocumentTimestamp).is_ok())
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    assert_eq!(v.cached_chains(), 1);
}
