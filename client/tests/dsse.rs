//! The DSSE envelope in bundles: a v2 bundle verifies with both bindings,
//! a v1 bundle only when the policy does not require DSSE, each way the
//! envelope can be wrong fails with its own check, the parser survives any
//! bytes, and `attestlog bundle dsse` extracts the envelope and the key.

mod fixtures;

use std::process::{Command, Output};

use attestlog::bundle::{Bundle, BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE_V1};
use attestlog::claim::Entry;
use attestlog::dsse::{
    keyid, Envelope, StatementSigner, MAX_ENVELOPE_SIZE, MAX_SIGNATURES, PAYLOAD_TYPE,
};
use attestlog::nitro::sim::SimulatedNsm;
use attestlog::nitro::AttestationDocument;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use fixtures::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const ARTIFACT: &[u8] = b"\x7fELF hello world binary";

struct World {
    log: TestLog,
    /// The envelopes of entries 0 (ARTIFACT) and 2 (another artifact).
    envelopes: [Envelope; 2],
    /// Entry 0's statement bytes.
    statement: Vec<u8>,
    dir: tempfile::TempDir,
}

/// Entry 0: ARTIFACT with a DSSE key; entry 1: ARTIFACT attested without a
/// key (as before v2); entry 2: another artifact with its own key.
fn world() -> World {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let (_, stmt) = statement(ARTIFACT, &commit(1));
    let (good, e0) = attest_entry_dsse(&nsm, &stmt, &pcrs(10));
    let keyless = attest_entry(&nsm, &stmt, &pcrs(10));
    let (_, other_stmt) = statement(b"other artifact", &commit(1));
    let (other, e2) = attest_entry_dsse(&nsm, &other_stmt, &pcrs(10));
    let log = TestLog::new(vec![good, keyless, other], 1);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), nsm.root_pem()).expect("root");
    World {
        log,
        envelopes: [e0, e2],
        statement: stmt,
        dir,
    }
}

impl World {
    fn policy(&self, require_dsse: bool) -> Policy {
        let text = format!(
            "require_dsse = {require_dsse}\n{}",
            self.log.policy_toml("root.pem", &pcrs(10), 1)
        );
        Policy::from_toml(&text, self.dir.path()).expect("policy")
    }

    /// Entry `index`'s bundle carrying `envelope`.
    fn bundle(&self, index: usize, envelope: Option<&Envelope>) -> Bundle {
        let mut bundle = self.log.bundle(index, 1);
        bundle.dsse_envelope = envelope.cloned();
        bundle
    }

    fn verify(&self, bundle: &Bundle, require_dsse: bool) -> Result<Option<String>, String> {
        BundleVerifier::new(self.policy(require_dsse))
            .verify(bundle, &sha256(ARTIFACT))
            .map(|v| v.dsse_keyid)
            .map_err(|e| e.code().to_string())
    }
}

fn attested_key(bundle: &Bundle) -> Vec<u8> {
    let entry = Entry::decode(&bundle.entry).expect("entry");
    AttestationDocument::parse(entry.attestation)
        .expect("document")
        .public_key
        .expect("public_key")
}

#[test]
fn v2_bundle_verifies_under_the_attested_key() {
    let w = world();
    let bundle = w.bundle(0, Some(&w.envelopes[0]));
    let key = attested_key(&bundle);
    let expected = keyid(&VerifyingKey::try_from(&key[12..]).expect("raw key"));
    assert_eq!(w.verify(&bundle, true), Ok(Some(expected.clone())));
    assert_eq!(w.envelopes[0].signatures[0].keyid, expected);
    assert_eq!(w.envelopes[0].payload, w.statement);
    assert_eq!(w.envelopes[0].payload_type, PAYLOAD_TYPE);
    // The file form is v2 and survives a round trip.
    let text = bundle.to_json();
    let json: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["mediaType"], BUNDLE_MEDIA_TYPE);
    assert_eq!(json["dsseEnvelope"]["payloadType"], PAYLOAD_TYPE);
    assert_eq!(Bundle::parse(text.as_bytes()).expect("parse"), bundle);
}

