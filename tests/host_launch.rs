//! The host starting a fresh enclave for every job: as a local process
//! (both for CLI jobs and for signed GitHub webhook events), and through
//! `nitro-cli`, here a stand-in script that records its arguments and runs
//! the enclave half on this machine (there is no Nitro hypervisor here).
//! Each build is checked end to end: a real `attestlog-server`, the enclave
//! half building in bwrap with the simulated NSM, and `BundleVerifier`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use attestlog::bundle::Bundle;
use common::webhook::{next_job_line, post, sign, webhook_url, SECRET};
use common::*;

fn assert_verifies(w: &World, out: &Path, commit: &str) {
    let artifact = std::fs::read(out.join("hello")).unwrap();
    let bundle = Bundle::parse(&std::fs::read(out.join("hello.attestlog.json")).unwrap()).unwrap();
    let policy = w.policy("launch.toml", &w.enclave_pcrs(), &w.server.key, false);
    assert_eq!(
        verify_code(&policy, &bundle, &artifact),
        Ok(commit.to_string())
    );
}

/// Signed `push` and `workflow_job` events each build in a fresh local
/// enclave; unsigned and badly signed ones are refused and build nothing.
#[test]
fn webhook_events_build_in_a_fresh_enclave_each() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let secret_file = w.tmp.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let sock = w.tmp.path().join("hook.sock");
    let out = w.tmp.path().join("hook-out");
    let mut host = Command::new(builder_bin())
        .arg("host")
        .arg("--listen-unix")
        .arg(&sock)
        .args(["--log", &w.server.url, "--out"])
        .arg(&out)
        .args(["--webhook-listen", "127.0.0.1:0", "--webhook-secret-file"])
        .arg(&secret_file)
        .arg("--")
        .args(w.enclave_argv(&sock))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let hook = webhook_url(&mut lines);

    let repo = w.repo.display().to_string();
    let push = serde_json::json!({"ref": "refs/heads/main", "after": c1,
        "repository": {"clone_url": repo}})
    .to_string();
    let (status, body) = post(&hook, "push", push.as_bytes(), "sha256=00");
    assert_eq!(status, 401, "{body}");
    let forged = sign(b"another body");
    assert_eq!(post(&hook, "push", push.as_bytes(), &forged).0, 401);
    assert_eq!(
        tree_size(&w.server.url),
        0,
        "a refused event built something"
    );

    let (status, body) = post(&hook, "push", push.as_bytes(), &sign(push.as_bytes()));
    assert_eq!(status, 202, "{body}");
    let line = next_job_line(&mut lines);
    assert_eq!(line, format!("built {repo} {c1} -> log index 0"));
    assert_verifies(&w, &out.join(&c1), &c1);

    let c2 = commit(
        &w.repo,
        &[(
            "hello.c",
            b"#include <stdio.h>\nint main(void){puts(\"again\");return 0;}\n",
        )],
    );
    let job = serde_json::json!({"action": "queued", "workflow_job": {"head_sha": c2},
        "repository": {"clone_url": repo}})
    .to_string();
    let (status, body) = post(&hook, "workflow_job", job.as_bytes(), &sign(job.as_bytes()));
    assert_eq!(status, 202, "{body}");
    let line = next_job_line(&mut lines);
    assert_eq!(line, format!("built {repo} {c2} -> log index 1"));
    assert_verifies(&w, &out.join(&c2), &c2);
    let run = Command::new(out.join(&c2).join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "again\n");
    assert_eq!(tree_size(&w.server.url), 2);
    let _ = host.kill();
    let _ = host.wait();
}

