//! `attestlog monitor` against real servers: bad entries smuggled into the
//! storage, watched builds with endorsed and other PCRs, split views served
//! by a rogue log holding the real log's key, and clean runs on the real log.

mod common;

use std::path::Path;
use std::process::Command;

use attestlog::tlog::note::NoteSigner;
use common::*;

const ORIGIN: &str = TEST_ORIGIN;
const REPO: &str = "git+https://example.com/repo.git";

struct Run {
    code: i32,
    reports: Vec<serde_json::Value>,
}

fn monitor(url: &str, vkey: &str, state: &Path, extra: &[&str]) -> Run {
    let out = Command::new(attestlog_bin())
        .args(["monitor", "--once", "--log", url, "--key", vkey, "--state"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let reports = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    Run {
        code: out.status.code().unwrap(),
        reports,
    }
}

fn events<'a>(run: &'a Run, kind: &str) -> Vec<&'a serde_json::Value> {
    run.reports.iter().filter(|r| r["event"] == kind).collect()
}

#[test]
fn bad_entry_watched_builds_and_split_view() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = signer.verifier_key_text();

    // The real log: endorsed build, other-PCR build, a smuggled bad entry
    // (user_data of another statement), and another endorsed build.
    let real = dir.path().join("real");
    write_key(&real, &signer);
    let good = entry_at(&nsm, 0, &pcrs(1), now_ms());
    let other = entry_at(&nsm, 1, &pcrs(2), now_ms());
    let mut bad = entry_at(&nsm, 2, &pcrs(1), now_ms());
    let last = bad.len() - 1;
    bad[last] ^= 1; // breaks the COSE signature
    let good2 = entry_at(&nsm, 3, &pcrs(1), now_ms());
    smuggle(&real, &signer, &[good, other, bad, good2]);
    let mut server = Server::start(&real, &root, &[]);
    assert_eq!(server.verifier_key, vkey);

    let p = pcrs(1);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "log_keys = [\"{vkey}\"]\n[trust]\naws_root = true\nextra_roots = [\"root.pem\"]\n\
             [[measurement]]\nname = \"builder\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
            hex::encode(&p[&0]),
            hex::encode(&p[&1]),
            hex::encode(&p[&2])
        ),
    )
    .unwrap();
    let state = dir.path().join("monitor");
    let policy_arg = policy.to_str().unwrap();
    let args = ["--policy", policy_arg, "--watch-repo", REPO];
    let run = monitor(&server.url, &vkey, &state, &args);
    assert_eq!(run.code, 4, "{:?}", run.reports);
    let bad = events(&run, "bad_entry");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["index"], 2);
    assert_eq!(bad[0]["check"], "cose_signature");
    let watched = events(&run, "watched");
    let got: Vec<(u64, bool)> = watched
        .iter()
        .map(|w| {
            (
                w["index"].as_u64().unwrap(),
                w["endorsed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(0, true), (1, false), (3, true)]);
    assert_eq!(watched[1]["pcrs"]["0"], hex::encode(&pcrs(2)[&0]));
    assert_eq!(watched[0]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(watched[0]["artifacts"][0]["name"], "bin-0");
    assert!(events(&run, "inconsistent").is_empty());

    // Nothing new: clean. Then the real log grows: clean, entries checked.
    assert_eq!(monitor(&server.url, &vkey, &state, &args).code, 0);
    let client = reqwest::blocking::Client::new();
    for n in 10..13 {
        let resp = client
            .post(format!("{}/v1/entries", server.url))
            .header("content-type", "application/octet-stream")
            .body(entry(&nsm, n))
            .send()
            .unwrap();
        assert!(resp.status().is_success());
    }
    let run = monitor(&server.url, &vkey, &state, &args);
    assert_eq!(run.code, 0, "{:?}", run.reports);
    assert_eq!(events(&run, "watched").len(), 3);
    let progress = events(&run, "progress");
    assert_eq!(progress.last().unwrap()["checked"], 7);
    server.kill();

    // A rogue log with the same key signs another tree of size 7.
    let rogue = dir.path().join("rogue");
    write_key(&rogue, &signer);
    smuggle(
        &rogue,
        &signer,
        &(20..27).map(|n| entry(&nsm, n)).collect::<Vec<_>>(),
    );
    let rogue_server = Server::start(&rogue, &root, &[]);
    let run = monitor(&rogue_server.url, &vkey, &state, &args);
    assert_eq!(run.code, 3, "{:?}", run.reports);
    let inc = events(&run, "inconsistent");
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0]["reason"], "two roots at one size");
    assert!(inc[0]["old_checkpoint"].as_str().unwrap().contains("\n7\n"));
    assert!(inc[0]["new_checkpoint"].as_str().unwrap().contains("\n7\n"));
    let evidence = inc[0]["evidence_file"].as_str().unwrap();
    assert!(Path::new(evidence).starts_with(&state));
    assert!(std::fs::read_to_string(evidence)
        .unwrap()
        .contains("inconsistent"));

    // It grows to 9: its consistency proof from the real size-7 tree fails.
    drop(rogue_server);
    smuggle(
        &rogue,
        &signer,
        &(27..29).map(|n| entry(&nsm, n)).collect::<Vec<_>>(),
    );
    let rogue_server = Server::start(&rogue, &root, &[]);
    let run = monitor(&rogue_server.url, &vkey, &state, &args);
    assert_eq!(run.code, 3, "{:?}", run.reports);
    let inc = events(&run, "inconsistent");
    assert_eq!(inc[0]["reason"], "consistency proof does not verify");
    assert!(inc[0]["proof"].as_array().is_some());

    // The monitor's state still holds the real log's checkpoint: clean again.
    let server = Server::start(&real, &root, &[]);
    assert_eq!(monitor(&server.url, &vkey, &state, &args).code, 0);
}

/// Catches up on a large log (100,000 entries by default;
/// ATTESTLOG_MONITOR_ENTRIES overrides), SIGKILLed midway, then resumed:
/// every entry is checked, at most the one bundle in flight is checked twice,
/// and the catch-up rate is printed.
#[test]
fn resume_after_kill_on_a_large_log() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let n: u64 = std::env::var("ATTESTLOG_MONITOR_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = signer.verifier_key_text();
    let data = dir.path().join("log");
    write_key(&data, &signer);
    let t0 = std::time::Instant::now();
    let ts = now_ms();
    let p = pcrs(1);
    let mut i = 0;
    while i < n {
        let end = (i + 5_000).min(n);
        smuggle(
            &data,
            &signer,
            &(i..end)
                .map(|k| entry_at(&nsm, k, &p, ts))
                .collect::<Vec<_>>(),
        );
        i = end;
    }
    eprintln!("made {n} entries in {:?}", t0.elapsed());
    let server = Server::start(&data, &root, &[]);
    let state = dir.path().join("monitor");
    let root_arg = root.to_str().unwrap();
    let watch = hex::encode(&p[&0]);

    // First run: killed once a third is checked.
    let mut child = Command::new(attestlog_bin())
        .args([
            "monitor",
            "--once",
            "--log",
            &server.url,
            "--key",
            &vkey,
            "--root",
            root_arg,
            "--watch-pcr0",
            &watch,
        ])
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last_progress = 0;
    let mut killed = false;
    let mut reported = std::collections::HashSet::new();
    // Read to the end: lines printed before the kill are still in the pipe.
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            break; // a line cut by the kill
        };
        assert_ne!(v["event"], "bad_entry");
        if v["event"] == "watched" {
            reported.insert(v["index"].as_u64().unwrap());
        }
        if v["event"] == "progress" && !killed {
            last_progress = v["checked"].as_u64().unwrap();
            if last_progress >= n / 3 {
                child.kill().unwrap();
                killed = true;
            }
        }
    }
    let _ = child.wait();
    assert!(last_progress >= n / 3 && last_progress < n);

    // Second run resumes where the saved progress is.
    let started = std::time::Instant::now();
    let run = monitor(
        &server.url,
        &vkey,
        &state,
        &["--root", root_arg, "--watch-pcr0", &watch],
    );
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0);
    // Every entry is watched: each reported exactly once across the kill
    // (a kill between printing and saving may repeat the last one).
    let mut repeats = 0;
    for v in events(&run, "watched") {
        if !reported.insert(v["index"].as_u64().unwrap()) {
            repeats += 1;
        }
    }
    assert!(repeats <= 1, "{repeats} reports repeated after resuming");
    assert_eq!(reported.len() as u64, n, "every entry reported");
    let progress = events(&run, "progress");
    let first = progress[0]["checked"].as_u64().unwrap();
    // It resumed at a saved bundle boundary at or after the last one seen.
    assert!(
        first > last_progress && first - last_progress <= 256,
        "{first} vs {last_progress}"
    );
    assert_eq!(progress.last().unwrap()["checked"], n);
    let resumed = n - last_progress;
    eprintln!(
        "resumed at {last_progress}: {resumed} entries in {secs:.1}s = {:.0} entries/s",
        resumed as f64 / secs
    );
    // Nothing left to do.
    assert_eq!(
        monitor(&server.url, &vkey, &state, &["--root", root_arg]).code,
        0
    );
}

