//! The webhook of a real `enclave-builder host --webhook-listen` process
//! under abuse: idle and slow sockets do not hold up a delivery, an
//! oversized request head is refused without the host's memory following
//! it, and a missing or short secret stops the host at start. (Builds from
//! deliveries, end to end, are in the workspace's `tests/host_launch.rs`.)

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const BUILDER: &str = env!("CARGO_BIN_EXE_enclave-builder");
const SECRET: &str = "a webhook secret for the tests";

struct Host {
    child: Child,
    addr: String,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host_command(dir: &Path, secret: &str) -> Command {
    let secret_file = dir.join("webhook.secret");
    std::fs::write(&secret_file, secret).unwrap();
    let mut cmd = Command::new(BUILDER);
    cmd.arg("host")
        .arg("--listen-unix")
        .arg(dir.join("enclave.sock"))
        .args(["--log", "http://127.0.0.1:9", "--out"])
        .arg(dir.join("out"))
        .args(["--webhook-listen", "127.0.0.1:0", "--webhook-secret-file"])
        .arg(&secret_file);
    cmd
}

fn start(dir: &Path) -> Host {
    let mut child = host_command(dir, &format!("{SECRET}\n"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("webhook on http://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {first}"))
        .to_string();
    Host { child, addr, lines }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers a signed push of `commit` (from a repository that does not
/// exist, so the build fails at once); returns the status and the time it
/// took to be answered.
fn deliver(host: &Host, commit: char) -> (u16, Duration) {
    let body = serde_json::json!({"after": commit.to_string().repeat(40),
        "repository": {"clone_url": "/nonexistent/attestlog-test-repo"}})
    .to_string();
    let t = Instant::now();
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(format!("http://{}/webhook", host.addr))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(body.as_bytes()))
        .body(body)
        .send()
        .unwrap();
    (resp.status().as_u16(), t.elapsed())
}

/// The build worker's report of the next finished job.
fn next_job_line(host: &mut Host) -> String {
    for line in host.lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("built ") || line.starts_with("build of ") {
            return line;
        }
    }
    panic!("the host exited without reporting the job");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Reads until the host closes the connection; the time that took.
fn wait_closed(mut s: TcpStream) -> Duration {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the host kept the connection open: {e}"),
    }
    t.elapsed()
}

#[test]
fn idle_and_slow_sockets_do_not_hold_up_a_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = start(dir.path());
    let idle = TcpStream::connect(&host.addr).unwrap();
    let mut slow = TcpStream::connect(&host.addr).unwrap();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Git")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let (status, took) = deliver(&host, 'a');
    assert_eq!(status, 202);
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    assert!(next_job_line(&mut host).starts_with(&format!(
        "build of /nonexistent/attestlog-test-repo {} failed: ",
        "a".repeat(40)
    )),);

    // Neither socket is kept past the header-read timeout (10 s).
    let slow_closed = std::thread::spawn(move || wait_closed(slow));
    assert!(wait_closed(idle) < Duration::from_secs(25));
    assert!(slow_closed.join().unwrap() < Duration::from_secs(25));
    assert_eq!(deliver(&host, 'b').0, 202);
}

#[test]
fn a_huge_header_line_is_refused_in_bounded_memory() {
    const SENT: usize = 32 << 20;
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path());
    // Warm up the runtime and the allocator with one ordinary delivery.
    assert_eq!(deliver(&host, 'a').0, 202);
    let before = rss_kib(host.child.id());

    let mut s = TcpStream::connect(&host.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        .unwrap();
    let chunk = vec![b'a'; 64 << 10];
    let (mut written, mut cut_off) = (0, false);
    while written < SENT {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => {
                // A reset or broken pipe: the host closed the connection.
                // (A timeout would mean it only stopped reading.)
                use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
                cut_off = matches!(e.kind(), BrokenPipe | ConnectionReset);
                break;
            }
        }
    }
    let after = rss_kib(host.child.id());
    eprintln!("sent {written} bytes; host RSS {before} KiB before, {after} KiB after");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        cut_off || answer.starts_with("HTTP/1.1 431"),
        "the host took {written} bytes of one header line and answered {answer:?}"
    );
    assert!(
        after.saturating_sub(before) < 8 << 10,
        "RSS went from {before} KiB to {after} KiB"
    );
    // The host still serves.
    assert_eq!(deliver(&host, 'b').0, 202);
}

#[test]
fn an_empty_or_short_secret_stops_the_host() {
    let dir = tempfile::tempdir().unwrap();
    for secret in ["", "\n", "fifteen bytes!!\n"] {
        let mut child = host_command(dir.path(), secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the host runs with secret {secret:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "started with secret {secret:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: webhook_secret_too_short: "),
            "{stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("webhook on"),
            "it listened"
        );
    }
}