/// Writes a stand-in `nitro-cli` that records its arguments in `calls` and,
/// on `run-enclave`, starts `enclave` in the background and prints what
/// the real one prints (`flags` goes into the JSON's `Flags`).
fn fake_nitro_cli(dir: &Path, enclave: &[String], flags: &str) -> (PathBuf, PathBuf) {
    let script = dir.join("nitro-cli");
    let calls = dir.join("nitro-cli.calls");
    let pid = dir.join("enclave.pid");
    let quoted: Vec<String> = enclave.iter().map(|a| format!("'{a}'")).collect();
    let text = format!(
        "#!/bin/sh\necho \"$*\" >> '{calls}'\ncase \"$1\" in\n\
         run-enclave)\n  {cmd} </dev/null >'{dir}/enclave.log' 2>&1 &\n  echo $! > '{pid}'\n  \
         echo 'Start allocating memory...'\n  \
         echo 'Started enclave with enclave-cid: 16, memory: 2048 MiB, cpu-ids: [1]'\n  \
         printf '{{\\n  \"EnclaveName\": \"builder\",\\n  \"EnclaveID\": \"i-0test-enc0001\",\\n  \"EnclaveCID\": 16,\\n  \"Flags\": \"{flags}\"\\n}}\\n'\n  ;;\n\
         terminate-enclave)\n  kill \"$(cat '{pid}')\" 2>/dev/null\n  echo \"Successfully terminated enclave $3.\"\n  ;;\n\
         *) echo \"unexpected $1\" >&2; exit 1 ;;\nesac\n",
        calls = calls.display(),
        pid = pid.display(),
        dir = dir.display(),
        cmd = quoted.join(" "),
    );
    std::fs::write(&script, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

fn host_with(w: &World, sock: &Path, out: &Path, commit: &str, launch: &[String]) -> Output {
    w.host_command(sock, commit, out)
        .args(launch)
        .output()
        .unwrap()
}

/// `--eif` runs `nitro-cli run-enclave` without debug mode, builds in the
/// enclave it started and terminates that enclave by its id afterwards.
#[test]
fn eif_jobs_run_and_terminate_an_enclave_through_nitro_cli() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let sock = w.tmp.path().join("nitro.sock");
    let (nitro_cli, calls) = fake_nitro_cli(w.tmp.path(), &w.enclave_argv(&sock), "NONE");
    let out = w.tmp.path().join("nitro-out");
    let launch: Vec<String> = [
        "--eif",
        "/srv/builder.eif",
        "--enclave-cpus",
        "2",
        "--enclave-memory",
        "2048",
        "--enclave-cid",
        "16",
        "--nitro-cli",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([nitro_cli.display().to_string()])
    .collect();
    let host = host_with(&w, &sock, &out, &c1, &launch);
    assert!(host.status.success(), "host: {}", stderr(&host));
    assert_verifies(&w, &out, &c1);
    let calls = std::fs::read_to_string(calls).unwrap();
    assert_eq!(
        calls,
        "run-enclave --eif-path /srv/builder.eif --cpu-count 2 --memory 2048 --enclave-cid 16\n\
         terminate-enclave --enclave-id i-0test-enc0001\n"
    );
}

/// An enclave that exits, never connects, or starts in debug mode stops the
/// job with `enclave_start`, and nothing is logged.
#[test]
fn enclaves_that_do_not_start_properly_are_refused() {
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let sock = w.tmp.path().join("bad.sock");
    let out = w.tmp.path().join("bad-out");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let exits = host_with(&w, &sock, &out, &c1, &args(&["--", "false"]));
    assert_fails_with(&exits, "enclave_start");
    assert!(stderr(&exits).contains("exited"), "{}", stderr(&exits));

    let silent = args(&["--enclave-connect-timeout", "1", "--", "sleep", "30"]);
    let t = std::time::Instant::now();
    let silent = host_with(&w, &sock, &out, &c1, &silent);
    assert_fails_with(&silent, "enclave_start");
    assert!(stderr(&silent).contains("did not connect within 1 s"));
    assert!(t.elapsed().as_secs() < 25, "the host waited out `sleep 30`");

    let dir = w.tmp.path().join("debug");
    std::fs::create_dir_all(&dir).unwrap();
    let (nitro_cli, calls) = fake_nitro_cli(&dir, &args(&["sleep", "30"]), "DEBUG_MODE");
    let launch = vec![
        "--eif".to_string(),
        "/srv/builder.eif".into(),
        "--nitro-cli".into(),
        nitro_cli.display().to_string(),
    ];
    let debug = host_with(&w, &sock, &out, &c1, &launch);
    assert_fails_with(&debug, "enclave_start");
    assert!(stderr(&debug).contains("debug mode"));
    let calls = std::fs::read_to_string(calls).unwrap();
    assert!(
        calls.ends_with("terminate-enclave --enclave-id i-0test-enc0001\n"),
        "{calls}"
    );

    assert_eq!(tree_size(&w.server.url), 0);
    assert!(!out.join("hello").exists());
}

/// An enclave that connects and then goes silent is cut off after the idle
/// deadline, and the host still stops it.
#[test]
fn a_silent_enclave_is_cut_off_and_stopped() {
    use enclave_builder::hostsplit::{prepare_job, HostJob};
    use enclave_builder::launcher::{run_job, Deadlines, EnclaveLauncher, RunningEnclave};
    use enclave_builder::source::SourceRequest;
    use enclave_builder::transport::{listen, Endpoint};
    use enclave_builder::BuildError;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    if !have("git") {
        skip("`git` is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let c1 = commit(&repo, &[("hello.c", HELLO_C)]);
    let job = prepare_job(&HostJob {
        source: SourceRequest {
            repo: repo.display().to_string(),
            commit: Some(c1),
            git_ref: None,
            uri: None,
            net_config: Vec::new(),
        },
        allow_unreferenced: false,
        timeout_secs: None,
        memory_mb: None,
    })
    .unwrap();

    struct Silent {
        sock: PathBuf,
        stopped: Arc<AtomicBool>,
    }
    struct SilentEnclave {
        stopped: Arc<AtomicBool>,
        _conn: std::os::unix::net::UnixStream,
    }
    impl EnclaveLauncher for Silent {
        fn start(&self) -> Result<Box<dyn RunningEnclave>, BuildError> {
            let conn = std::os::unix::net::UnixStream::connect(&self.sock).unwrap();
            Ok(Box::new(SilentEnclave {
                stopped: self.stopped.clone(),
                _conn: conn,
            }))
        }
    }
    impl RunningEnclave for SilentEnclave {
        fn ended(&mut self) -> Option<String> {
            None
        }
        fn stop(self: Box<Self>) -> Result<(), BuildError> {
            self.stopped.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    let sock = tmp.path().join("silent.sock");
    let listener = listen(&Endpoint::Unix(sock.clone())).unwrap();
    let stopped = Arc::new(AtomicBool::new(false));
    let launcher = Silent {
        sock,
        stopped: stopped.clone(),
    };
    let deadlines = Deadlines {
        connect: Duration::from_secs(10),
        idle: Duration::from_millis(500),
    };
    let out = tmp.path().join("out");
    let t = std::time::Instant::now();
    let err = run_job(
        &launcher,
        listener.as_ref(),
        deadlines,
        job,
        "http://127.0.0.1:9",
        &out,
    )
    .unwrap_err();
    assert_eq!(err.code(), "transport");
    assert!(err.to_string().contains("idle timeout"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        stopped.load(Ordering::SeqCst),
        "the enclave was not stopped"
    );
    assert!(!out.exists());
}