/// A watched build whose definition was overridden on the builder's command
/// line is not reported as endorsed, even with endorsed PCRs, unless the
/// policy allows overrides: the monitor applies the verifier's checks.
#[test]
fn overridden_build_definition_is_not_endorsed() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = signer.verifier_key_text();
    let log = dir.path().join("log");
    write_key(&log, &signer);
    let overridden = entry_with_definition(
        &nsm,
        0,
        &pcrs(1),
        now_ms(),
        attestlog::claim::BuildDefinition::Override,
    );
    smuggle(&log, &signer, &[overridden, entry(&nsm, 1)]);
    let server = Server::start(&log, &root, &[]);
    let p = pcrs(1);
    let policy_text = |top: &str| {
        format!(
            "log_keys = [\"{vkey}\"]\n{top}\n[trust]\naws_root = true\nextra_roots = [\"root.pem\"]\n\
             [[measurement]]\nname = \"builder\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
            hex::encode(&p[&0]),
            hex::encode(&p[&1]),
            hex::encode(&p[&2])
        )
    };
    for (name, top, expected) in [
        ("strict", "", vec![(0, false), (1, true)]),
        (
            "lax",
            "allow_build_override = true",
            vec![(0, true), (1, true)],
        ),
    ] {
        let policy = dir.path().join(format!("{name}.toml"));
        std::fs::write(&policy, policy_text(top)).unwrap();
        let state = dir.path().join(format!("state-{name}"));
        let args = ["--policy", policy.to_str().unwrap(), "--watch-repo", REPO];
        let run = monitor(&server.url, &vkey, &state, &args);
        assert_eq!(run.code, 0, "{:?}", run.reports);
        let got: Vec<(u64, bool)> = events(&run, "watched")
            .iter()
            .map(|w| {
                (
                    w["index"].as_u64().unwrap(),
                    w["endorsed"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

/// A debug-mode build (PCR0-2 all zero), logged by a server that allows
/// them, is not `endorsed` under a policy that lists the all-zero
/// measurement but keeps `allow_debug = false`; it is with
/// `allow_debug = true`. A revoked measurement is not endorsed either: the
/// monitor applies the verifier's own policy verdict.
#[test]
fn debug_mode_and_revoked_builds_are_not_endorsed() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("log");
    let server = Server::start(&data, &root, &["--allow-debug"]);
    let vkey = server.verifier_key.clone();
    let zero: std::collections::BTreeMap<u8, Vec<u8>> =
        (0u8..16).map(|i| (i, vec![0; 48])).collect();
    let client = reqwest::blocking::Client::new();
    for (n, p) in [(0, &zero), (1, &pcrs(1))] {
        let (status, answer) =
            submit_to(&client, &server.url, &entry_at(&nsm, n, p, now_ms())).unwrap();
        assert!(status < 300, "{answer}");
    }
    let measurement = |name: &str, p: &std::collections::BTreeMap<u8, Vec<u8>>| {
        format!(
            "[[measurement]]\nname = \"{name}\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
            hex::encode(&p[&0]),
            hex::encode(&p[&1]),
            hex::encode(&p[&2])
        )
    };
    let policy = |allow_debug: bool, revoke: bool| {
        let path = dir
            .path()
            .join(format!("policy-{allow_debug}-{revoke}.toml"));
        let mut text = format!(
            "log_keys = [\"{vkey}\"]\nallow_debug = {allow_debug}\n[trust]\nextra_roots = [\"root.pem\"]\n{}{}",
            measurement("debug", &zero),
            measurement("builder", &pcrs(1))
        );
        if revoke {
            text.push_str(&format!(
                "[[revoked]]\npcr0 = \"{}\"\nreason = \"test\"\n",
                hex::encode(&pcrs(1)[&0])
            ));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let endorsed = |allow_debug: bool, revoke: bool| {
        let policy = policy(allow_debug, revoke);
        let state = dir.path().join(format!("state-{allow_debug}-{revoke}"));
        let args = ["--policy", policy.to_str().unwrap(), "--watch-repo", REPO];
        let run = monitor(&server.url, &vkey, &state, &args);
        assert_eq!(run.code, 0, "{:?}", run.reports);
        events(&run, "watched")
            .iter()
            .map(|w| {
                (
                    w["endorsed"].as_bool().unwrap(),
                    w["not_endorsed"].as_str().map(String::from),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        endorsed(false, false),
        vec![(false, Some("debug_refused".to_string())), (true, None)]
    );
    assert_eq!(endorsed(true, false), vec![(true, None), (true, None)]);
    assert_eq!(
        endorsed(true, true),
        vec![
            (true, None),
            (false, Some("measurement_revoked".to_string()))
        ]
    );
}
