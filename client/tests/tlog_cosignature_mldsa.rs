//! ML-DSA-44 cosignatures (c2sp.org/tlog-cosignature, signature type 0x06)
//! checked against an independent FIPS 204 implementation (the pure-Python
//! `dilithium-py`, run as a real process) in both directions, plus round
//! trips, mutations and key rules; and checkpoints whose origin is not the
//! log key's name (a real sum.golang.org checkpoint).

use std::process::Command;

use attestlog::tlog::checkpoint::{verify_checkpoint, verify_checkpoint_for_origin, Checkpoint};
use attestlog::tlog::cosignature::{
    CosignatureKind, CosignatureSigner, CosignatureVerifierKey, MLDSA44_PUBLIC_KEY_LEN,
};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use base64::Engine;

/// A real checkpoint of the Go checksum database, signed by sum.golang.org:
/// its origin `go.sum database tree` is not its key name.
const SUMDB_NOTE: &str = "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n\u{2014} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n";
/// sum.golang.org's published verifier key.
const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_ORIGIN: &str = "go.sum database tree";

/// Verifies an ML-DSA-44 cosignature line with dilithium-py, building the
/// vkey's key ID and the `cosigned_message` from the spec text, not from
/// attestlog. Prints "valid" or "invalid".
const PY_VERIFY: &str = r#"
import sys, base64, hashlib
from dilithium_py.ml_dsa import ML_DSA_44
vkey, body, line = sys.argv[1], sys.argv[2], sys.argv[3]
name, kid, k = vkey.split('+', 2)
raw = base64.b64decode(k)
assert raw[0] == 0x06 and len(raw) == 1 + 1312, "vkey type/length"
assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == kid, "key id"
assert line.startswith("\u2014 ") and line.endswith("\n")
lname, b64 = line[2:-1].split(" ")
sig = base64.b64decode(b64)
assert lname == name and sig[:4].hex() == kid, "line key"
ts = int.from_bytes(sig[4:12], "big")
s = sig[12:]
assert len(s) == 2420 and ts != 0
origin, size, root = body.split("\n")[:3]
o = origin.encode()
msg = (b"subtree/v1\n\x00" + bytes([len(name)]) + name.encode() + ts.to_bytes(8, "big")
       + bytes([len(o)]) + o + (0).to_bytes(8, "big") + int(size).to_bytes(8, "big")
       + base64.b64decode(root))
print("valid" if ML_DSA_44.verify(raw[1:], msg, s) else "invalid")
"#;

/// Derives an ML-DSA-44 key from a seed (FIPS 204 KeyGen_internal) with
/// dilithium-py and cosigns a checkpoint body; prints the vkey and the line.
const PY_SIGN: &str = r#"
import sys, base64, hashlib
from dilithium_py.ml_dsa import ML_DSA_44
seed, name, body, ts = bytes.fromhex(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
pk, sk = ML_DSA_44.key_derive(seed)
raw = b"\x06" + pk
kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
origin, size, root = body.split("\n")[:3]
o = origin.encode()
msg = (b"subtree/v1\n\x00" + bytes([len(name)]) + name.encode() + ts.to_bytes(8, "big")
       + bytes([len(o)]) + o + (0).to_bytes(8, "big") + int(size).to_bytes(8, "big")
       + base64.b64decode(root))
sig = ML_DSA_44.sign(sk, msg)
print(name + "+" + kid.hex() + "+" + base64.b64encode(raw).decode())
print("\u2014 " + name + " " + base64.b64encode(kid + ts.to_bytes(8, "big") + sig).decode())
"#;

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (scripts/test.sh installs dilithium-py)");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn log_and_body(origin: &str, key_name: &str, size: u64) -> (NoteSigner, String, String) {
    let log = NoteSigner::from_seed(key_name, [9; 32]).unwrap();
    let body = Checkpoint {
        origin: origin.into(),
        size,
        root_hash: [size as u8; 32],
        extensions: vec![],
    }
    .to_body();
    let note = log.sign(&body).unwrap();
    (log, body, note)
}

