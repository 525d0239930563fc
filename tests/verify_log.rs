//! `attestlog verify --log URL` (no bundle file) and `--json`, against a
//! real `attestlog-server` filled by real builds: the artifact's entries are
//! found, fetched and verified as bundles; several entries for one artifact
//! are each reported and the verdict is valid when one satisfies; the
//! written bundle verifies offline; a log that lies (a changed entry, a
//! wrong proof, a forged checkpoint signature) makes verification fail with
//! the bundle verifier's code.

mod common;
#[path = "explorer/proxy.rs"]
mod proxy;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use proxy::{Proxy, Tamper};
use serde_json::Value;

fn cli() -> std::path::PathBuf {
    target_bin("attestlog").expect("the attestlog binary is built by `cargo test --workspace`")
}

fn verify(log: &str, artifact: &Path, policy: &Path, extra: &[&str]) -> Output {
    Command::new(cli())
        .args(["verify", "--log", log, "--artifact"])
        .arg(artifact)
        .arg("--policy")
        .arg(policy)
        .args(extra)
        .output()
        .expect("run attestlog")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn verify_without_a_bundle_finds_fetches_and_verifies() {
    let Some(w) = World::new() else {
        panic!("needs git, bwrap, cc and the workspace binaries (scripts/test.sh)")
    };
    // The same source in two commits: one artifact digest, two entries.
    let c1 = w.commit_hello();
    assert!(w.build(&c1, "out1", &[]).status.success());
    let c2 = commit(&w.repo, &[("README", b"second commit, same program\n")]);
    let out = w.build(&c2, "out2", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let artifact = w.tmp.path().join("out1/hello");
    assert_eq!(
        std::fs::read(&artifact).unwrap(),
        std::fs::read(w.tmp.path().join("out2/hello")).unwrap(),
        "the build is reproducible"
    );
    let pcrs = w.pcrs();
    let good = w.policy("good.toml", &pcrs, &w.server.key, false);
    let url = w.server.url.as_str();

    // Text: valid, both entries verified and reported.
    let out = verify(url, &artifact, &good, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("valid: hello").count(), 2, "{text}");
    assert!(
        text.contains("log: entry 0 in") && text.contains("log: entry 1 in"),
        "{text}"
    );

    // --commit c2: entry 0 is refused (commit_mismatch), entry 1 is valid,
    // so the verdict is valid and the bundle written is entry 1's.
    let bundle = w.tmp.path().join("fetched.attestlog.json");
    let out = verify(
        url,
        &artifact,
        &good,
        &[
            "--commit",
            &c2,
            "--json",
            "--write-bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["entries"][0]["code"], "commit_mismatch", "{v}");
    assert_eq!(v["entries"][1]["valid"], true, "{v}");
    assert_eq!(v["entries"][1]["commit"], c2.as_str());
    // The written bundle verifies offline, with the same library and CLI.
    let out = Command::new(cli())
        .args(["verify", "--bundle"])
        .arg(&bundle)
        .arg("--artifact")
        .arg(&artifact)
        .arg("--policy")
        .arg(&good)
        .args(["--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["entries"][0]["index"], 1);

    // No entry satisfies: exit 1, each entry reported, the code named.
    let other = w.policy(
        "other.toml",
        &[pcrs[1].clone(), pcrs[0].clone(), pcrs[2].clone()],
        &w.server.key,
        false,
    );
    let out = verify(url, &artifact, &other, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(
        (v["valid"].clone(), v["code"].clone()),
        (Value::Bool(false), "measurement_not_endorsed".into()),
        "{v}"
    );
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(2));
    assert_fails_with(
        &verify(url, &artifact, &other, &[]),
        "measurement_not_endorsed",
    );
    let revoked = w.policy("revoked.toml", &pcrs, &w.server.key, true);
    assert_fails_with(
        &verify(url, &artifact, &revoked, &[]),
        "measurement_revoked",
    );

    // An artifact the log does not hold.
    let stranger = w.tmp.path().join("stranger");
    std::fs::write(&stranger, b"not built here").unwrap();
    let out = verify(url, &stranger, &good, &["--json"]);
    assert_fails_with(&out, "artifact_not_in_log");
    assert_eq!(json(&out)["code"], "artifact_not_in_log");

    // A lying log fails verification; it can never make it pass.
    let proxy = Proxy::start(url);
    for (tamper, code) in [
        (Tamper::Entry, "user_data_mismatch"),
        (Tamper::InclusionProof, "inclusion_proof"),
        (Tamper::CheckpointSignature, "invalid_log_signature"),
    ] {
        proxy.set(tamper);
        let out = verify(&proxy.url, &artifact, &good, &[]);
        assert_fails_with(&out, code);
    }
    proxy.set(Tamper::None);
    assert!(verify(&proxy.url, &artifact, &good, &[]).status.success());

    // checkpoint verify --json: the log's checkpoint, then a forged one.
    let note = reqwest::blocking::get(format!("{url}/checkpoint"))
        .unwrap()
        .text()
        .unwrap();
    let cp = w.tmp.path().join("checkpoint");
    std::fs::write(&cp, &note).unwrap();
    let checkpoint = |file: &Path| {
        Command::new(cli())
            .args(["checkpoint", "verify"])
            .arg(file)
            .args(["--key", &w.server.key, "--json"])
            .output()
            .unwrap()
    };
    let out = checkpoint(&cp);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(
        (v["valid"].clone(), v["size"].clone()),
        (Value::Bool(true), 2.into()),
        "{v}"
    );
    std::fs::write(&cp, note.replacen("\n2\n", "\n3\n", 1)).unwrap();
    let out = checkpoint(&cp);
    assert_fails_with(&out, "invalid_log_signature");
    assert_eq!(json(&out)["code"], "invalid_log_signature");

    // A log that does not answer in time is a fetch failure, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", silent.local_addr().unwrap());
    drop(silent);
    let out = verify(&dead, &artifact, &good, &[]);
    assert_fails_with(&out, "fetch_transport");
}
