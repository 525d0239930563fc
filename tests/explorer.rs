//! The explorer page in a real headless Chromium and Firefox ESR against a
//! real `attestlog-server` filled by real builds (simulated NSM, dev CA):
//! the head and entries show and verify in the browser; searching, dropping a
//! file and pasting a policy give the right verdicts; a tampered entry, a
//! forged checkpoint signature, a wrong inclusion proof and an untrusted
//! root are each shown as failures with the CLI's code; with two real
//! witnesses, the head shows their cosignatures, and a forged or missing one
//! is `invalid_cosignature` or `witness_quorum`. Then the browser's
//! Nitro verifier and the Rust one must agree on the AWS samples in
//! $ATTESTLOG_SHARED/nitro-samples and on mutations of them.
//!
//! Needs /usr/bin/chromium, /usr/bin/chromedriver and /usr/bin/firefox-esr
//! (Debian `chromium`, `chromium-driver`, `firefox-esr`; scripts/test.sh
//! installs them). Screenshots go to a temporary folder whose path the test
//! prints, one subfolder per browser (kept when ATTESTLOG_SCREENSHOTS names
//! a folder).

mod common;
#[path = "explorer/marionette.rs"]
mod marionette;
#[path = "explorer/proxy.rs"]
mod proxy;
#[path = "explorer/util.rs"]
mod util;
#[path = "explorer/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use attestlog::tlog::note::NoteSigner;
use common::*;
use proxy::{Proxy, Tamper};
use serde_json::{json, Value};
use util::{b64, open, shots_dir};
use webdriver::{Browser, Engine};

fn entry_verdict(b: &Browser) -> (String, String) {
    let v = b.wait(
        "(() => { const e = document.querySelector('#entry .verdict'); return e && [e.dataset.verdict, e.dataset.code ?? '']; })()",
        "the entry verdict",
    );
    (
        v[0].as_str().unwrap_or("").into(),
        v[1].as_str().unwrap_or("").into(),
    )
}

fn search(b: &Browser, kind: &str, value: &str) -> u64 {
    b.exec(
        "document.getElementById('search-kind').value = arguments[0];
         document.getElementById('search-value').value = arguments[1];
         document.getElementById('result-count')?.remove();
         document.querySelector('#search-form button').click();",
        json!([kind, value]),
    );
    let text = b.wait(
        "document.getElementById('result-count')?.textContent",
        "search results",
    );
    text.as_str()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("result count: {text}"))
}