#[test]
fn v1_bundle_verifies_unless_the_policy_requires_dsse() {
    let w = world();
    for index in [0, 1] {
        let bundle = w.bundle(index, None);
        let json: Value = serde_json::from_str(&bundle.to_json()).expect("json");
        assert_eq!(json["mediaType"], BUNDLE_MEDIA_TYPE_V1);
        assert!(json.get("dsseEnvelope").is_none());
        assert_eq!(Bundle::parse(bundle.to_json().as_bytes()).unwrap(), bundle);
        assert_eq!(w.verify(&bundle, false), Ok(None));
        assert_eq!(w.verify(&bundle, true), Err("dsse_missing".into()));
    }
}

#[test]
fn each_wrong_envelope_fails_its_own_check() {
    let w = world();
    let good = &w.envelopes[0];
    // Another statement's envelope, validly signed by its own key.
    let swapped = w.bundle(0, Some(&w.envelopes[1]));
    assert_eq!(
        w.verify(&swapped, false),
        Err("dsse_payload_mismatch".into())
    );

    let mut payload = good.clone();
    let last = payload.payload.len() - 2;
    payload.payload[last] ^= 1;
    assert_eq!(
        w.verify(&w.bundle(0, Some(&payload)), false),
        Err("dsse_payload_mismatch".into())
    );

    let mut ty = good.clone();
    ty.payload_type = "application/json".into();
    assert_eq!(
        w.verify(&w.bundle(0, Some(&ty)), false),
        Err("dsse_payload_type".into())
    );

    let mut sig = good.clone();
    sig.signatures[0].sig[0] ^= 1;
    assert_eq!(
        w.verify(&w.bundle(0, Some(&sig)), false),
        Err("dsse_signature".into())
    );

    // The right statement, signed by a key the attestation does not carry.
    let forged = StatementSigner::generate().sign_statement(&w.statement);
    assert_eq!(
        w.verify(&w.bundle(0, Some(&forged)), false),
        Err("dsse_signature".into())
    );
    // ...or on an entry whose attestation carries no key at all.
    assert_eq!(
        w.verify(&w.bundle(1, Some(&forged)), false),
        Err("dsse_key".into())
    );

    // A second, bad signature beside the good one changes nothing (DSSE:
    // each signature is a separate envelope); the keyid is only a hint.
    let mut extra = good.clone();
    extra.signatures.push(forged.signatures[0].clone());
    extra.signatures[0].keyid = String::new();
    assert!(w.verify(&w.bundle(0, Some(&extra)), false).is_ok());
}

