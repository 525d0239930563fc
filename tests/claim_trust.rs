//! What a claim may say about the build definition and the source ref, with
//! real processes: a real `attestlog-server`, real git repositories,
//! `enclave-builder build`/`host`/`enclave`, and `attestlog verify`.
//!
//! - The enclave takes the build definition only from the repository: a
//!   test process plays a malicious host and sends a job with `cmd` and
//!   `outputs` to a real enclave, which refuses it and logs nothing.
//! - `build --cmd/--output` is recorded as an override, which `attestlog
//!   verify` refuses unless the policy allows it.
//! - A commit no branch or tag contains (here reachable only through
//!   `refs/pull/1/head`) is refused unless the operator opts in, which the
//!   statement records; the policy's `required_refs` pick refs.
//! - Output names that collide with each other or with a bundle name are
//!   refused before building, and by the host before writing.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use attestlog::bundle::Bundle;
use attestlog::claim::{BuildDefinition, Entry, SourceRef, Statement};
use common::*;
use enclave_builder::hostsplit::prepare_job;
use enclave_builder::transport::{ArtifactMsg, Channel, Job, JobResult, Message};

/// The policy `w.policy` writes for the build's PCRs, with `top` (top-level
/// keys) in front.
fn policy_with(w: &World, name: &str, pcrs: &[String], top: &str) -> PathBuf {
    let base = w.policy(&format!("base-{name}"), pcrs, &w.server.key, false);
    let text = format!("{top}\n{}", std::fs::read_to_string(base).unwrap());
    let path = w.tmp.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `attestlog verify` of `<out>/hello` under `policy`.
fn cli_verify(w: &World, out: &str, policy: &Path) -> Option<Output> {
    let Some(cli) = target_bin("attestlog") else {
        skip("attestlog binary not built; checked with the library only");
        return None;
    };
    let dir = w.tmp.path().join(out);
    Some(
        Command::new(cli)
            .args(["verify", "--bundle"])
            .arg(dir.join("hello.attestlog.json"))
            .arg("--artifact")
            .arg(dir.join("hello"))
            .arg("--policy")
            .arg(policy)
            .output()
            .unwrap(),
    )
}

/// The bundle and the artifact built into `<tmp>/<out>`, and the parsed statement.
fn built(w: &World, out: &str) -> (Bundle, Vec<u8>, Statement) {
    let dir = w.tmp.path().join(out);
    let bundle = Bundle::parse(&std::fs::read(dir.join("hello.attestlog.json")).unwrap()).unwrap();
    let artifact = std::fs::read(dir.join("hello")).unwrap();
    let statement = Statement::parse(Entry::decode(&bundle.entry).unwrap().statement).unwrap();
    (bundle, artifact, statement)
}

/// Plays the host: listens on `<name>.sock`, starts a real enclave half
/// (host-bundle mode), sends `job`, answers any log submission through the
/// real log, and returns the enclave's result, whether it submitted, and
/// its output.
fn send_job(w: &World, name: &str, job: Job) -> (JobResult, bool, Output) {
    let (enclave, stream) = w.connect_enclave(name);
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let mut ch = Channel::new(stream);
    ch.send(&Message::Job(Box::new(job))).unwrap();
    let mut submitted = false;
    let result = loop {
        match ch.recv().unwrap() {
            Message::LogSubmit { entry } => {
                submitted = true;
                let (status, body) =
                    enclave_builder::submit::post_entry_http(&w.server.url, &entry).unwrap();
                ch.send(&Message::LogAnswer {
                    status,
                    body,
                    error: None,
                })
                .unwrap();
            }
            Message::Result(r) => break r,
            other => panic!("unexpected {other:?}"),
        }
    };
    (result, submitted, enclave.wait_with_output().unwrap())
}

fn err_code(r: &JobResult) -> &str {
    match r {
        JobResult::Err { code, .. } => code,
        JobResult::Ok { .. } => "ok",
    }
}

#[test]
fn enclave_refuses_a_host_build_definition() {
    let Some(w) = World::new() else { return };
    let c = w.commit_hello();
    let job = prepare_job(&w.host_job(&c)).unwrap();
    assert_eq!(job.source_ref.as_deref(), Some("refs/heads/main"));
    let evil_cmd = Job {
        cmd: Some("printf EVIL > out".into()),
        outputs: vec!["out".into()],
        ..job.clone()
    };
    let evil_outputs = Job {
        outputs: vec!["hello.c".into()],
        ..job.clone()
    };
    let evil_only_cmd = Job {
        cmd: Some("printf EVIL > hello".into()),
        ..job.clone()
    };
    for (name, evil) in [
        ("cmd", evil_cmd),
        ("outputs", evil_outputs),
        ("only-cmd", evil_only_cmd),
    ] {
        let (result, submitted, out) = send_job(&w, name, evil);
        assert_eq!(err_code(&result), "host_build_definition", "{name}");
        assert!(!submitted, "{name}: the enclave submitted an entry");
        assert_fails_with(&out, "host_build_definition");
    }
    assert_eq!(tree_size(&w.server.url), 0, "a refused job reached the log");

    // The host command line refuses them too, before cloning anything.
    let sock = w.tmp.path().join("cli.sock");
    let out = w
        .host_command(&sock, &c, &w.tmp.path().join("cli-out"))
        .args(["--cmd", "printf EVIL > out", "--output", "out"])
        .output()
        .unwrap();
    assert_fails_with(&out, "host_build_definition");
    assert!(!sock.exists());

    // Control: the same job untouched builds, records the repository's
    // definition and the ref, and verifies.
    let (result, submitted, out) = send_job(&w, "honest", job);
    assert!(submitted, "{}", stderr(&out));
    let JobResult::Ok { artifacts, .. } = result else {
        panic!("honest job failed: {result:?}")
    };
    let hello = artifacts.iter().find(|a| a.name == "hello").unwrap();
    let bundle = Bundle::parse(&hello.bundle).unwrap();
    let s = Statement::parse(Entry::decode(&bundle.entry).unwrap().statement).unwrap();
    assert!(matches!(
        s.build_definition,
        Some(BuildDefinition::Repository { ref path, sha256 })
            if path == "attestlog-build.toml" && sha256 == sha2_256(BUILD_TOML)
    ));
    assert_eq!(s.source_ref, Some(SourceRef::Ref("refs/heads/main".into())));
    let good = policy_with(&w, "split.toml", &w.enclave_pcrs(), "");
    assert_eq!(verify_code(&good, &bundle, &hello.bytes), Ok(c));
    assert_eq!(tree_size(&w.server.url), 1);
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn command_line_override_is_recorded_and_refused_by_default() {
    let Some(w) = World::new() else { return };
    let c = w.commit_hello();
    let out = w.build(
        &c,
        "override",
        &["--cmd", "cc -O0 -o hello hello.c", "--output", "hello"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (bundle, artifact, s) = built(&w, "override");
    assert_eq!(s.build_definition, Some(BuildDefinition::Override));
    let pcrs = w.pcrs();
    let strict = policy_with(&w, "strict.toml", &pcrs, "");
    assert_eq!(
        verify_code(&strict, &bundle, &artifact),
        Err("build_definition_override".into())
    );
    let lax = policy_with(&w, "lax.toml", &pcrs, "allow_build_override = true");
    assert_eq!(verify_code(&lax, &bundle, &artifact), Ok(c));
    if let Some(out) = cli_verify(&w, "override", &strict) {
        assert_fails_with(&out, "build_definition_override");
    }
    if let Some(out) = cli_verify(&w, "override", &lax) {
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("override") && text.contains("contained in refs/heads/main"),
            "{text}"
        );
    }
}

#[test]
fn unreferenced_commit_is_refused_unless_opted_in_and_refs_are_policy() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    git(&w.repo, &["tag", "v1.0", &c1]);
    // c2 exists in the repository but only a pull-request ref reaches it,
    // as a commit fetched through a repository's URL from a fork does.
    git(&w.repo, &["checkout", "-q", "-b", "fork-work"]);
    let c2 = commit(
        &w.repo,
        &[(
            "hello.c",
            &b"#include <stdio.h>\nint main(void){puts(\"fork\");return 0;}\n"[..],
        )],
    );
    git(&w.repo, &["update-ref", "refs/pull/1/head", &c2]);
    git(&w.repo, &["checkout", "-q", "main"]);
    git(&w.repo, &["branch", "-q", "-D", "fork-work"]);

    let out = w.build(&c2, "refused", &[]);
    assert_fails_with(&out, "unreferenced_commit");
    assert_eq!(tree_size(&w.server.url), 0);
    assert!(!w.tmp.path().join("refused").exists());

    // The host refuses it too, before an enclave is involved.
    let sock = w.tmp.path().join("host.sock");
    let out = w
        .host_command(&sock, &c2, &w.tmp.path().join("host-out"))
        .output()
        .unwrap();
    assert_fails_with(&out, "unreferenced_commit");
    // A host-bundle enclave records the host's ref and refuses a job that
    // names none without the opt-in.
    let mut job = prepare_job(&w.host_job(&c1)).unwrap();
    job.source_ref = None;
    let (result, submitted, _) = send_job(&w, "no-ref", job.clone());
    assert_eq!(err_code(&result), "unreferenced_commit");
    job.source_ref = Some("refs/pull/1/head".into());
    let (result, _, _) = send_job(&w, "pull-ref", job);
    assert_eq!(err_code(&result), "bad_source_ref");
    assert!(!submitted);
    assert_eq!(tree_size(&w.server.url), 0);

    // With the opt-in it builds, and the statement says so.
    let out = w.build(&c2, "optin", &["--allow-unreferenced-commit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (bundle, artifact, s) = built(&w, "optin");
    assert_eq!(s.source_ref, Some(SourceRef::Unreferenced));
    let pcrs = w.pcrs();
    let strict = policy_with(&w, "strict.toml", &pcrs, "");
    assert_eq!(
        verify_code(&strict, &bundle, &artifact),
        Err("unreferenced_commit".into())
    );
    let lax = policy_with(&w, "lax.toml", &pcrs, "allow_unreferenced_commits = true");
    assert_eq!(verify_code(&lax, &bundle, &artifact), Ok(c2));
    let lax_main = policy_with(
        &w,
        "lax-main.toml",
        &pcrs,
        "allow_unreferenced_commits = true\nrequired_refs = [\"refs/heads/main\"]",
    );
    assert_eq!(
        verify_code(&lax_main, &bundle, &artifact),
        Err("ref_not_allowed".into())
    );
    if let Some(out) = cli_verify(&w, "optin", &strict) {
        assert_fails_with(&out, "unreferenced_commit");
    }

    // c1: the default branch is recorded, unless --ref names the tag.
    let out = w.build(&c1, "main", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (main_bundle, main_artifact, s) = built(&w, "main");
    assert_eq!(s.source_ref, Some(SourceRef::Ref("refs/heads/main".into())));
    let out = w.build(&c1, "tag", &["--ref", "v1.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (tag_bundle, tag_artifact, s) = built(&w, "tag");
    assert_eq!(s.source_ref, Some(SourceRef::Ref("refs/tags/v1.0".into())));
    let tags_only = policy_with(&w, "tags.toml", &pcrs, "required_refs = [\"refs/tags/v*\"]");
    assert_eq!(
        verify_code(&tags_only, &main_bundle, &main_artifact),
        Err("ref_not_allowed".into())
    );
    assert_eq!(
        verify_code(&tags_only, &tag_bundle, &tag_artifact),
        Ok(c1.clone())
    );
    if let Some(out) = cli_verify(&w, "tag", &tags_only) {
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("contained in refs/tags/v1.0")
                && text.contains("build definition attestlog-build.toml"),
            "{text}"
        );
    }
    if let Some(out) = cli_verify(&w, "main", &tags_only) {
        assert_fails_with(&out, "ref_not_allowed");
    }
    assert_eq!(tree_size(&w.server.url), 3);
}

#[test]
fn colliding_output_names_are_refused_before_building() {
    let Some(w) = World::new() else { return };
    let toml = b"command = \"cc -o hello hello.c && cp hello hello.attestlog.json\"\n\
                 outputs = [\"hello\", \"hello.attestlog.json\"]\n";
    let c = commit(
        &w.repo,
        &[("hello.c", HELLO_C), ("attestlog-build.toml", &toml[..])],
    );
    let out = w.build(&c, "collide", &[]);
    assert_fails_with(&out, "output_name_collision");
    let out = w.build(
        &c,
        "collide",
        &["--cmd", "true", "--output", "a/x", "--output", "b/x"],
    );
    assert_fails_with(&out, "output_name_collision");
    assert_eq!(tree_size(&w.server.url), 0);
    assert!(!w.tmp.path().join("collide").exists());
}

#[test]
fn host_refuses_colliding_artifact_names_before_writing() {
    let Some(w) = World::new() else { return };
    let c = w.commit_hello();
    let sock = w.tmp.path().join("host.sock");
    let out_dir = w.tmp.path().join("host-out");
    let host = w
        .host_command(&sock, &c, &out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !sock.exists() {
        assert!(t.elapsed().as_secs() < 60, "host never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A malicious enclave: returns an artifact named like another's bundle.
    let stream = UnixStream::connect(&sock).unwrap();
    let mut ch = Channel::new(stream);
    let Message::Job(_) = ch.recv().unwrap() else {
        panic!("expected a job")
    };
    let artifact = |name: &str| ArtifactMsg {
        name: name.into(),
        bytes: b"EVIL".to_vec(),
        mode: 0o755,
        bundle: b"{}".to_vec(),
    };
    ch.send(&Message::Result(JobResult::Ok {
        commit: c,
        index: 0,
        artifacts: vec![artifact("hello"), artifact("hello.attestlog.json")],
    }))
    .unwrap();
    let out = host.wait_with_output().unwrap();
    assert_fails_with(&out, "output_name_collision");
    let written: Vec<_> = std::fs::read_dir(&out_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "the host wrote {written:?}");
}
