//! The browser's verifier and the Rust one must agree: the real AWS
//! samples in $ATTESTLOG_SHARED/nitro-samples, aimed mutations of each, and
//! random one-bit flips of two of them run through both, with the same code
//! required from each; and policies pasted into the page are accepted or
//! refused as `Policy::from_toml` does. Each test runs in Chromium and in
//! Firefox ESR. Needs /usr/bin/chromium, /usr/bin/chromedriver and
//! /usr/bin/firefox-esr (scripts/test.sh installs them).

mod common;
#[path = "explorer/marionette.rs"]
mod marionette;
#[path = "explorer/util.rs"]
mod util;
#[path = "explorer/webdriver.rs"]
mod webdriver;

use std::io::Write;
use std::path::PathBuf;

use attestlog::bundle::Bundle;
use attestlog::nitro::{AttestationDocument, NitroVerifier, TrustRoots, VerifyTime};
use attestlog::policy::Policy;
use attestlog::tlog::cosignature::CosignatureSigner;
use attestlog::tlog::note::NoteSigner;
use attestlog::verify::BundleVerifier;
use common::*;
use serde_json::{json, Value};
use util::{b64, open};
use webdriver::{Browser, Engine};

/// Random one-bit changes of each of two samples run through both verifiers.
const FLIPS: usize = 600;

/// `code` of the Rust verifier on a document, at its own timestamp.
fn rust_verdict(doc: &[u8]) -> String {
    match NitroVerifier::without_cache(TrustRoots::aws()).verify(doc, VerifyTime::DocumentTimestamp)
    {
        Ok(_) => "valid".into(),
        Err(e) => e.code().into(),
    }
}

fn flip_in(doc: &[u8], part: &[u8], at_from_end: usize) -> Vec<u8> {
    let start = doc
        .windows(part.len())
        .position(|w| w == part)
        .expect("part in document");
    let mut out = doc.to_vec();
    out[start + part.len() - 1 - at_from_end] ^= 1;
    out
}

/// Mutations of one valid document, each aimed at one check.
fn mutations(doc: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let parsed = AttestationDocument::parse(doc).expect("sample parses");
    let mut out = vec![];
    let mut sig = doc.to_vec();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    out.push(("cose signature byte", sig));
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(doc);
    out.push(("tag 18", tagged));
    out.push(("truncated", doc[..doc.len() - 10].to_vec()));
    out.push((
        "leaf certificate signature",
        flip_in(doc, &parsed.certificate, 0),
    ));
    out.push((
        "intermediate signature",
        flip_in(doc, &parsed.cabundle[1], 0),
    ));
    out.push(("root certificate", flip_in(doc, &parsed.cabundle[0], 0)));
    let mut ts = doc.to_vec();
    let mut enc = vec![0x1b];
    enc.extend_from_slice(&parsed.timestamp_ms.to_be_bytes());
    let at = ts
        .windows(9)
        .position(|w| w == enc.as_slice())
        .expect("timestamp encoding");
    ts[at + 1..at + 9].copy_from_slice(&(parsed.timestamp_ms + 30 * 86_400_000).to_be_bytes());
    out.push(("timestamp a month later", ts));
    let mut alg = doc.to_vec();
    alg[5] = 0x23; // 84 44 a1 01 38 22: ES384 -> ES512
    out.push(("protected header", alg));
    out
}

#[test]
fn browser_and_rust_verifiers_agree_on_the_aws_samples() {
    agree_on_the_aws_samples(Engine::Chromium);
}

/// The same in Firefox ESR.
#[test]
fn firefox_and_rust_verifiers_agree_on_the_aws_samples() {
    agree_on_the_aws_samples(Engine::Firefox);
}

