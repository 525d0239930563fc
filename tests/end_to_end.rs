//! The whole flow with real processes: a git repository holding a C
//! program, a real `attestlog-server` trusting a dev CA, `enclave-builder
//! build` with the simulated NSM inside bwrap, and verification of the
//! bundle both with the library and with the `attestlog` binary. Then every
//! way it must fail, the sandbox's walls, and bad inputs. The host and
//! enclave halves are in `split_halves.rs`.
//!
//! Needs `git`, `bwrap` and `cc` (scripts/test.sh installs them), and the
//! `enclave-builder`, `attestlog-server` and `attestlog` binaries, which
//! `cargo test --workspace` builds into the same target directory. Without
//! them the tests print why and skip.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use attestlog::bundle::Bundle;
use attestlog::policy::Policy;
use attestlog::tlog::note::NoteSigner;
use attestlog::verify::BundleVerifier;
use common::*;
use sha2::{Digest, Sha256};

#[test]
fn build_log_and_verify_then_every_tampering_fails() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let t = Instant::now();
    let out = w.build(&c1, "out1", &[]);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let _ = writeln!(std::io::stderr(), "e2e build took {:?}", t.elapsed());
    let artifact_path = w.tmp.path().join("out1/hello");
    let bundle_path = w.tmp.path().join("out1/hello.attestlog.json");
    let artifact = std::fs::read(&artifact_path).unwrap();
    let bundle = Bundle::parse(&std::fs::read(&bundle_path).unwrap()).unwrap();
    // The artifact runs.
    let run = Command::new(&artifact_path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");

    let pcrs = w.pcrs();
    let good = w.policy("good.toml", &pcrs, &w.server.key, false);
    assert_eq!(verify_code(&good, &bundle, &artifact), Ok(c1.clone()));

    // The attestlog binary agrees, when cargo built it next to us.
    match target_bin("attestlog") {
        Some(cli) => {
            let out = Command::new(&cli)
                .args(["verify", "--bundle"])
                .arg(&bundle_path)
                .arg("--artifact")
                .arg(&artifact_path)
                .arg("--policy")
                .arg(&good)
                .output()
                .unwrap();
            assert!(out.status.success(), "attestlog verify: {}", stderr(&out));
            let mut flipped = artifact.clone();
            flipped[100] ^= 1;
            let fp = w.tmp.path().join("flipped");
            std::fs::write(&fp, &flipped).unwrap();
            let out = Command::new(&cli)
                .args(["verify", "--bundle"])
                .arg(&bundle_path)
                .arg("--artifact")
                .arg(&fp)
                .arg("--policy")
                .arg(&good)
                .output()
                .unwrap();
            assert_fails_with(&out, "artifact_not_in_subjects");
        }
        None => skip("attestlog binary not built; checked with the library only"),
    }

    // A flipped byte in the artifact.
    let mut flipped = artifact.clone();
    flipped[100] ^= 1;
    assert_eq!(
        verify_code(&good, &bundle, &flipped).unwrap_err(),
        "artifact_not_in_subjects"
    );

    // A policy with other PCRs, and one that revokes the measurement.
    let mut other = pcrs.clone();
    other[1] = "00".repeat(47) + "01";
    let other_policy = w.policy("other.toml", &other, &w.server.key, false);
    assert_eq!(
        verify_code(&other_policy, &bundle, &artifact).unwrap_err(),
        "measurement_not_endorsed"
    );
    let revoking = w.policy("revoked.toml", &pcrs, &w.server.key, true);
    assert_eq!(
        verify_code(&revoking, &bundle, &artifact).unwrap_err(),
        "measurement_revoked"
    );

    // A tampered entry (the attestation's signature), proof and checkpoint.
    let mut t_entry = bundle.clone();
    let last = t_entry.entry.len() - 1;
    t_entry.entry[last] ^= 1;
    assert_eq!(
        verify_code(&good, &t_entry, &artifact).unwrap_err(),
        "cose_signature"
    );
    let mut t_statement = bundle.clone();
    let pos = t_statement
        .entry
        .windows(5)
        .position(|w| w == b"hello")
        .unwrap();
    t_statement.entry[pos] = b'j';
    let code = verify_code(&good, &t_statement, &artifact).unwrap_err();
    assert!(
        code == "user_data_mismatch",
        "statement tampering gave {code}"
    );
    let mut t_proof = bundle.clone();
    if t_proof.proof.hashes.is_empty() {
        t_proof.proof.index += 1;
    } else {
        t_proof.proof.hashes[0][0] ^= 1;
    }
    let code = verify_code(&good, &t_proof, &artifact).unwrap_err();
    assert!(code == "inclusion_proof", "proof tampering gave {code}");
    let mut t_cp = bundle.clone();
    let sig_line = t_cp.proof.checkpoint.rfind("— ").unwrap();
    let bytes = unsafe_flip(&t_cp.proof.checkpoint, sig_line + 40);
    t_cp.proof.checkpoint = bytes;
    assert_eq!(
        verify_code(&good, &t_cp, &artifact).unwrap_err(),
        "invalid_log_signature"
    );

    // The same checkpoint body signed by another key with the log's name.
    let body = bundle
        .proof
        .checkpoint
        .split("\n\n")
        .next()
        .unwrap()
        .to_string()
        + "\n";
    let impostor = NoteSigner::generate(ORIGIN).unwrap();
    let mut t_key = bundle.clone();
    t_key.proof.checkpoint = impostor.sign(&body).unwrap();
    assert_eq!(
        verify_code(&good, &t_key, &artifact).unwrap_err(),
        "missing_log_signature"
    );
    // And a policy that trusts only the impostor's key refuses the real checkpoint.
    let impostor_policy = w.policy("impostor.toml", &pcrs, &impostor.verifier_key_text(), false);
    let code = verify_code(&impostor_policy, &bundle, &artifact).unwrap_err();
    assert!(
        code.contains("log_signature") || code == "unknown_log",
        "{code}"
    );
    // A policy's `log_origin` is enforced: the right origin verifies, any
    // other is refused even though the key matches.
    let good_text = std::fs::read_to_string(&good).unwrap();
    let with_origin = |name: &str, origin: &str| {
        let path = w.tmp.path().join(name);
        std::fs::write(&path, format!("log_origin = \"{origin}\"\n{good_text}")).unwrap();
        path
    };
    let same = with_origin("origin-same.toml", ORIGIN);
    assert_eq!(verify_code(&same, &bundle, &artifact), Ok(c1.clone()));
    let other = with_origin("origin-other.toml", "example.com/another-log");
    assert_eq!(
        verify_code(&other, &bundle, &artifact).unwrap_err(),
        "origin_mismatch"
    );

    // A bundle from another commit: a changed program gives another artifact...
    let c2 = commit(
        &w.repo,
        &[(
            "hello.c",
            &b"#include <stdio.h>\nint main(void){puts(\"bye\");return 0;}\n"[..],
        )],
    );
    let out = w.build(&c2, "out2", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle2 =
        Bundle::parse(&std::fs::read(w.tmp.path().join("out2/hello.attestlog.json")).unwrap())
            .unwrap();
    assert_eq!(
        verify_code(&good, &bundle2, &artifact).unwrap_err(),
        "artifact_not_in_subjects"
    );
    // ...and a commit that does not change the program yields a valid claim
    // naming that other commit, which a user pinning c1 refuses.
    let c3 = commit(&w.repo, &[("hello.c", HELLO_C), ("README", &b"docs\n"[..])]);
    let out = w.build(&c3, "out3", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle3 =
        Bundle::parse(&std::fs::read(w.tmp.path().join("out3/hello.attestlog.json")).unwrap())
            .unwrap();
    assert_eq!(
        std::fs::read(w.tmp.path().join("out3/hello")).unwrap(),
        artifact,
        "build is reproducible"
    );
    let named = verify_code(&good, &bundle3, &artifact).unwrap();
    assert_eq!(named, c3);
    assert_ne!(named, c1);
    let digest: [u8; 32] = Sha256::digest(&artifact).into();
    let pinned = BundleVerifier::new(Policy::load(&good).unwrap()).expect_commit(&c1);
    assert_eq!(
        pinned.verify(&bundle3, &digest).unwrap_err().code(),
        "commit_mismatch"
    );
    assert!(pinned.verify(&bundle, &digest).is_ok());
    if let Some(cli) = target_bin("attestlog") {
        let bundle3_path = w.tmp.path().join("out3/hello.attestlog.json");
        let pin = |commit: &str| {
            Command::new(&cli)
                .args(["verify", "--bundle"])
                .arg(&bundle3_path)
                .arg("--artifact")
                .arg(&artifact_path)
                .arg("--policy")
                .arg(&good)
                .args(["--commit", commit])
                .output()
                .unwrap()
        };
        assert_fails_with(&pin(&c1), "commit_mismatch");
        assert!(pin(&c3.to_ascii_uppercase()).status.success());
        assert_fails_with(&pin(&c3[..12]), "commit");
    }
    assert_eq!(tree_size(&w.server.url), 3);
}

/// Replaces the base64 character at `at` with another valid one.
fn unsafe_flip(text: &str, at: usize) -> String {
    let mut b = text.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Builds `cmd` and asserts it fails as `code` and that nothing was logged.
fn assert_build_refused(w: &World, commit: &str, cmd: &str, extra: &[&str], code: &str) -> String {
    let before = tree_size(&w.server.url);
    let mut args = vec!["--cmd", cmd, "--output", "hello"];
    args.extend_from_slice(extra);
    let out = w.build(commit, "refused", &args);
    assert_fails_with(&out, code);
    assert_eq!(
        tree_size(&w.server.url),
        before,
        "a refused build logged an entry"
    );
    assert!(!w.tmp.path().join("refused/hello.attestlog.json").exists());
    stderr(&out)
}

#[test]
fn sandbox_holds() {
    let Some(w) = World::new() else { return };
    let c = commit(&w.repo, &[("hello.c", HELLO_C)]);
    let cc = "cc -o hello hello.c";
    let port = w.server.url.rsplit(':').next().unwrap().to_string();
    let outside = w.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let key = w.ca.join("root.key.pem");
    let cases = [
        (
            "network",
            format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && {cc}"),
        ),
        (
            "write outside",
            format!("echo owned > {}/x && {cc}", outside.display()),
        ),
        ("write system", format!("echo owned > /usr/owned && {cc}")),
        (
            "read dev CA",
            format!("cat {} > leaked && {cc}", key.display()),
        ),
        (
            "see NSM",
            format!(
                "test -e /dev/nsm || test -e {} && {cc} || false",
                w.ca.display()
            ),
        ),
    ];
    for (what, cmd) in &cases {
        let err = assert_build_refused(&w, &c, cmd, &[], "build_failed");
        assert!(err.contains("build command failed"), "{what}: {err}");
    }
    assert!(!outside.join("x").exists());
    assert!(!Path::new("/usr/owned").exists());
    // Control: without the sandbox the same network and CA reads succeed, so
    // the refusals above are the sandbox's doing.
    for (what, cmd) in &cases[..1] {
        let out = w.build(
            &c,
            &format!("control-{}", what.replace(' ', "-")),
            &["--cmd", cmd, "--output", "hello", "--sandbox", "none"],
        );
        assert!(out.status.success(), "control {what}: {}", stderr(&out));
        assert!(stderr(&out).contains("UNSANDBOXED"));
    }
    let out = w.build(
        &c,
        "control-ca",
        &[
            "--cmd",
            &cases[3].1,
            "--output",
            "hello",
            "--sandbox",
            "none",
        ],
    );
    assert!(out.status.success(), "control read: {}", stderr(&out));
}

#[test]
fn failed_and_timed_out_builds_log_nothing() {
    let Some(w) = World::new() else { return };
    let c = commit(&w.repo, &[("hello.c", HELLO_C)]);
    let err = assert_build_refused(
        &w,
        &c,
        "echo compiler exploded >&2; exit 3",
        &[],
        "build_failed",
    );
    assert!(err.contains("compiler exploded"), "{err}");
    let t = Instant::now();
    let err = assert_build_refused(
        &w,
        &c,
        "sleep 30; cc -o hello hello.c",
        &["--timeout", "2"],
        "build_timeout",
    );
    assert!(
        t.elapsed().as_secs() < 15,
        "timeout not enforced: {:?}",
        t.elapsed()
    );
    assert!(err.contains("timed out after 2 s"), "{err}");
    // The memory limit: 64 MiB of address space cannot hold a 512 MiB buffer.
    if have("python3") {
        assert_build_refused(
            &w,
            &c,
            "python3 -c 'b = bytearray(512 * 1024 * 1024)' && cc -o hello hello.c",
            &["--memory", "256"],
            "build_failed",
        );
    }
}

#[test]
fn bad_inputs_are_refused_without_a_log_entry() {
    let Some(w) = World::new() else { return };
    let c = w.commit_hello();
    let before = tree_size(&w.server.url);
    let build_in = |repo: &Path, commit: &str, extra: &[&str]| {
        Command::new(builder_bin())
            .arg("build")
            .arg("--repo")
            .arg(repo)
            .args(["--commit", commit, "--nsm", "simulated", "--dev-ca"])
            .arg(&w.ca)
            .arg("--out")
            .arg(w.tmp.path().join("bad"))
            .args(extra)
            .output()
            .unwrap()
    };
    let log = w.measured_args();
    let log: Vec<&str> = log.iter().map(String::as_str).collect();

    let out = build_in(&w.tmp.path().join("no-such-repo"), &c, &log);
    assert_fails_with(&out, "missing_repo");
    let out = build_in(&w.repo, &"0123456789abcdef".repeat(3)[..40], &log);
    assert_fails_with(&out, "commit_not_found");
    let out = build_in(&w.repo, &c[..12], &log);
    assert_fails_with(&out, "abbreviated_commit");
    let out = build_in(&w.repo, "main", &log);
    assert_fails_with(&out, "abbreviated_commit");
    // With --ref the branch is resolved and both are recorded.
    let mut with_ref = log.clone();
    with_ref.extend(["--ref", "main"]);
    let out = build_in(&w.repo, &c[..12], &with_ref);
    assert!(out.status.success(), "--ref build: {}", stderr(&out));
    let bundle =
        Bundle::parse(&std::fs::read(w.tmp.path().join("bad/hello.attestlog.json")).unwrap())
            .unwrap();
    let entry = attestlog::claim::Entry::decode(&bundle.entry).unwrap();
    let text = String::from_utf8_lossy(entry.statement).to_string();
    assert!(
        text.contains("\"sourceRef\":{\"name\":\"refs/heads/main\"}") && text.contains(&c),
        "{text}"
    );
    std::fs::remove_dir_all(w.tmp.path().join("bad")).unwrap();
    let before = before + 1;

    // A dirty tree: a CRLF file committed before a .gitattributes that
    // declares it LF shows as modified right after a fresh checkout.
    let dirty_repo = w.tmp.path().join("dirty");
    commit(
        &dirty_repo,
        &[("hello.c", b"int main(void){return 0;}\r\n")],
    );
    std::fs::write(dirty_repo.join(".gitattributes"), "*.c text eol=lf\n").unwrap();
    git(&dirty_repo, &["add", ".gitattributes"]);
    git(&dirty_repo, &["commit", "-q", "-m", "attributes"]);
    let dirty = git(&dirty_repo, &["rev-parse", "HEAD"]);
    let out = build_in(&dirty_repo, &dirty, &log);
    assert_fails_with(&out, "dirty_tree");

    let mut missing = log.clone();
    missing.extend(["--output", "not-built"]);
    let out = build_in(&w.repo, &c, &missing);
    assert_fails_with(&out, "missing_output");

    // An unreachable log: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut unreachable = vec!["--log", &dead, "--log-key", &w.server.key];
    unreachable.extend(&log[4..]);
    let out = build_in(&w.repo, &c, &unreachable);
    assert_fails_with(&out, "log_unreachable");

    assert_eq!(
        tree_size(&w.server.url),
        before,
        "a refused input reached the log"
    );
    assert!(!w.tmp.path().join("bad/hello.attestlog.json").exists());

    // A log answer that fails verification: the checkpoint is not signed by
    // the key we were given. The log did sequence the entry (it cannot know),
    // but the builder writes no bundle and says why.
    let other = NoteSigner::generate(ORIGIN).unwrap().verifier_key_text();
    let mut wrong_key = vec!["--log", &w.server.url, "--log-key", &other];
    wrong_key.extend(&log[4..]);
    let out = build_in(&w.repo, &c, &wrong_key);
    assert_fails_with(&out, "log_answer_invalid");
    assert!(!w.tmp.path().join("bad/hello.attestlog.json").exists());
    assert!(!w.tmp.path().join("bad/hello").exists());
}