/// The bundle's JSON with `edit` applied, parsed again.
fn reparse(bundle: &Bundle, edit: impl FnOnce(&mut Value)) -> Result<Bundle, String> {
    let mut json: Value = serde_json::from_str(&bundle.to_json()).expect("json");
    edit(&mut json);
    Bundle::parse(json.to_string().as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn bundle_and_envelope_json_rules() {
    let w = world();
    let v2 = w.bundle(0, Some(&w.envelopes[0]));
    let v1 = w.bundle(0, None);
    let err = reparse(&v2, |j| {
        j.as_object_mut().unwrap().remove("dsseEnvelope");
    })
    .unwrap_err();
    assert!(err.contains("must carry dsseEnvelope"), "{err}");
    let envelope = serde_json::from_str::<Value>(&v2.to_json()).unwrap()["dsseEnvelope"].clone();
    let err = reparse(&v1, |j| j["dsseEnvelope"] = envelope.clone()).unwrap_err();
    assert!(err.contains("carries no dsseEnvelope"), "{err}");
    assert!(reparse(&v2, |j| j["mediaType"] =
        json!("application/vnd.attestlog.bundle.v3+json"))
    .is_err());

    // DSSE: consumers ignore unknown fields; keyid may be unset; either
    // base64 alphabet, padded or not.
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let same = reparse(&v2, |j| {
        let e = &mut j["dsseEnvelope"];
        e["futureField"] = json!({"x": 1});
        e["payload"] = json!(url.encode(&w.envelopes[0].payload));
        e["signatures"][0].as_object_mut().unwrap().remove("keyid");
        e["signatures"][0]["sig"] = json!(url.encode(&w.envelopes[0].signatures[0].sig));
    })
    .expect("lenient forms parse");
    assert_eq!(same.dsse_envelope.as_ref().unwrap().payload, w.statement);
    assert!(w.verify(&same, true).is_ok());

    // Bounds: signature count, payload size, field types.
    let many = json!(vec![
        json!({"keyid": "", "sig": "AA=="});
        MAX_SIGNATURES + 1
    ]);
    for (name, edit) in [
        ("too many signatures", json!({"signatures": many})),
        ("no signatures", json!({"signatures": []})),
        (
            "oversized payload",
            json!({"payload": "A".repeat(MAX_ENVELOPE_SIZE)}),
        ),
        ("bad base64", json!({"payload": "*not base64*"})),
        ("mixed alphabets", json!({"payload": "ab+_"})),
        ("numeric payloadType", json!({"payloadType": 7})),
        ("sig missing", json!({"signatures": [{"keyid": "k"}]})),
    ] {
        let result = reparse(&v2, |j| {
            for (k, v) in edit.as_object().unwrap() {
                j["dsseEnvelope"][k] = v.clone();
            }
        });
        assert!(result.is_err(), "{name} accepted");
    }
    let standalone = Envelope::parse(w.envelopes[0].to_json().as_bytes()).expect("parse");
    assert_eq!(standalone, w.envelopes[0]);
    let huge = vec![b' '; MAX_ENVELOPE_SIZE + 1];
    assert_eq!(Envelope::parse(&huge).unwrap_err().code(), "dsse_malformed");
}

#[test]
fn keyid_matches_securesystemslib() {
    // RFC 8032 test 1's public key; the keyid securesystemslib 1.6.0's
    // SSlibKey.from_crypto computes for it.
    let raw =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
    let key = VerifyingKey::try_from(&raw[..]).unwrap();
    assert_eq!(
        keyid(&key),
        "74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Envelope::parse(&bytes);
        let _ = Bundle::parse(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(at in 0usize..4096, byte in any::<u8>()) {
        let signer = StatementSigner::generate();
        let mut text = signer.sign_statement(b"{\"_type\":\"x\"}").to_json().into_bytes();
        let i = at % text.len();
        text[i] = byte;
        if let Ok(e) = Envelope::parse(&text) {
            let _ = e.check_statement(b"{\"_type\":\"x\"}");
            let _ = e.verify(Some(&[0x30; 44]));
        }
    }
}

fn attestlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestlog"))
        .args(args)
        .output()
        .expect("run attestlog")
}

#[test]
fn cli_extracts_the_envelope_and_the_attested_key() {
    let w = world();
    let bundle = w.bundle(0, Some(&w.envelopes[0]));
    let path = w.dir.path().join("hello.attestlog.json");
    std::fs::write(&path, bundle.to_json()).unwrap();
    let key_out = w.dir.path().join("key.pem");
    let out = attestlog(&[
        "bundle",
        "dsse",
        "--bundle",
        path.to_str().unwrap(),
        "--key-out",
        key_out.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = Envelope::parse(&out.stdout).expect("stdout is an envelope");
    assert_eq!(printed, w.envelopes[0]);
    let pem = std::fs::read_to_string(&key_out).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap(),
        attested_key(&bundle)
    );

    // A v1 bundle has nothing to extract; a wrong envelope is refused and
    // no key is written.
    let cases = [
        (w.bundle(0, None), "dsse_missing"),
        (w.bundle(0, Some(&w.envelopes[1])), "dsse_payload_mismatch"),
    ];
    for (bad, code) in cases {
        std::fs::write(&path, bad.to_json()).unwrap();
        let fresh = w.dir.path().join(format!("{code}.pem"));
        let out = attestlog(&[
            "bundle",
            "dsse",
            "--bundle",
            path.to_str().unwrap(),
            "--key-out",
            fresh.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("error: {code}: ")), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(!fresh.exists());
    }
}