fn agree_on_the_aws_samples(engine: Engine) {
    let shared =
        PathBuf::from(std::env::var("ATTESTLOG_SHARED").unwrap_or_else(|_| "../../shared".into()));
    let samples = shared.join("nitro-samples");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(samples.join("MANIFEST.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", samples.display())),
    )
    .expect("manifest");
    let root = std::fs::read(samples.join("aws-nitro-root-g1.der")).expect("root");
    let Some(w) = World::new() else {
        panic!(
            "the explorer test needs git, bwrap, cc and the workspace binaries (scripts/test.sh)"
        )
    };
    let b = Browser::start_engine(engine, &std::env::temp_dir());
    open(&b, &format!("{}/", w.server.url));
    let mut cases: Vec<(String, Vec<u8>)> = vec![];
    for d in manifest["documents"].as_array().expect("documents") {
        let file = d["file"].as_str().expect("file");
        let bytes = std::fs::read(samples.join(file)).expect("sample");
        if d["expected"] == "valid" {
            for (what, m) in mutations(&bytes) {
                cases.push((format!("{file} / {what}"), m));
            }
        }
        cases.push((file.to_string(), bytes));
    }
    // Random single-byte changes anywhere in one document (a fixed seed):
    // every parser and check sees bytes it was not written for.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for name in [
        "nitro-validator-2026-01-03.cbor",
        "evervault-2022-10-13.cbor",
    ] {
        let sample = std::fs::read(samples.join(name)).expect("sample");
        for _ in 0..FLIPS {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut doc = sample.clone();
            let at = (seed % doc.len() as u64) as usize;
            doc[at] ^= 1 << ((seed >> 32) % 8);
            cases.push((format!("{name}: flip at byte {at}"), doc));
        }
    }
    let mut codes = std::collections::BTreeMap::new();
    let mut disagree = vec![];
    for (name, doc) in &cases {
        let rust = rust_verdict(doc);
        let browser = b.exec_async(
            "window.attestlog.verifyDocument(arguments[0], arguments[1]).then(arguments[2]);",
            json!([b64(doc), [b64(&root)]]),
        );
        if browser.as_str() != Some(rust.as_str()) {
            disagree.push(format!("{name}: browser {browser} vs Rust {rust}"));
        }
        *codes.entry(rust).or_insert(0) += 1;
    }
    assert!(
        disagree.is_empty(),
        "the verifiers disagree:\n{}",
        disagree.join("\n")
    );
    // The manifest's own expectations hold too.
    for d in manifest["documents"].as_array().unwrap() {
        let got = rust_verdict(&std::fs::read(samples.join(d["file"].as_str().unwrap())).unwrap());
        assert_eq!(got == "valid", d["expected"] == "valid", "{}", d["file"]);
    }
    let _ = writeln!(
        std::io::stderr(),
        "agreement on {} documents: {codes:?}",
        cases.len()
    );
    // Policies: the page's TOML reader accepts and refuses what the CLI's
    // does, for the documented format and its mistakes.
    let log = NoteSigner::generate("log.example/log")
        .unwrap()
        .verifier_key_text();
    let wit = CosignatureSigner::generate("w.example/w1")
        .unwrap()
        .verifier_key_text();
    let pcr = "ab".repeat(48);
    let m = format!(
        "[[measurement]]\nname = \"m\"\npcr0 = \"{pcr}\"\npcr1 = \"{pcr}\"\npcr2 = \"{pcr}\"\n"
    );
    let policies = [
        format!("log_keys = [\"{log}\"]\n"),
        format!("# comment\nlog_keys = [\n  \"{log}\", # the log\n]\nallow_debug = true\n{m}"),
        format!("log_keys = ['{log}']\n[witnesses]\nkeys = [\"{wit}\"]\nquorum = 1\n[trust]\naws_root = true\n{m}not_before = \"2026-11-01T00:00:00Z\"\n"),
        format!("log_keys = [\"{log}\"]\nrequired_refs = [\"refs/heads/main\", \"refs/tags/v*\"]\nallowed_repositories = [\"https://github.com/x/y\"]\n[[revoked]]\npcr0 = \"{pcr}\"\nreason = \"cve\"\n"),
        String::new(),
        "log_keys = []\n".into(),
        format!("log_keys = [\"{log}\"]\nbogus = 1\n"),
        format!("log_keys = [\"{log}\"]\n[witnesses]\nkeys = [\"{wit}\"]\nquorum = 2\n"),
        format!("log_keys = [\"{log}\"]\nrequired_refs = [\"main\"]\n"),
        format!("log_keys = [\"{log}\"]\n[[measurement]]\nname = \"m\"\npcr0 = \"zz\"\npcr1 = \"{pcr}\"\npcr2 = \"{pcr}\"\n"),
        format!("log_keys = [\"{log}\"]\n{m}not_after = \"yesterday\"\n"),
        format!("log_keys = [\"{log}\"]\n[[revoked]]\nreason = \"none named\"\n"),
        format!("log_keys = [\"{wit}\"]\n"),
        format!("log_keys = [\"{log}\"]\nallow_debug = \"yes\"\n"),
        format!("log_keys = [\"{log}\"]\n[trust]\nroots = []\n"),
        format!("log_keys = [\"{log}\"\n"),
        format!("log_keys = [\"{log}\"]\nlog_origin = \"go.sum database tree\"\n"),
        format!("log_keys = [\"{log}\"]\nlog_origin = \"\"\n"),
        format!("log_keys = [\"{log}\"]\nlog_origin = \"a\\nb\"\n"),
    ];
    for text in &policies {
        let rust = Policy::from_toml(text, &std::env::temp_dir()).map_or("bad_policy", |_| "valid");
        let page = b.exec_async(
            "window.attestlog.parsePolicy(arguments[0]).then(arguments[1]);",
            json!([text]),
        );
        assert_eq!(page.as_str(), Some(rust), "policy:\n{text}");
    }

    assert!(
        codes.len() >= 6,
        "the mutations reach too few checks: {codes:?}"
    );
}

