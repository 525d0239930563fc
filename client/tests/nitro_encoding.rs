//! One attestation, one encoding: every re-encoding of a real AWS document's envelope that
//! leaves the signature valid (tag, unprotected header, CBOR lengths) is refused, and the
//! one signature change anyone can make, (r, s) -> (r, n - s), keeps the claim id.

mod common;
mod fixtures;

use attestlog::claim::{claim_id, entry_claim_id, verify_entry, Entry};
use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use attestlog::nitro::{CoseParts, NitroError, NitroVerifier, TrustRoots, VerifyTime};

fn code<T>(r: &Result<T, NitroError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// A CBOR head for `major` and `len` with the argument in `width` bytes (0 = in the
/// initial byte), minimal or not.
fn head(major: u8, len: usize, width: usize) -> Vec<u8> {
    let m = major << 5;
    match width {
        0 => vec![m | len as u8],
        1 => vec![m | 24, len as u8],
        2 => [&[m | 25][..], &(len as u16).to_be_bytes()].concat(),
        4 => [&[m | 26][..], &(len as u32).to_be_bytes()].concat(),
        _ => [&[m | 27][..], &(len as u64).to_be_bytes()].concat(),
    }
}

/// The minimal width for `len`.
fn minimal(len: usize) -> usize {
    match len {
        0..=23 => 0,
        24..=0xff => 1,
        0x100..=0xffff => 2,
        _ => 4,
    }
}

fn bstr(bytes: &[u8], width: usize) -> Vec<u8> {
    [head(2, bytes.len(), width), bytes.to_vec()].concat()
}

fn bstr_min(bytes: &[u8]) -> Vec<u8> {
    bstr(bytes, minimal(bytes.len()))
}

/// An indefinite-length byte string made of the chunks of `bytes` split at `at`.
fn bstr_chunked(bytes: &[u8], at: &[usize]) -> Vec<u8> {
    let mut out = vec![0x5f];
    let mut from = 0;
    for &to in at.iter().chain([&bytes.len()]) {
        out.extend(bstr_min(&bytes[from..to]));
        from = to;
    }
    out.push(0xff);
    out
}

/// The envelope items in the given encodings, wrapped in an array head (or indefinite).
fn envelope(array: &[u8], items: [Vec<u8>; 4], close: bool) -> Vec<u8> {
    let mut out = array.to_vec();
    for item in items {
        out.extend(item);
    }
    if close {
        out.push(0xff);
    }
    out
}

/// Every re-encoding of `bytes` that keeps the signed parts, with the code it must get.
fn reencodings(bytes: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let p = CoseParts::from_nsm_bytes(bytes).expect("NSM encoding");
    let (prot, pay, sig) = (&p.protected, &p.payload, &p.signature);
    let canon = |unprot: &[u8]| {
        [
            bstr_min(prot),
            unprot.to_vec(),
            bstr_min(pay),
            bstr_min(sig),
        ]
    };
    let std = canon(&[0xa0]);
    let with = |i: usize, item: Vec<u8>| {
        let mut items = std.clone();
        items[i] = item;
        envelope(&[0x84], items, false)
    };
    let half = pay.len() / 2;
    let mut out = vec![
        ("tag 18", [&[0xd2][..], bytes].concat(), "tagged_envelope"),
        (
            "tag 18, 1-byte tag number",
            [&[0xd8, 0x12][..], bytes].concat(),
            "tagged_envelope",
        ),
        // kid: h'00'
        (
            "unprotected kid",
            with(1, vec![0xa1, 0x04, 0x41, 0x00]),
            "unprotected_header",
        ),
        // alg: ES384, the same as the protected header
        (
            "unprotected alg",
            with(1, vec![0xa1, 0x01, 0x38, 0x22]),
            "unprotected_header",
        ),
        // a private label with a long value
        (
            "unprotected private",
            with(
                1,
                [&[0xa1, 0x3a, 0, 1, 0, 0][..], &bstr_min(&[7; 300])].concat(),
            ),
            "unprotected_header",
        ),
        (
            "unprotected 1-byte length",
            with(1, vec![0xb8, 0x00]),
            "noncanonical_encoding",
        ),
        (
            "unprotected indefinite",
            with(1, vec![0xbf, 0xff]),
            "noncanonical_encoding",
        ),
        (
            "array 1-byte length",
            envelope(&[0x98, 4], std.clone(), false),
            "noncanonical_encoding",
        ),
        (
            "array 8-byte length",
            envelope(&head(4, 4, 8), std.clone(), false),
            "noncanonical_encoding",
        ),
        (
            "array indefinite",
            envelope(&[0x9f], std.clone(), true),
            "noncanonical_encoding",
        ),
        (
            "protected 1-byte length",
            with(0, bstr(prot, 1)),
            "noncanonical_encoding",
        ),
        (
            "protected indefinite",
            with(0, bstr_chunked(prot, &[])),
            "noncanonical_encoding",
        ),
        (
            "protected two chunks",
            with(0, bstr_chunked(prot, &[2])),
            "noncanonical_encoding",
        ),
        (
            "payload 4-byte length",
            with(2, bstr(pay, 4)),
            "noncanonical_encoding",
        ),
        (
            "payload 8-byte length",
            with(2, bstr(pay, 8)),
            "noncanonical_encoding",
        ),
        (
            "payload indefinite",
            with(2, bstr_chunked(pay, &[])),
            "noncanonical_encoding",
        ),
        (
            "payload two chunks",
            with(2, bstr_chunked(pay, &[half])),
            "noncanonical_encoding",
        ),
        (
            "signature 2-byte length",
            with(3, bstr(sig, 2)),
            "noncanonical_encoding",
        ),
        (
            "signature indefinite",
            with(3, bstr_chunked(sig, &[48])),
            "noncanonical_encoding",
        ),
        (
            "everything at once",
            envelope(
                &[0x9f],
                [
                    bstr(prot, 8),
                    vec![0xbf, 0xff],
                    bstr_chunked(pay, &[1, half]),
                    bstr(sig, 4),
                ],
                true,
            ),
            "noncanonical_encoding",
        ),
        (
            "trailing byte",
            [bytes, &[0x00][..]].concat(),
            "malformed_cose",
        ),
        (
            "trailing item",
            [bytes, &[0xa0][..]].concat(),
            "malformed_cose",
        ),
    ];
    if pay.len() <= 0xffff {
        out.push(("payload 2-byte length", with(2, bstr(pay, 2)), "ok"));
    }
    out
}

#[test]
fn every_real_document_is_in_the_one_accepted_encoding() {
    let Some(samples) = common::samples() else {
        return;
    };
    for s in &samples {
        // All real documents, the mock-rooted one too, are the NSM's encoding byte for byte.
        let parts =
            CoseParts::from_nsm_bytes(&s.bytes).unwrap_or_else(|e| panic!("{}: {e}", s.file));
        assert_eq!(parts.encode().unwrap(), s.bytes, "{}", s.file);
        assert_eq!(parts, CoseParts::from_any_encoding(&s.bytes).unwrap());
    }
    let v = NitroVerifier::new(TrustRoots::aws());
    let valid = samples.iter().filter(|s| s.valid()).count();
    assert_eq!(valid, 14);
    for s in samples.iter().filter(|s| s.valid()) {
        assert_eq!(
            code(&v.verify(&s.bytes, VerifyTime::DocumentTimestamp)),
            "ok",
            "{}",
            s.file
        );
    }
}

#[test]
fn re_encoded_real_documents_are_refused_with_their_code() {
    let Some(samples) = common::samples() else {
        return;
    };
    let cached = NitroVerifier::new(TrustRoots::aws());
    let cold = NitroVerifier::without_cache(TrustRoots::aws());
    let mut checked = 0;
    for s in samples.iter().filter(|s| s.valid()) {
        let original = CoseParts::from_nsm_bytes(&s.bytes).unwrap();
        for (name, bytes, want) in reencodings(&s.bytes) {
            if want == "ok" {
                // The real payloads (4-6 KB) already use the 2-byte length: same bytes.
                assert_eq!(bytes, s.bytes, "{} {name}", s.file);
                continue;
            }
            assert_ne!(bytes, s.bytes, "{} {name}", s.file);
            // Each is a re-encoding of the same signed parts (so the signature would
            // verify: the old verifier accepted these) ...
            if want != "malformed_cose" {
                let parts = CoseParts::from_any_encoding(&bytes)
                    .unwrap_or_else(|e| panic!("{} {name}: {e}", s.file));
                assert_eq!(parts, original, "{} {name}", s.file);
            }
            // ... and is refused, by parse and by both verifiers, with its code.
            let at = VerifyTime::DocumentTimestamp;
            assert_eq!(
                code(&attestlog::nitro::AttestationDocument::parse(&bytes)),
                want,
                "{} {name}",
                s.file
            );
            assert_eq!(code(&cached.verify(&bytes, at)), want, "{} {name}", s.file);
            assert_eq!(code(&cold.verify(&bytes, at)), want, "{} {name}", s.file);
            checked += 1;
        }
    }
    assert!(checked >= 14 * 20, "{checked}");
}

/// The order n of the P-384 group, big-endian.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// The document with its signature (r, s) replaced by (r, n - s): a second valid
/// signature of the same bytes that anyone can compute.
pub fn twin(bytes: &[u8]) -> Vec<u8> {
    let mut parts = CoseParts::from_nsm_bytes(bytes).unwrap();
    let s = &mut parts.signature[48..];
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let d = i16::from(P384_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
    assert_eq!(borrow, 0);
    parts.encode().unwrap()
}

fn is_high_s(bytes: &[u8]) -> bool {
    let parts = CoseParts::from_nsm_bytes(bytes).unwrap();
    // s > n / 2 <=> s > n - s
    let twin = CoseParts::from_nsm_bytes(&twin(bytes)).unwrap();
    parts.signature[48..] > twin.signature[48..]
}

#[test]
fn the_s_twin_of_a_real_document_verifies_and_keeps_the_claim_id() {
    let Some(samples) = common::samples() else {
        return;
    };
    let v = NitroVerifier::new(TrustRoots::aws());
    for s in samples.iter().filter(|s| s.valid()) {
        assert_eq!(is_high_s(&s.bytes), s.meta["high_s"] == true, "{}", s.file);
        let other = twin(&s.bytes);
        assert_ne!(other, s.bytes);
        // Byte-level strictness cannot refuse it: it is in the NSM's encoding and valid.
        let a = v.verify(&s.bytes, VerifyTime::DocumentTimestamp).unwrap();
        let b = v.verify(&other, VerifyTime::DocumentTimestamp).unwrap();
        assert_eq!(a, b, "{}", s.file);
        assert_eq!(twin(&other), s.bytes);
        // Only the claim id sees one claim.
        let one = CoseParts::from_nsm_bytes(&s.bytes).unwrap();
        let two = CoseParts::from_nsm_bytes(&other).unwrap();
        assert_eq!(claim_id(b"statement", &one), claim_id(b"statement", &two));
        assert_ne!(claim_id(b"statement", &one), claim_id(b"statement2", &one));
    }
}

#[test]
fn claim_id_is_the_same_for_every_entry_derived_from_one_attestation() {
    let now = 1_767_472_867;
    let nsm = SimulatedNsm::generate(now).unwrap();
    let statement = br#"{"not":"checked here"}"#;
    let pcrs = (0u8..3).map(|i| (i, vec![i; 48])).collect();
    let req = AttestationRequest {
        user_data: Some(attestlog::claim::statement_user_data(statement).to_vec()),
        ..Default::default()
    };
    let doc = nsm.attest(&req, &pcrs, (now + 60) * 1000).unwrap();
    let entry = Entry::encode(statement, &doc).unwrap();
    let id = entry_claim_id(&entry).unwrap();
    // Its twin, and every re-encoding (as an old log may hold them), share the id.
    let mut copies = vec![Entry::encode(statement, &twin(&doc)).unwrap()];
    for (name, bytes, want) in reencodings(&doc) {
        if want == "malformed_cose" || want == "ok" {
            continue;
        }
        let copy = Entry::encode(statement, &bytes).unwrap();
        assert_eq!(entry_claim_id(&copy).unwrap(), id, "{name}");
        copies.push(copy);
    }
    for copy in &copies {
        assert_ne!(copy, &entry);
        assert_eq!(entry_claim_id(copy).unwrap(), id);
    }
    // The same attestation under another statement, or another attestation of the same
    // statement (a new signature over another timestamp), is another claim.
    assert_ne!(
        entry_claim_id(&Entry::encode(b"{}", &doc).unwrap()).unwrap(),
        id
    );
    let later = nsm.attest(&req, &pcrs, (now + 61) * 1000).unwrap();
    assert_ne!(
        entry_claim_id(&Entry::encode(statement, &later).unwrap()).unwrap(),
        id
    );
    // Framing is still checked.
    assert_eq!(
        entry_claim_id(b"ATL\x01").unwrap_err().code(),
        "bad_entry_encoding"
    );
    assert_eq!(
        entry_claim_id(&Entry::encode(statement, b"\x01").unwrap())
            .unwrap_err()
            .code(),
        "malformed_cose"
    );
}

#[test]
fn verify_entry_reports_the_claim_id_and_accepts_the_twin() {
    let nsm = SimulatedNsm::generate(fixtures::NOW_MS / 1000 - 3600).unwrap();
    let v = NitroVerifier::new(nsm.trust_roots());
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let entry = fixtures::entry(&nsm, b"hello", commit, &fixtures::pcrs(1));
    let parts = Entry::decode(&entry).unwrap();
    let copy = Entry::encode(parts.statement, &twin(parts.attestation)).unwrap();
    let a = verify_entry(&entry, &v).unwrap();
    let b = verify_entry(&copy, &v).unwrap();
    assert_eq!(a.claim_id, entry_claim_id(&entry).unwrap());
    assert_eq!(a.claim_id, b.claim_id);
    // A re-encoded copy is refused by verify_entry, so it is never logged.
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(parts.attestation);
    let copy = Entry::encode(parts.statement, &tagged).unwrap();
    assert_eq!(
        verify_entry(&copy, &v).unwrap_err().code(),
        "tagged_envelope"
    );
    assert_eq!(entry_claim_id(&copy).unwrap(), a.claim_id);
}