#[test]
fn dilithium_py_verifies_our_cosignatures_and_rejects_changes() {
    let w = CosignatureSigner::from_seed_kind("witness.test/pq", CosignatureKind::MlDsa44, [3; 32])
        .unwrap();
    let vkey = w.verifier_key_text();
    for origin in ["example.com/log", SUMDB_ORIGIN] {
        let (_, body, _) = log_and_body(origin, "example.com/log", 1234);
        let line = w.cosign(&body, 1_700_000_000).unwrap();
        assert_eq!(python(PY_VERIFY, &[&vkey, &body, &line]).trim(), "valid");
        // Another size, another root, another origin: the same line fails.
        for changed in [
            body.replace("\n1234\n", "\n1235\n"),
            body.replace(
                &base64::engine::general_purpose::STANDARD.encode([1234u64 as u8; 32]),
                &base64::engine::general_purpose::STANDARD.encode([0u8; 32]),
            ),
            body.replacen(origin, "example.com/other", 1),
        ] {
            assert_ne!(changed, body);
            Checkpoint::parse_body(&changed).unwrap();
            assert_eq!(
                python(PY_VERIFY, &[&vkey, &changed, &line]).trim(),
                "invalid",
                "{changed:?}"
            );
        }
    }
}

#[test]
fn we_verify_dilithium_py_cosignatures_and_derive_the_same_key() {
    let seed = [0x5a; 32];
    let (log, body, note) = log_and_body("example.com/log", "example.com/log", 77);
    let out = python(
        PY_SIGN,
        &[&hex::encode(seed), "witness.py/w1", &body, "1700000001"],
    );
    let mut lines = out.lines();
    let (vkey, line) = (lines.next().unwrap(), lines.next().unwrap());
    // FIPS 204 key generation from the seed agrees.
    let ours =
        CosignatureSigner::from_seed_kind("witness.py/w1", CosignatureKind::MlDsa44, seed).unwrap();
    assert_eq!(ours.verifier_key_text(), vkey);
    let wkey = CosignatureVerifierKey::parse(vkey).unwrap();
    assert_eq!(wkey.kind(), CosignatureKind::MlDsa44);
    let log_key = log.verifier_key().unwrap();
    let cosigned = format!("{note}{line}\n");
    let v = verify_checkpoint(&cosigned, &log_key, std::slice::from_ref(&wkey), 1).unwrap();
    assert_eq!(
        v.cosigners,
        vec![("witness.py/w1".to_string(), 1_700_000_001)]
    );
    // One changed signature byte: a known key's bad signature rejects.
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(line.rsplit(' ').next().unwrap())
        .unwrap();
    raw[100] ^= 1;
    let bad = format!(
        "{note}\u{2014} witness.py/w1 {}\n",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    let err = verify_checkpoint(&bad, &log_key, &[wkey], 1).unwrap_err();
    assert_eq!(err.code(), "invalid_cosignature");
}

#[test]
fn mldsa_round_trip_mutations_and_key_rules() {
    let w = CosignatureSigner::generate_kind("witness.test/pq", CosignatureKind::MlDsa44).unwrap();
    // Private key text round trip, mode-independent: type byte 0x06 || seed.
    let again = CosignatureSigner::from_private_key_text(&w.private_key_text()).unwrap();
    assert_eq!(again.verifier_key_text(), w.verifier_key_text());
    let wkey = CosignatureVerifierKey::parse(&w.verifier_key_text()).unwrap();
    assert_eq!(wkey.to_text(), w.verifier_key_text());

    let (log, body, note) = log_and_body("example.com/log", "example.com/log", 10);
    let log_key = log.verifier_key().unwrap();
    let line = w.cosign(&body, 5).unwrap();
    let ok = format!("{note}{line}");
    assert_eq!(
        verify_checkpoint(&ok, &log_key, std::slice::from_ref(&wkey), 1)
            .unwrap()
            .cosigners,
        vec![("witness.test/pq".into(), 5)]
    );
    // Timestamp 0 is never made, and refused when seen.
    assert_eq!(
        w.cosign(&body, 0).unwrap_err().code(),
        "timestamp_out_of_range"
    );
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    raw[4..12].copy_from_slice(&0u64.to_be_bytes());
    let zero = format!(
        "{note}\u{2014} witness.test/pq {}\n",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    assert_eq!(
        verify_checkpoint(&zero, &log_key, std::slice::from_ref(&wkey), 1)
            .unwrap_err()
            .code(),
        "invalid_cosignature"
    );
    // A truncated signature is refused.
    let short = format!(
        "{note}\u{2014} witness.test/pq {}\n",
        base64::engine::general_purpose::STANDARD.encode(&raw[..raw.len() - 1])
    );
    assert!(verify_checkpoint(&short, &log_key, std::slice::from_ref(&wkey), 1).is_err());
    // Origins over 255 bytes cannot be signed.
    let long = Checkpoint {
        origin: "o".repeat(256),
        size: 1,
        root_hash: [0; 32],
        extensions: vec![],
    }
    .to_body();
    assert_eq!(w.cosign(&long, 5).unwrap_err().code(), "origin_too_long");

    // Key rules: 1312-byte public keys only, key ID checked.
    let text = w.verifier_key_text();
    let (name, rest) = text.split_once('+').unwrap();
    let (id, key64) = rest.split_once('+').unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(key64)
        .unwrap();
    assert_eq!(key.len(), 1 + MLDSA44_PUBLIC_KEY_LEN);
    let reenc = |k: &[u8]| {
        format!(
            "{name}+{id}+{}",
            base64::engine::general_purpose::STANDARD.encode(k)
        )
    };
    assert_eq!(
        CosignatureVerifierKey::parse(&reenc(&key[..key.len() - 1]))
            .unwrap_err()
            .code(),
        "malformed_verifier_key"
    );
    let mut flipped = key.clone();
    flipped[10] ^= 1;
    assert_eq!(
        CosignatureVerifierKey::parse(&reenc(&flipped))
            .unwrap_err()
            .code(),
        "key_id_mismatch"
    );
    let mut other = key;
    other[0] = 0x07;
    assert_eq!(
        CosignatureVerifierKey::parse(&reenc(&other))
            .unwrap_err()
            .code(),
        "unsupported_key_type"
    );
    // An Ed25519 and an ML-DSA-44 witness count together toward a quorum.
    let ed = CosignatureSigner::from_seed("witness.test/ed", [4; 32]).unwrap();
    let both = format!("{ok}{}", ed.cosign(&body, 6).unwrap());
    let v = verify_checkpoint(&both, &log_key, &[wkey, ed.verifier_key()], 2).unwrap();
    assert_eq!(v.cosigners.len(), 2);
}

#[test]
fn origin_other_than_the_key_name_verifies_when_given() {
    let key = NoteVerifierKey::parse(SUMDB_VKEY).unwrap();
    // The old rule (origin = key name) refuses the real Go checksum database.
    assert_eq!(
        verify_checkpoint(SUMDB_NOTE, &key, &[], 0)
            .unwrap_err()
            .code(),
        "origin_mismatch"
    );
    let v =
        verify_checkpoint_for_origin(SUMDB_NOTE, SUMDB_ORIGIN, std::slice::from_ref(&key), &[], 0)
            .unwrap();
    assert_eq!(v.checkpoint.size, 31_700_353);
    // Another expected origin is still refused.
    assert_eq!(
        verify_checkpoint_for_origin(
            SUMDB_NOTE,
            "sum.golang.org",
            std::slice::from_ref(&key),
            &[],
            0
        )
        .unwrap_err()
        .code(),
        "origin_mismatch"
    );
    assert_eq!(
        verify_checkpoint_for_origin(SUMDB_NOTE, SUMDB_ORIGIN, &[], &[], 0)
            .unwrap_err()
            .code(),
        "no_log_key"
    );
    // Cosigned by an ML-DSA-44 witness: the message commits to the origin
    // with its spaces, and dilithium-py agrees.
    let w = CosignatureSigner::from_seed_kind("witness.test/pq", CosignatureKind::MlDsa44, [8; 32])
        .unwrap();
    let body = SUMDB_NOTE.split("\n\n").next().unwrap().to_string() + "\n";
    let line = w.cosign(&body, 1_750_000_000).unwrap();
    assert_eq!(
        python(PY_VERIFY, &[&w.verifier_key_text(), &body, &line]).trim(),
        "valid"
    );
    let cosigned = format!("{SUMDB_NOTE}{line}");
    let v = verify_checkpoint_for_origin(&cosigned, SUMDB_ORIGIN, &[key], &[w.verifier_key()], 1)
        .unwrap();
    assert_eq!(v.cosigners.len(), 1);
}