/// Drops `bytes` as a file named `name` on the page's drop zone.
fn drop_file(b: &Browser, name: &str, bytes: &[u8]) -> String {
    b.exec(
        "document.getElementById('file-verdict')?.remove();
         const raw = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
         const dt = new DataTransfer();
         dt.items.add(new File([raw], arguments[0]));
         document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));",
        json!([name, b64(bytes)]),
    );
    b.wait(
        "document.getElementById('file-verdict')?.dataset.verdict",
        "the dropped file's verdict",
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

fn apply_policy(b: &Browser, text: &str) -> String {
    b.exec(
        "document.getElementById('policy-text').value = arguments[0];
         delete document.getElementById('policy-status').dataset.policy;
         document.getElementById('policy-apply').click();",
        json!([text]),
    );
    b.wait(
        "document.getElementById('policy-status').dataset.policy",
        "the policy status",
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

#[test]
fn explorer_shows_searches_and_verifies_in_the_browser() {
    shows_searches_and_verifies(Engine::Chromium);
}

/// The same in Firefox ESR.
#[test]
fn explorer_shows_searches_and_verifies_in_firefox() {
    shows_searches_and_verifies(Engine::Firefox);
}

fn shows_searches_and_verifies(engine: Engine) {
    let Some(w) = World::new() else {
        panic!(
            "the explorer test needs git, bwrap, cc and the workspace binaries (scripts/test.sh)"
        )
    };
    let c1 = w.commit_hello();
    let out = w.build(&c1, "out1", &[]);
    assert!(out.status.success(), "build 1: {}", stderr(&out));
    let c2 = commit(&w.repo, &[("hello.c", b"int main(void){return 0;}\n")]);
    let out = w.build(&c2, "out2", &[]);
    assert!(out.status.success(), "build 2: {}", stderr(&out));
    let artifact = std::fs::read(w.tmp.path().join("out1/hello")).unwrap();
    // One folder per browser: both tests run at once and each empties its
    // downloads folder.
    let shots = shots_dir().join(format!("{engine:?}").to_lowercase());
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let _ = std::fs::remove_dir_all(shots.join("downloads"));
    let proxy = Proxy::start(&w.server.url);
    let b = Browser::start_engine(engine, &shots.join("downloads"));

    // The head: verified in the browser, size 2. First render time measured.
    let t = Instant::now();
    open(&b, &format!("{}/", w.server.url));
    let ready = t.elapsed();
    let head = b.exec("return [document.querySelector('[data-head]').dataset.head, document.getElementById('tree-size').textContent, document.getElementById('key-id').textContent];", json!([]));
    assert_eq!(head[0], "valid", "{head}");
    assert_eq!(head[1], "2");
    assert!(
        w.server.key.starts_with(head[2].as_str().unwrap()),
        "{head} vs {}",
        w.server.key
    );
    let nav = b.exec(
        "const n = performance.getEntriesByType('navigation')[0];
         const fcp = performance.getEntriesByName('first-contentful-paint')[0];
         return [n.responseEnd, fcp ? fcp.startTime : null, n.domContentLoadedEventEnd];",
        json!([]),
    );
    let _ = writeln!(
        std::io::stderr(),
        "explorer: head verified {ready:?} after navigation; ms after navigation start: \
         [page received, first contentful paint, DOMContentLoaded] = {nav}"
    );
    b.screenshot(&shots.join("head.png"));

    // The page's headers, and nothing served beyond its assets.
    let page = reqwest::blocking::get(format!("{}/", w.server.url)).unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let missing = reqwest::blocking::get(format!("{}/assets/..%2Flog.key", w.server.url)).unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().unwrap()["error"], "not_found");

    // Search by commit, repository (every way of writing it) and PCR0.
    assert_eq!(search(&b, "commit", &c1), 1);
    let repo_url = format!("file://{}", w.repo.display());
    assert_eq!(search(&b, "repository", &repo_url), 2);
    assert_eq!(search(&b, "repository", &format!("git+{repo_url}.git")), 2);
    assert_eq!(search(&b, "repository", "https://example.com/none"), 0);
    assert_eq!(search(&b, "pcr0", &w.pcrs()[0]), 2);

    // Dropping the artifact: hashed in the browser, found, verified.
    assert_eq!(drop_file(&b, "hello", &artifact), "valid");
    assert_eq!(entry_verdict(&b), ("valid".into(), String::new()));
    let steps = b.exec("return Array.from(document.querySelectorAll('#entry li[data-step]'), (li) => li.dataset.step + ':' + li.className);", json!([]));
    assert_eq!(
        steps,
        json!([
            "entry:pass",
            "subject:pass",
            "binding:pass",
            "chain:pass",
            "cose:pass",
            "inclusion:pass",
            "checkpoint:pass"
        ])
    );
    b.screenshot(&shots.join("dropped-file.png"));
    let mut other = artifact.clone();
    other[100] ^= 1;
    assert_eq!(drop_file(&b, "tampered", &other), "invalid");

    // The offline bundle the page offers verifies with the CLI's library.
    open(&b, &format!("{}/#/entry/0", w.server.url));
    assert_eq!(entry_verdict(&b).0, "valid");
    b.exec("document.getElementById('bundle-link').click();", json!([]));
    let saved = shots.join("downloads/hello.attestlog.json");
    // Until it parses: Firefox creates the file empty at once and renames
    // its `.part` over it when the download ends.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let bundle = loop {
        let parsed = std::fs::read(&saved)
            .ok()
            .and_then(|b| attestlog::bundle::Bundle::parse(&b).ok());
        if let Some(bundle) = parsed {
            break bundle;
        }
        assert!(
            Instant::now() < deadline,
            "no bundle that parses was downloaded to {}",
            saved.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let pcrs = w.pcrs();
    let good = w.policy("good.toml", &pcrs, &w.server.key, false);
    assert_eq!(verify_code(&good, &bundle, &artifact), Ok(c1.clone()));

    // A policy pasted in the page: accepted, then a revocation refuses.
    let text = std::fs::read_to_string(&good).unwrap();
    assert_eq!(apply_policy(&b, &text), "applied");
    assert_eq!(entry_verdict(&b), ("valid".into(), String::new()));
    let revoked =
        std::fs::read_to_string(w.policy("revoked.toml", &pcrs, &w.server.key, true)).unwrap();
    assert_eq!(apply_policy(&b, &revoked), "applied");
    b.wait(
        "document.querySelector('#entry .verdict')?.dataset.code === 'measurement_revoked'",
        "measurement_revoked",
    );
    // log_origin: the checkpoint's origin must be it (any listed key may sign).
    let with_origin = |origin: &str| format!("log_origin = \"{origin}\"\n{text}");
    assert_eq!(apply_policy(&b, &with_origin(ORIGIN)), "applied");
    assert_eq!(entry_verdict(&b), ("valid".into(), String::new()));
    let other = w.tmp.path().join("other-origin.toml");
    std::fs::write(&other, with_origin("another.example/log")).unwrap();
    assert_eq!(
        verify_code(&other, &bundle, &artifact),
        Err("origin_mismatch".into())
    );
    assert_eq!(
        apply_policy(&b, &with_origin("another.example/log")),
        "applied"
    );
    b.wait(
        "document.querySelector('#entry .verdict')?.dataset.code === 'origin_mismatch'",
        "origin_mismatch",
    );
    assert_eq!(apply_policy(&b, "log_keys = []\nbogus = 1\n"), "refused");
    assert_eq!(apply_policy(&b, ""), "none");

    // A lying server: each tampering is a failure with the CLI's code.
    for (tamper, code) in [
        (Tamper::Entry, "user_data_mismatch"),
        (Tamper::CheckpointSignature, "invalid_log_signature"),
        (Tamper::InclusionProof, "inclusion_proof"),
        (Tamper::Roots, "untrusted_root"),
    ] {
        proxy.set(tamper);
        open(&b, &format!("{}/#/entry/0", proxy.url));
        let (verdict, got) = entry_verdict(&b);
        assert_eq!(
            (verdict.as_str(), got.as_str()),
            ("invalid", code),
            "{tamper:?}"
        );
        b.screenshot(&shots.join(format!("tampered-{code}.png")));
    }
    proxy.set(Tamper::None);
    open(&b, &format!("{}/#/entry/1", proxy.url));
    assert_eq!(entry_verdict(&b).0, "valid");
}

/// Starts `attestlog witness serve` for the log `logs` names; (process, vkey, url).
fn start_witness(dir: &Path, name: &str, logs: &Path) -> (Child, String, String) {
    let mut child = Command::new(target_bin("attestlog").expect("attestlog binary"))
        .args([
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            name,
            "--state",
        ])
        .arg(dir.join(name.replace('/', "_")))
        .arg("--logs")
        .arg(logs)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn witness");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = |prefix: &str| {
        let line = lines.next().expect("witness line").expect("utf-8");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .to_string()
    };
    let vkey = next("witness key: ");
    let url = next("listening on ");
    std::thread::spawn(move || for _ in lines {});
    (child, vkey, url)
}

#[test]
fn explorer_checks_witness_cosignatures() {
    checks_witness_cosignatures(Engine::Chromium);
}

/// The same in Firefox ESR.
#[test]
fn explorer_checks_witness_cosignatures_in_firefox() {
    checks_witness_cosignatures(Engine::Firefox);
}

fn checks_witness_cosignatures(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = Command::new(builder_bin())
        .args(["dev-ca", "init"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let key_file = dir.path().join("log.key");
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&key_file)
        .unwrap()
        .write_all(format!("{}\n", signer.private_key_text()).as_bytes())
        .unwrap();
    let logs = dir.path().join("logs.txt");
    std::fs::write(&logs, format!("{ORIGIN} {}\n", signer.verifier_key_text())).unwrap();
    let mut witnesses: Vec<(Child, String, String)> = ["witness.test/w1", "witness.test/w2"]
        .iter()
        .map(|n| start_witness(dir.path(), n, &logs))
        .collect();
    let mut cmd = Command::new(target_bin("attestlog-server").expect("server binary"));
    cmd.arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--trust-root",
        ])
        .arg(ca.join("root.pem"))
        .arg("--key-file")
        .arg(&key_file)
        .args(["--witness-quorum", "2"]);
    for (_, vkey, url) in &witnesses {
        cmd.arg("--witness").arg(format!("{url}={vkey}"));
    }
    let mut server = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .expect("server started");
    let proxy = Proxy::start(&url);
    let b = Browser::start_engine(engine, &std::env::temp_dir());
    let head = |b: &Browser| {
        b.wait("document.querySelector('[data-head]')", "the head");
        b.exec(
            "const h = document.querySelector('[data-head]');
             return [h.dataset.head, h.dataset.code ?? '', document.getElementById('head-facts').innerText];",
            json!([]),
        )
    };
    open(&b, &format!("{}/", proxy.url));
    let v = head(&b);
    assert_eq!(v[0], "valid", "{v}");
    let text = v[2].as_str().unwrap();
    assert!(
        text.contains("witness.test/w1")
            && text.contains("witness.test/w2")
            && text.contains("2 of 2 required"),
        "{text}"
    );
    b.screenshot(&shots_dir().join(format!("witnessed-head-{engine:?}.png").to_lowercase()));
    for (tamper, code) in [
        (Tamper::Cosignature, "invalid_cosignature"),
        (Tamper::DropCosignature, "witness_quorum"),
    ] {
        proxy.set(tamper);
        open(&b, &format!("{}/", proxy.url));
        let v = head(&b);
        assert_eq!(
            (v[0].as_str(), v[1].as_str()),
            (Some("invalid"), Some(code)),
            "{tamper:?}: {v}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    for (child, _, _) in &mut witnesses {
        let _ = child.kill();
        let _ = child.wait();
    }
}
