//! The offline verdict: a good bundle verifies, and each way it can be wrong
//! fails with its own check.

mod fixtures;

use attestlog::bundle::Bundle;
use attestlog::nitro::sim::SimulatedNsm;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use fixtures::*;

const ARTIFACT: &[u8] = b"\x7fELF hello world binary";

struct World {
    nsm: SimulatedNsm,
    log: TestLog,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let good = entry(&nsm, ARTIFACT, &commit(1), &pcrs(10));
    let other_commit = entry(&nsm, b"other artifact", &commit(2), &pcrs(10));
    let other_pcrs = entry(&nsm, ARTIFACT, &commit(1), &pcrs(99));
    let debug = entry(
        &nsm,
        ARTIFACT,
        &commit(1),
        &pcrs(0)
            .into_iter()
            .map(|(i, v)| (i, if i < 3 { vec![0; 48] } else { v }))
            .collect(),
    );
    let log = TestLog::new(
        vec![good, other_commit, other_pcrs, debug, b"filler".to_vec()],
        3,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), nsm.root_pem()).expect("root");
    World { nsm, log, dir }
}

impl World {
    fn policy(&self, quorum: usize, extra: &str) -> Policy {
        let text = format!(
            "{}{extra}",
            self.log.policy_toml("root.pem", &pcrs(10), quorum)
        );
        Policy::from_toml(&text, self.dir.path()).expect("policy")
    }

    fn verify(&self, bundle: &Bundle, artifact: &[u8], policy: Policy) -> Result<String, String> {
        BundleVerifier::new(policy)
            .verify(bundle, &sha256(artifact))
            .map(|v| v.measurement)
            .map_err(|e| e.code().to_string())
    }
}

#[test]
fn good_bundle_verifies_with_witness_quorum() {
    let w = world();
    let bundle = w.log.bundle(0, 2);
    let verdict = BundleVerifier::new(w.policy(2, ""))
        .verify(&bundle, &sha256(ARTIFACT))
        .expect("valid bundle");
    assert_eq!(verdict.measurement, "builder-v1");
    assert_eq!(verdict.index, 0);
    assert_eq!(verdict.checkpoint.size, 5);
    assert_eq!(verdict.statement.source.git_commit, commit(1));
    assert_eq!(verdict.cosigners.len(), 2);
    // The bundle survives its file form.
    let reparsed = Bundle::parse(bundle.to_json().as_bytes()).expect("parse");
    assert_eq!(reparsed, bundle);
}

#[test]
fn flipped_artifact_byte_fails() {
    let w = world();
    let mut artifact = ARTIFACT.to_vec();
    artifact[3] ^= 1;
    assert_eq!(
        w.verify(&w.log.bundle(0, 2), &artifact, w.policy(2, "")),
        Err("artifact_not_in_subjects".into())
    );
}

#[test]
fn bundle_from_another_commit_fails() {
    let w = world();
    assert_eq!(
        w.verify(&w.log.bundle(1, 2), ARTIFACT, w.policy(2, "")),
        Err("artifact_not_in_subjects".into())
    );
}

#[test]
fn unendorsed_pcrs_fail() {
    let w = world();
    assert_eq!(
        w.verify(&w.log.bundle(2, 2), ARTIFACT, w.policy(2, "")),
        Err("measurement_not_endorsed".into())
    );
}

#[test]
fn revoked_measurement_fails() {
    let w = world();
    let revoke = format!(
        "\n[[revoked]]\npcr0 = \"{}\"\nreason = \"test\"\n",
        hex::encode(&pcrs(10)[&0])
    );
    assert_eq!(
        w.verify(&w.log.bundle(0, 2), ARTIFACT, w.policy(2, &revoke)),
        Err("measurement_revoked".into())
    );
}

#[test]
fn debug_document_refused_by_default() {
    let w = world();
    assert_eq!(
        w.verify(&w.log.bundle(3, 2), ARTIFACT, w.policy(2, "")),
        Err("debug_refused".into())
    );
}

#[test]
fn endorsement_window_is_checked_at_document_time() {
    let w = world();
    let text = w
        .log
        .policy_toml("root.pem", &pcrs(10), 2)
        .replace("2027-01-01T00:00:00Z", "2026-02-01T00:00:00Z");
    let policy = Policy::from_toml(&text, w.dir.path()).expect("policy");
    assert_eq!(
        w.verify(&w.log.bundle(0, 2), ARTIFACT, policy),
        Err("measurement_outside_window".into())
    );
}

#[test]
fn repository_must_be_allowed() {
    let w = world();
    let text = w
        .log
        .policy_toml("root.pem", &pcrs(10), 2)
        .replace(REPO, "https://example.com/other");
    let policy = Policy::from_toml(&text, w.dir.path()).expect("policy");
    assert_eq!(
        w.verify(&w.log.bundle(0, 2), ARTIFACT, policy),
        Err("repository_not_allowed".into())
    );
}

#[test]
fn simulated_root_must_be_listed() {
    let w = world();
    let text = w
        .log
        .policy_toml("root.pem", &pcrs(10), 2)
        .replace("extra_roots = [\"root.pem\"]", "");
    let policy = Policy::from_toml(&text, w.dir.path()).expect("policy");
    assert_eq!(
        w.verify(&w.log.bundle(0, 2), ARTIFACT, policy),
        Err("untrusted_root".into())
    );
    drop(w.nsm);
}

#[test]
fn tampered_entry_fails() {
    let w = world();
    let mut bundle = w.log.bundle(0, 2);
    // A byte inside the attestation's signature: the statement still names
    // the artifact, so the attestation or the proof must catch it.
    let last = bundle.entry.len() - 1;
    bundle.entry[last] ^= 0x40;
    assert_eq!(
        w.verify(&bundle, ARTIFACT, w.policy(2, "")),
        Err("cose_signature".into())
    );
}

#[test]
fn tampered_proof_fails() {
    let w = world();
    let mut bundle = w.log.bundle(0, 2);
    bundle.proof.hashes[0][0] ^= 1;
    assert_eq!(
        w.verify(&bundle, ARTIFACT, w.policy(2, "")),
        Err("inclusion_proof".into())
    );
    let mut bundle = w.log.bundle(0, 2);
    bundle.proof.index = 1;
    assert_eq!(
        w.verify(&bundle, ARTIFACT, w.policy(2, "")),
        Err("inclusion_proof".into())
    );
}

#[test]
fn tampered_checkpoint_fails() {
    let w = world();
    let mut bundle = w.log.bundle(0, 2);
    // Another log's checkpoint over the same tree: right root, wrong key.
    let impostor = TestLog::new(w.log.entries.clone(), 0);
    bundle.proof.checkpoint = impostor.checkpoint(0);
    assert_eq!(
        w.verify(&bundle, ARTIFACT, w.policy(0, "")),
        Err("missing_log_signature".into())
    );
}

#[test]
fn missing_witness_quorum_fails() {
    let w = world();
    assert_eq!(
        w.verify(&w.log.bundle(0, 1), ARTIFACT, w.policy(2, "")),
        Err("witness_quorum".into())
    );
    assert!(w
        .verify(&w.log.bundle(0, 1), ARTIFACT, w.policy(1, ""))
        .is_ok());
}

#[test]
fn policy_refuses_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        "",
        "log_keys = []",
        "log_keys = [\"not a key\"]",
        "log_keys = [\"a+00000000+AQ==\"]\nunknown = 1",
    ] {
        assert!(
            Policy::from_toml(bad, dir.path()).is_err(),
            "{bad:?} accepted"
        );
    }
}
