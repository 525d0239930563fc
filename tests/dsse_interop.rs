//! DSSE interop with an independent implementation: `enclave-builder build`
//! (simulated NSM, bwrap, a real `attestlog-server`) writes a v2 bundle;
//! `attestlog bundle dsse` extracts the envelope and the attested key; and
//! securesystemslib, run as a Python subprocess (`dsse_verify.py`), accepts
//! the envelope with that key and refuses it after any change: one payload
//! byte, the payloadType, one signature byte, the keyid.
//!
//! Needs what end_to_end.rs needs, plus `python3` with securesystemslib and
//! pyca/cryptography (scripts/test.sh installs them). A missing Python
//! module fails the test: it does not skip.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use attestlog::bundle::Bundle;
use attestlog::claim::Entry;
use attestlog::dsse::{public_key_pem, Envelope, PAYLOAD_TYPE};
use attestlog::nitro::AttestationDocument;
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dsse_verify.py");

/// Runs the independent verifier on an envelope and a PEM key.
fn securesystemslib(envelope: &Path, key: &Path) -> Output {
    Command::new("python3")
        .arg(SCRIPT)
        .arg(envelope)
        .arg(key)
        .output()
        .expect("python3 must be installed (scripts/test.sh installs it)")
}

/// The envelope (as DSSE JSON) and the attested key (PEM) of a bundle
/// file: by `attestlog bundle dsse` when the binary is built, else by the
/// library functions the command uses.
fn extract(bundle_path: &Path, dir: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let key_path = dir.join("attested-key.pem");
    match target_bin("attestlog") {
        Some(cli) => {
            let out = Command::new(cli)
                .args(["bundle", "dsse", "--bundle"])
                .arg(bundle_path)
                .arg("--key-out")
                .arg(&key_path)
                .output()
                .unwrap();
            assert!(out.status.success(), "bundle dsse: {}", stderr(&out));
            (out.stdout, key_path)
        }
        None => {
            skip("attestlog binary not built; extracting with the library");
            let bundle = Bundle::parse(&std::fs::read(bundle_path).unwrap()).unwrap();
            let entry = Entry::decode(&bundle.entry).unwrap();
            let doc = AttestationDocument::parse(entry.attestation).unwrap();
            std::fs::write(&key_path, public_key_pem(&doc.public_key.unwrap())).unwrap();
            let envelope = bundle.dsse_envelope.expect("v2 bundle");
            (envelope.to_json().into_bytes(), key_path)
        }
    }
}

#[test]
fn securesystemslib_accepts_the_enclave_envelope_and_refuses_any_change() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let out = w.build(&c1, "out1", &[]);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let bundle_path = w.tmp.path().join("out1/hello.attestlog.json");
    let artifact = std::fs::read(w.tmp.path().join("out1/hello")).unwrap();
    let bundle = Bundle::parse(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let envelope = bundle.dsse_envelope.clone().expect("the builder writes v2");
    let entry = Entry::decode(&bundle.entry).unwrap();
    assert_eq!(envelope.payload, entry.statement);
    assert_eq!(envelope.payload_type, PAYLOAD_TYPE);

    // attestlog's own verdict, with the policy requiring the envelope.
    let policy = w.policy("dsse.toml", &w.pcrs(), &w.server.key, false);
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("require_dsse = true\n{text}")).unwrap();
    assert_eq!(verify_code(&policy, &bundle, &artifact), Ok(c1.clone()));
    if let Some(cli) = target_bin("attestlog") {
        let out = Command::new(cli)
            .args(["verify", "--bundle"])
            .arg(&bundle_path)
            .arg("--artifact")
            .arg(w.tmp.path().join("out1/hello"))
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap();
        assert!(out.status.success(), "attestlog verify: {}", stderr(&out));
    }

    // The independent verifier accepts it with the attested key, and
    // computes the same keyid the envelope names.
    let (envelope_json, key_path) = extract(&bundle_path, w.tmp.path());
    assert_eq!(Envelope::parse(&envelope_json).unwrap(), envelope);
    let good = w.tmp.path().join("envelope.json");
    std::fs::write(&good, &envelope_json).unwrap();
    let out = securesystemslib(&good, &key_path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "securesystemslib: {}",
        stderr(&out)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["keyid"], envelope.signatures[0].keyid.as_str());
    assert_eq!(summary["keytype"], "ed25519");
    assert_eq!(summary["payloadType"], PAYLOAD_TYPE);
    assert_eq!(summary["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        summary["subjects"][0],
        hex::encode(Sha256::digest(&artifact))
    );

    // Any change is refused.
    let mut changes: Vec<(&str, Envelope)> = Vec::new();
    let mut e = envelope.clone();
    let mid = e.payload.len() / 2;
    e.payload[mid] ^= 1;
    changes.push(("one payload byte", e));
    let mut e = envelope.clone();
    e.payload_type = "application/vnd.in-toto+jsoN".into();
    changes.push(("payloadType", e));
    let mut e = envelope.clone();
    e.signatures[0].sig[5] ^= 0x80;
    changes.push(("one signature byte", e));
    let mut e = envelope.clone();
    e.signatures[0].keyid = "0".repeat(64);
    changes.push(("keyid", e));
    for (what, changed) in changes {
        let path = w.tmp.path().join("changed.json");
        std::fs::write(&path, changed.to_json()).unwrap();
        let out = securesystemslib(&path, &key_path);
        assert_eq!(
            out.status.code(),
            Some(1),
            "securesystemslib after changing {what}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).starts_with("refused: "), "{}", stderr(&out));
    }

    // Another key is refused too: the key must be the attested one.
    let out2 = w.build(&c1, "out2", &[]);
    assert!(out2.status.success(), "build failed: {}", stderr(&out2));
    let other_dir = w.tmp.path().join("out2");
    let (_, other_key) = extract(&other_dir.join("hello.attestlog.json"), &other_dir);
    assert_ne!(
        std::fs::read(&other_key).unwrap(),
        std::fs::read(&key_path).unwrap(),
        "every build has a fresh key"
    );
    let out = securesystemslib(&good, &other_key);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
