//! The `attestlog` command line: exit codes, one-line errors and output.

mod common;
mod fixtures;

use std::process::{Command, Output};

use attestlog::nitro::sim::SimulatedNsm;
use fixtures::*;

fn attestlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestlog"))
        .args(args)
        .output()
        .expect("run attestlog")
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        text.lines().count(),
        1,
        "expected one error line, got {text:?}"
    );
    text
}

#[test]
fn attestation_verify_on_real_documents() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let Some(samples) = common::samples() else {
        return;
    };
    for sample in samples {
        let doc = &sample.meta;
        let file = shared.join("nitro-samples").join(&sample.file);
        let file = file.to_str().expect("path");
        let at = sample.u64("verify_at_unix");
        let valid = sample.valid();

        let out = attestlog(&["attestation", "verify", file, "--at", &at.to_string()]);
        assert_eq!(out.status.success(), valid, "{file}: {out:?}");
        if valid {
            let text = String::from_utf8_lossy(&out.stdout);
            for field in [
                "module_id:",
                "timestamp:",
                "pcr0:",
                "user_data:",
                "nonce:",
                "public_key:",
            ] {
                assert!(text.contains(field), "{file}: no {field} in {text}");
            }
            assert!(text.contains(doc["pcr0"].as_str().expect("pcr0")));
            // Without --at it verifies at the document's own timestamp and says so.
            let own = attestlog(&["attestation", "verify", file]);
            assert!(own.status.success(), "{file}: {own:?}");
            assert!(String::from_utf8_lossy(&own.stdout).contains("own timestamp"));
            // One day later the chain has expired: one line naming the check.
            let late = attestlog(&[
                "attestation",
                "verify",
                file,
                "--at",
                &(at + 86_400).to_string(),
            ]);
            assert_eq!(late.status.code(), Some(1));
            assert!(
                stderr_line(&late).contains("certificate_expired"),
                "{late:?}"
            );
        } else {
            assert!(stderr_line(&out).contains("untrusted_root"), "{out:?}");
        }

        let json = attestlog(&[
            "attestation",
            "verify",
            file,
            "--at",
            &at.to_string(),
            "--json",
        ]);
        assert_eq!(json.status.success(), valid);
        let obj: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
        assert_eq!(obj["valid"], valid);
        assert_eq!(obj["pcrs"]["0"], doc["pcr0"]);
        for field in [
            "module_id",
            "timestamp_ms",
            "user_data",
            "nonce",
            "public_key",
            "error",
        ] {
            assert!(obj.get(field).is_some(), "{file}: --json lacks {field}");
        }
    }
}

