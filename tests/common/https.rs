//! Git repositories served over HTTPS on 127.0.0.1 by `openssl s_server
//! -WWW` (git's dumb HTTP protocol, hence `GIT_SMART_HTTP=0` for every git
//! that fetches from it) with a self-signed certificate made for the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `s_server` serving the bare repositories under `www`.
pub struct HttpsGit {
    child: Child,
    www: PathBuf,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    /// The server's certificate, the one root a client must trust.
    pub cert: PathBuf,
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `openssl` can run here (prints why not).
pub fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        super::skip("`openssl` is not installed");
    }
    ok
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key).
pub fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

impl HttpsGit {
    /// Starts a server for `dir/www` with a certificate made in `dir`.
    pub fn start(dir: &Path) -> HttpsGit {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let (cert, key) = certificate(dir, "server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "s_server never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpsGit {
            child,
            www,
            base: format!("https://127.0.0.1:{port}"),
            port,
            cert,
        }
    }

    /// The URL `name.git` is (or will be) served at.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base)
    }

    /// Serves a bare copy of `repo` (replacing an earlier one) as `name.git`;
    /// returns its URL.
    pub fn publish(&self, repo: &Path, name: &str) -> String {
        let bare = self.www.join(format!("{name}.git"));
        let _ = std::fs::remove_dir_all(&bare);
        run_ok(
            Command::new("git")
                .args(["clone", "-q", "--bare"])
                .arg(repo)
                .arg(&bare),
        );
        run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&bare)
                .arg("update-server-info"),
        );
        self.url(name)
    }

    /// Stops serving `name.git`.
    pub fn unpublish(&self, name: &str) {
        std::fs::remove_dir_all(self.www.join(format!("{name}.git"))).unwrap();
    }
}

/// Records `url` as submodule `path` at `commit` in the repository at
/// `dir` (staged, not committed), without fetching anything: a
/// `.gitmodules` entry and a gitlink, beside an empty directory.
pub fn add_gitlink(dir: &Path, path: &str, url: &str, commit: &str) {
    let gitmodules = dir.join(".gitmodules");
    let mut text = std::fs::read_to_string(&gitmodules).unwrap_or_default();
    text.push_str(&format!(
        "[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n"
    ));
    std::fs::write(&gitmodules, text).unwrap();
    std::fs::create_dir_all(dir.join(path)).unwrap();
    let info = format!("160000,{commit},{path}");
    super::git(dir, &["update-index", "--add", "--cacheinfo", &info]);
    super::git(dir, &["add", ".gitmodules"]);
}
