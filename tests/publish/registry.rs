//! A real CNCF Distribution registry (Debian's `docker-registry`) on a free
//! loopback port with its storage in a temporary directory. Each of the two
//! publishing test binaries uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub storage: PathBuf,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl LocalRegistry {
    /// Starts `docker-registry serve`; fails the test when it is missing
    /// (scripts/test.sh installs it).
    pub fn start(dir: &Path) -> LocalRegistry {
        Self::start_with(dir, "")
    }

    /// Starts `docker-registry serve` with `auth` (YAML under `auth:`, or
    /// empty for none).
    pub fn start_with(dir: &Path, auth: &str) -> LocalRegistry {
        let bin = ["docker-registry", "/usr/bin/docker-registry"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect(
                "docker-registry (CNCF Distribution) is not installed; scripts/test.sh installs it",
            );
        let storage = dir.join(if auth.is_empty() {
            "registry-data"
        } else {
            "registry-auth-data"
        });
        std::fs::create_dir_all(&storage).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join(format!("registry-{port}.yml"));
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
                    storage.display(),
                    if auth.is_empty() { String::new() } else { format!("auth:\n{auth}") }
                ),
            )
            .unwrap();
            let child = Command::new(bin)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let mut reg = LocalRegistry {
                child,
                addr: addr.clone(),
                storage: storage.clone(),
            };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                // 200, or 401 when auth is on: either way it is serving.
                if reqwest::blocking::get(format!("http://{addr}/v2/"))
                    .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 401)
                {
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = reg.child.kill();
        }
        panic!("docker-registry did not start");
    }

    /// The file the registry serves blob `digest` from (Distribution's
    /// filesystem layout), to make it answer with other bytes.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}