#[test]
fn attestation_verify_rfc3339_time_and_roots() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let file = shared.join("nitro-samples/nitro-validator-2026-01-03.cbor");
    let out = attestlog(&[
        "attestation",
        "verify",
        file.to_str().expect("path"),
        "--at",
        "2026-01-03T20:41:07Z",
    ]);
    assert!(out.status.success(), "{out:?}");
    // The AWS root passed again as --root changes nothing.
    let root = shared.join("nitro-samples/aws-nitro-root-g1.pem");
    let out = attestlog(&[
        "attestation",
        "verify",
        file.to_str().expect("path"),
        "--root",
        root.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn garbage_inputs_give_one_line_and_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"\x84\x44garbage").expect("write");
    let g = garbage.to_str().expect("path");
    for args in [
        vec!["attestation", "verify", g],
        vec!["attestation", "verify", "/nonexistent/file"],
        vec!["attestation", "verify", g, "--at", "yesterday"],
        vec!["checkpoint", "verify", g, "--key", "nonsense"],
        vec!["verify", "--bundle", g, "--artifact", g, "--policy", g],
        vec!["no-such-command"],
    ] {
        let out = attestlog(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let line = stderr_line(&out);
        assert!(line.starts_with("error:"), "{args:?}: {line}");
    }
}

#[test]
fn checkpoint_verify_with_vectors() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let text = std::fs::read_to_string(shared.join("vectors/signed-note.json")).expect("vectors");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cp = &v["checkpoint_example"];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("checkpoint");
    let cosigned = format!(
        "{}{}",
        cp["size_8"].as_str().expect("cp"),
        cp["witness_cosignature_v1"]["line"].as_str().expect("line")
    );
    std::fs::write(&file, &cosigned).expect("write");
    let f = file.to_str().expect("path");
    let key = cp["verifier_key"].as_str().expect("key");
    let witness = cp["witness_cosignature_v1"]["verifier_key"]
        .as_str()
        .expect("w");

    let out = attestlog(&[
        "checkpoint",
        "verify",
        f,
        "--key",
        key,
        "--witness",
        witness,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("size 8"));

    // A second witness that did not cosign: quorum 2 fails, quorum 1 passes.
    let other =
        attestlog::tlog::cosignature::CosignatureSigner::generate("w2.example").expect("w2");
    let w2 = other.verifier_key_text();
    let out = attestlog(&[
        "checkpoint",
        "verify",
        f,
        "--key",
        key,
        "--witness",
        witness,
        "--witness",
        &w2,
    ]);
    assert!(stderr_line(&out).contains("witness_quorum"), "{out:?}");
    let out = attestlog(&[
        "checkpoint",
        "verify",
        f,
        "--key",
        key,
        "--witness",
        witness,
        "--witness",
        &w2,
        "--quorum",
        "1",
    ]);
    assert!(out.status.success(), "{out:?}");

    // Another log key with the same name: not signed by it.
    let impostor = attestlog::tlog::note::NoteSigner::generate("example.com/test").expect("key");
    let out = attestlog(&[
        "checkpoint",
        "verify",
        f,
        "--key",
        &impostor.verifier_key_text(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    stderr_line(&out);
}

#[test]
fn verify_bundle_end_to_end() {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let artifact = b"the artifact".to_vec();
    let log = TestLog::new(
        vec![
            b"first".to_vec(),
            entry(&nsm, &artifact, &commit(7), &pcrs(10)),
        ],
        1,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_str().expect("path").to_string();
    std::fs::write(p("root.pem"), nsm.root_pem()).expect("root");
    std::fs::write(p("policy.toml"), log.policy_toml("root.pem", &pcrs(10), 1)).expect("policy");
    std::fs::write(p("hello"), &artifact).expect("artifact");
    std::fs::write(p("hello.attestlog.json"), log.bundle(1, 1).to_json()).expect("bundle");

    let args = [
        "verify",
        "--bundle",
        &p("hello.attestlog.json"),
        "--artifact",
        &p("hello"),
        "--policy",
        &p("policy.toml"),
    ];
    let out = attestlog(&args);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&commit(7)) && text.contains("builder-v1"),
        "{text}"
    );

    std::fs::write(p("hello"), b"the artifacT").expect("tamper");
    let out = attestlog(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("artifact_not_in_subjects"));
}

/// A statement whose subject name and repository carry a screen clear, a
/// carriage return and a right-to-left override: `attestlog verify` prints
/// them escaped, on stdout when valid and in the one error line when the
/// repository is refused, and never a raw control byte.
#[test]
fn statement_strings_reach_the_terminal_escaped() {
    use attestlog::claim::{statement_user_data, Entry, StatementParams, Subject};
    use attestlog::claim::{BuildDefinition, SourceDependency, SourceRef, Statement};
    use attestlog::nitro::sim::AttestationRequest;

    const EVIL: &str = "\u{1b}[2J\r\u{202e}";
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let artifact = b"the artifact".to_vec();
    let (_, stmt) = Statement::build(&StatementParams {
        subjects: vec![Subject {
            name: format!("hello{EVIL}exe.txt"),
            sha256: sha256(&artifact),
        }],
        source: SourceDependency {
            uri: format!("git+https://example.com/{EVIL}hello.git"),
            git_commit: commit(7),
        },
        source_ref: SourceRef::Ref("refs/heads/main".into()),
        build_definition: BuildDefinition::Repository {
            path: "attestlog-build.toml".into(),
            sha256: [7; 32],
        },
        builder_id: format!("https://attestlog.test/builder{EVIL}"),
        builder_version: "0.1.0".into(),
        command: vec!["make".into()],
        started_on: "2026-11-19T00:00:00Z".into(),
        finished_on: "2026-11-19T00:01:00Z".into(),
        internal_parameters: serde_json::json!({}),
        submodules: Vec::new(),
    })
    .expect("statement");
    let request = AttestationRequest {
        user_data: Some(statement_user_data(&stmt).to_vec()),
        nonce: None,
        public_key: None,
    };
    let doc = nsm.attest(&request, &pcrs(10), NOW_MS).expect("attest");
    let log = TestLog::new(vec![Entry::encode(&stmt, &doc).expect("entry")], 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_str().expect("path").to_string();
    std::fs::write(p("root.pem"), nsm.root_pem()).expect("root");
    let refusing = log.policy_toml("root.pem", &pcrs(10), 1);
    let any_repo = refusing.replace(&format!("allowed_repositories = [{REPO:?}]"), "");
    std::fs::write(p("refusing.toml"), refusing).expect("policy");
    std::fs::write(p("any.toml"), any_repo).expect("policy");
    std::fs::write(p("hello"), &artifact).expect("artifact");
    std::fs::write(p("hello.attestlog.json"), log.bundle(0, 1).to_json()).expect("bundle");
    let verify = |policy: &str| {
        attestlog(&[
            "verify",
            "--bundle",
            &p("hello.attestlog.json"),
            "--artifact",
            &p("hello"),
            "--policy",
            &p(policy),
        ])
    };
    let raw_control = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.chars()
            .find(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
    };

    let ok = verify("any.toml");
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(raw_control(&ok.stdout), None, "{ok:?}");
    assert_eq!(raw_control(&ok.stderr), None, "{ok:?}");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.contains("valid: hello\\u{1b}[2J\\u{d}\\u{202e}exe.txt (sha256 "),
        "{text}"
    );
    assert!(
        text.contains("example.com/\\u{1b}[2J\\u{d}\\u{202e}hello.git"),
        "{text}"
    );
    assert!(
        text.contains("builder\\u{1b}[2J\\u{d}\\u{202e} in enclave image"),
        "{text}"
    );

    let refused = verify("refusing.toml");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(raw_control(&refused.stderr), None, "{refused:?}");
    let line = stderr_line(&refused);
    assert!(
        line.starts_with("error: repository_not_allowed: "),
        "{line}"
    );
    assert!(line.contains("\\u{202e}hello.git"), "{line}");
}