/// Flips of the entry's framing and statement bytes (the attestation's are
/// covered above): the first refusal must be the same in both.
const ENTRY_FLIPS: usize = 400;

#[test]
fn browser_and_rust_agree_on_mutated_entries() {
    agree_on_mutated_entries(Engine::Chromium);
}

/// The same in Firefox ESR.
#[test]
fn firefox_and_rust_agree_on_mutated_entries() {
    agree_on_mutated_entries(Engine::Firefox);
}

fn agree_on_mutated_entries(engine: Engine) {
    let Some(w) = World::new() else {
        panic!("needs git, bwrap, cc and the workspace binaries (scripts/test.sh)")
    };
    let c1 = w.commit_hello();
    let out = w.build(&c1, "out1", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let artifact: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(w.tmp.path().join("out1/hello")).unwrap()).into()
    };
    let bundle =
        Bundle::parse(&std::fs::read(w.tmp.path().join("out1/hello.attestlog.json")).unwrap())
            .unwrap();
    let policy = Policy::load(&w.policy("good.toml", &w.pcrs(), &w.server.key, false)).unwrap();
    let verifier = BundleVerifier::new(policy);
    let b = Browser::start_engine(engine, &std::env::temp_dir());
    open(&b, &format!("{}/", w.server.url));

    let stmt_len = usize::from(u16::from_be_bytes([bundle.entry[4], bundle.entry[5]]));
    let region = 6 + stmt_len + 2;
    let mut cases: Vec<(String, Vec<u8>)> = vec![("as logged".into(), bundle.entry.clone())];
    let mut longer = bundle.entry.clone();
    longer.push(0);
    cases.push(("a trailing byte".into(), longer));
    cases.push(("truncated".into(), bundle.entry[..region + 10].to_vec()));
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..ENTRY_FLIPS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % region as u64) as usize;
        let mut e = bundle.entry.clone();
        e[at] ^= 1 << ((seed >> 32) % 8);
        cases.push((format!("flip at byte {at}"), e));
    }
    let proof: Vec<String> = bundle.proof.hashes.iter().map(|h| b64(h)).collect();
    let mut codes = std::collections::BTreeMap::new();
    let mut disagree = vec![];
    for (name, entry) in &cases {
        let mutated = Bundle {
            entry: entry.clone(),
            proof: bundle.proof.clone(),
            dsse_envelope: None,
        };
        let rust = match verifier.verify(&mutated, &artifact) {
            Ok(_) => "valid".to_string(),
            Err(e) => e.code().to_string(),
        };
        let page = b.exec_async(
            "window.attestlog.verifyEntry(...Array.from(arguments).slice(0, 5)).then(arguments[5]);",
            json!([b64(entry), bundle.proof.index, proof, bundle.proof.checkpoint, hex::encode(artifact)]),
        );
        if page.as_str() != Some(rust.as_str()) {
            disagree.push(format!("{name}: browser {page} vs Rust {rust}"));
        }
        *codes.entry(rust).or_insert(0) += 1;
    }
    assert!(
        disagree.is_empty(),
        "the verifiers disagree:\n{}",
        disagree.join("\n")
    );
    let _ = writeln!(
        std::io::stderr(),
        "entry agreement on {} entries: {codes:?}",
        cases.len()
    );
    assert_eq!(codes.get("valid"), Some(&1), "{codes:?}");
}
