//! The builder split in two processes, as on a Nitro host: the untrusted
//! host clones, bundles and relays the log submission over a Unix socket;
//! the enclave half builds in bwrap with the simulated NSM and checks the
//! log's answer itself, so a host that tampers with it is caught.
//!
//! Needs `git`, `bwrap` and `cc` (scripts/test.sh installs them) and the
//! workspace's binaries, as `end_to_end.rs` does.

mod common;

use attestlog::bundle::Bundle;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use common::*;
use sha2::{Digest, Sha256};

/// Host and enclave halves as two processes over a Unix socket: the host
/// clones and bundles, relays the log submission; the enclave builds in
/// bwrap with the simulated NSM and verifies the log's answer itself.
#[test]
fn host_and_enclave_over_a_unix_socket() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let (host, enclave) = w.split_build(&c1, "split-out");
    let out = w.tmp.path().join("split-out");
    assert!(enclave.status.success(), "enclave: {}", stderr(&enclave));
    assert!(host.status.success(), "host: {}", stderr(&host));
    let artifact = std::fs::read(out.join("hello")).unwrap();
    let bundle = Bundle::parse(&std::fs::read(out.join("hello.attestlog.json")).unwrap()).unwrap();
    let good = w.policy("split.toml", &w.enclave_pcrs(), &w.server.key, false);
    assert_eq!(verify_code(&good, &bundle, &artifact), Ok(c1.clone()));
    // The statement records the host's repository, not the bundle file.
    let digest: [u8; 32] = Sha256::digest(&artifact).into();
    let v = BundleVerifier::new(Policy::load(&good).unwrap())
        .verify(&bundle, &digest)
        .unwrap();
    assert!(
        v.statement.source.uri.ends_with("/repo"),
        "{}",
        v.statement.source.uri
    );
}

/// The host is untrusted: a host that tampers with the log's answer is
/// caught by the enclave, which reports `log_answer_invalid` and writes nothing.
#[test]
fn enclave_refuses_a_tampered_relay() {
    use enclave_builder::hostsplit::prepare_job;
    use enclave_builder::transport::{Channel, JobResult, Message};

    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let job = prepare_job(&w.host_job(&c1)).unwrap();
    let (enclave, stream) = w.connect_enclave("evil");
    let mut ch = Channel::new(stream);
    ch.send(&Message::Job(Box::new(job))).unwrap();
    let result = loop {
        match ch.recv().unwrap() {
            Message::LogSubmit { entry } => {
                let (status, body) =
                    enclave_builder::submit::post_entry_http(&w.server.url, &entry).unwrap();
                let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                v["index"] = serde_json::json!(v["index"].as_u64().unwrap() + 1);
                ch.send(&Message::LogAnswer {
                    status,
                    body: v.to_string().into_bytes(),
                    error: None,
                })
                .unwrap();
            }
            Message::Result(r) => break r,
            other => panic!("unexpected {other:?}"),
        }
    };
    match result {
        JobResult::Err { code, .. } => assert_eq!(code, "log_answer_invalid"),
        JobResult::Ok { .. } => panic!("the enclave accepted a tampered answer"),
    }
    let out = enclave.wait_with_output().unwrap();
    assert_fails_with(&out, "log_answer_invalid");
}
