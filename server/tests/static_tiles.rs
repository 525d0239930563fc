//! Any C2SP tlog-tiles log, served as static files only: `attestlog
//! monitor --once` and `attestlog bundle refresh` follow a copy of a real
//! log's `checkpoint` and `tile/...` files served by a plain Python file
//! server on 127.0.0.1 (no `/v1` endpoints; entry bundles and upper-level
//! tiles gzipped by Python's own gzip, with no negotiation), computing
//! consistency and inclusion proofs from the tiles; a split view is still
//! caught, a gzip bomb is refused by name; and the real server gzips entry
//! bundles when asked and caches partial tiles forever.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use attestlog::bundle::Bundle;
use attestlog::tlog::merkle::{inclusion_proof_from_leaves, leaf_hash};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use attestlog::tlog::proof::TlogProof;
use attestlog::tlog::tiles::{TileKind, TilePath};
use common::*;

const ORIGIN: &str = TEST_ORIGIN;

/// A static file server: `GET /<path>` answers the file `<root>/<path>`;
/// entry bundles and tiles above level 0 are gzip-compressed on the fly
/// with `Content-Encoding: gzip` whatever the request says (C2SP allows
/// this); a file only present as `<path>.gz` is served as is, gzip-encoded.
/// Anything else (every `/v1/...` URL) is 404.
const STATIC_SERVER: &str = r#"
import gzip, http.server, os, re, sys
root = os.path.realpath(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        rel = self.path.lstrip('/')
        p = os.path.realpath(os.path.join(root, rel))
        enc = None
        if '?' in rel or not p.startswith(root + os.sep):
            return self.send_error(404)
        if os.path.isfile(p):
            data = open(p, 'rb').read()
            if re.match(r'tile/(entries|[1-9][0-9]*)/', rel):
                data, enc = gzip.compress(data), 'gzip'
        elif os.path.isfile(p + '.gz'):
            data, enc = open(p + '.gz', 'rb').read(), 'gzip'
        else:
            return self.send_error(404)
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        if enc:
            self.send_header('Content-Encoding', enc)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct StaticServer {
    child: Child,
    url: String,
}

impl StaticServer {
    fn start(root: &Path) -> StaticServer {
        let mut child = Command::new("python3")
            .args(["-c", STATIC_SERVER])
            .arg(root)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("port");
        StaticServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every C2SP resource of the tree of `size` leaves: full tiles and bundles
/// and the partial ones this size requires.
fn resources(size: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    for level in 0u8..8 {
        let hashes = size >> (8 * u32::from(level));
        if hashes == 0 {
            break;
        }
        let kinds: &[TileKind] = if level == 0 {
            &[TileKind::Hashes { level: 0 }, TileKind::Entries]
        } else {
            &[TileKind::Hashes { level }]
        };
        for &kind in kinds {
            for index in 0..hashes / 256 {
                out.push(TilePath {
                    kind,
                    index,
                    width: None,
                });
            }
            if !hashes.is_multiple_of(256) {
                out.push(TilePath {
                    kind,
                    index: hashes / 256,
                    width: Some((hashes % 256) as u16),
                });
            }
        }
    }
    out
}

/// Serves the log in `data` with the real server just long enough to copy
/// its checkpoint and tiles into `root` (adding to what is there), and
/// returns the checkpoint.
fn publish_static(data: &Path, dev_root: &Path, root: &Path) -> String {
    let mut server = Server::start(data, dev_root, &[]);
    let client = reqwest::blocking::Client::new();
    let note = get_text(&client, format!("{}/checkpoint", server.url));
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("checkpoint"), &note).unwrap();
    for tile in resources(size) {
        let path = tile.to_path();
        let bytes = get_bytes(&client, format!("{}/{path}", server.url));
        let file = root.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    server.kill();
    note
}

struct Run {
    code: i32,
    reports: Vec<serde_json::Value>,
    stderr: String,
}

fn attestlog(args: &[&str]) -> Run {
    let out = Command::new(attestlog_bin()).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    Run {
        code: out.status.code().unwrap(),
        reports: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        stderr,
    }
}

fn events<'a>(run: &'a Run, kind: &str) -> Vec<&'a serde_json::Value> {
    run.reports.iter().filter(|r| r["event"] == kind).collect()
}

#[test]
fn monitor_and_refresh_follow_a_static_tiles_log() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, dev_root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = signer.verifier_key_text();
    let root_pem = dev_root.to_str().unwrap();
    let entries: Vec<Vec<u8>> = (0..512).map(|n| entry(&nsm, n)).collect();

    // Size 5, copied to static files.
    let real = dir.path().join("real");
    write_key(&real, &signer);
    smuggle(&real, &signer, &entries[..5]);
    let www = dir.path().join("www");
    let note5 = publish_static(&real, &dev_root, &www);
    let web = StaticServer::start(&www);

    let state = dir.path().join("monitor");
    let state_arg = state.to_str().unwrap();
    let monitor_at = |url: &str, proofs: &str, state_arg: &str| {
        attestlog(&[
            "monitor", "--once", "--log", url, "--key", &vkey, "--state", state_arg, "--root",
            root_pem, "--proofs", proofs,
        ])
    };
    let monitor = |url: &str, proofs: &str| monitor_at(url, proofs, state_arg);
    let run = monitor(&web.url, "auto");
    assert_eq!(run.code, 0, "{:?}", run.reports);
    assert_eq!(events(&run, "progress").last().unwrap()["checked"], 5);

    // A bundle for entry 2 at size 5, as a submitter would hold it.
    let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
    let bundle_file = dir.path().join("entry2.bundle.json");
    let bundle = Bundle {
        entry: entries[2].clone(),
        proof: TlogProof {
            extra: None,
            index: 2,
            hashes: inclusion_proof_from_leaves(&leaves, 2, 5).unwrap(),
            checkpoint: note5,
        },
        dsse_envelope: None,
    };
    std::fs::write(&bundle_file, bundle.to_json()).unwrap();

    // The log grows to 305 (a full level-0 tile, a level-1 tile): the
    // static copy grows, and the monitor proves 5 -> 305 from the tiles.
    smuggle(&real, &signer, &entries[5..305]);
    let note305 = publish_static(&real, &dev_root, &www);
    // The API alone cannot: the static log has no /v1 endpoints.
    let run = monitor(&web.url, "api");
    assert_eq!(run.code, 1, "{:?}", run.reports);
    assert!(run.stderr.contains("fetch_not_found"), "{}", run.stderr);
    let run = monitor(&web.url, "tiles");
    assert_eq!(run.code, 0, "{:?}", run.reports);
    assert_eq!(events(&run, "progress").last().unwrap()["checked"], 305);
    assert!(events(&run, "inconsistent").is_empty());

    // The log grows to 512 and deletes the partial tile and bundle of width
    // 49 (C2SP allows it once the full ones exist), while its checkpoint
    // still says 305: clients fall back to the full tile's prefix.
    smuggle(&real, &signer, &entries[305..]);
    let note512 = publish_static(&real, &dev_root, &www);
    std::fs::write(www.join("checkpoint"), &note305).unwrap();
    for gone in ["tile/0/001.p/49", "tile/entries/001.p/49"] {
        std::fs::remove_file(www.join(gone)).unwrap();
    }
    let fresh = dir.path().join("monitor-fresh");
    let run = monitor_at(&web.url, "auto", fresh.to_str().unwrap());
    assert_eq!(run.code, 0, "{:?}", run.reports);
    assert_eq!(events(&run, "progress").last().unwrap()["checked"], 305);

    // bundle refresh: consistency 5 -> 305 and inclusion at 305, from tiles.
    let refresh = |url: &str| {
        attestlog(&[
            "bundle",
            "refresh",
            "--bundle",
            bundle_file.to_str().unwrap(),
            "--log",
            url,
            "--key",
            &vkey,
        ])
    };
    let run = refresh(&web.url);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let refreshed = Bundle::parse(&std::fs::read(&bundle_file).unwrap()).unwrap();
    let key = NoteVerifierKey::parse(&vkey).unwrap();
    let verified = refreshed
        .proof
        .verify(&leaves[2], &key, &[], 0)
        .expect("refreshed bundle verifies");
    assert_eq!(verified.checkpoint.size, 305);
    assert_eq!(refreshed.proof.hashes.len(), 9);

    // A rogue log with the same key and other entries, also static.
    let rogue = dir.path().join("rogue");
    write_key(&rogue, &signer);
    let others: Vec<Vec<u8>> = (1000..1310).map(|n| entry(&nsm, n)).collect();
    smuggle(&rogue, &signer, &others);
    let rogue_www = dir.path().join("rogue-www");
    publish_static(&rogue, &dev_root, &rogue_www);
    let rogue_web = StaticServer::start(&rogue_www);
    let run = monitor(&rogue_web.url, "auto");
    assert_eq!(run.code, 3, "{:?}", run.reports);
    let inc = events(&run, "inconsistent");
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0]["reason"], "consistency proof does not verify");
    assert!(inc[0]["old_checkpoint"]
        .as_str()
        .unwrap()
        .contains("\n305\n"));
    assert!(inc[0]["new_checkpoint"]
        .as_str()
        .unwrap()
        .contains("\n310\n"));
    // bundle refresh refuses the rogue tree and leaves the bundle alone.
    let before = std::fs::read(&bundle_file).unwrap();
    let run = refresh(&rogue_web.url);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("error: consistency:"), "{}", run.stderr);
    assert_eq!(std::fs::read(&bundle_file).unwrap(), before);

    // The real static log still follows cleanly, to 512.
    std::fs::write(www.join("checkpoint"), &note512).unwrap();
    let run = monitor(&web.url, "auto");
    assert_eq!(run.code, 0, "{:?}", run.reports);
    assert_eq!(events(&run, "progress").last().unwrap()["checked"], 512);
}

#[test]
fn a_gzip_bomb_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, dev_root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let vkey = signer.verifier_key_text();
    let real = dir.path().join("real");
    write_key(&real, &signer);
    smuggle(&real, &signer, &[entry(&nsm, 0), entry(&nsm, 1)]);
    let www = dir.path().join("www");
    publish_static(&real, &dev_root, &www);
    // The entry bundle becomes 64 MiB of zeros, gzipped to ~64 KiB.
    let bundle = www.join("tile/entries/000.p/2");
    std::fs::remove_file(&bundle).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    std::fs::write(bundle.with_file_name("2.gz"), bomb).unwrap();
    let web = StaticServer::start(&www);
    let state = dir.path().join("monitor");
    let run = attestlog(&[
        "monitor",
        "--once",
        "--log",
        &web.url,
        "--key",
        &vkey,
        "--state",
        state.to_str().unwrap(),
        "--root",
        dev_root.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{:?}", run.reports);
    assert!(
        run.stderr.contains("error: fetch_too_large:")
            && run.stderr.contains("tile/entries/000.p/2"),
        "{}",
        run.stderr
    );
    assert!(events(&run, "progress").is_empty());
}

#[test]
fn server_gzips_entry_bundles_when_asked_and_caches_partial_tiles_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, dev_root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    let data = dir.path().join("log");
    write_key(&data, &signer);
    let entries: Vec<Vec<u8>> = (0..3).map(|n| entry(&nsm, n)).collect();
    smuggle(&data, &signer, &entries);
    let server = Server::start(&data, &dev_root, &[]);
    let client = reqwest::blocking::Client::new();
    let get = |path: &str, accept: Option<&str>| {
        let mut req = client.get(format!("{}/{path}", server.url));
        if let Some(a) = accept {
            req = req.header("accept-encoding", a);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        let header = |h: &str| {
            headers
                .get(h)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        (
            header("content-encoding"),
            header("vary"),
            header("cache-control"),
            resp.bytes().unwrap().to_vec(),
        )
    };
    let immutable = "public, max-age=31536000, immutable";

    let (enc, vary, cache, plain) = get("tile/entries/000.p/3", None);
    assert_eq!((enc.as_str(), cache.as_str()), ("", immutable));
    assert_eq!(vary.to_ascii_lowercase(), "accept-encoding");
    let expected: Vec<u8> = entries
        .iter()
        .flat_map(|e| [&(e.len() as u16).to_be_bytes()[..], e].concat())
        .collect();
    assert_eq!(plain, expected);
    for accept in ["gzip", "gzip, identity", "br;q=1.0, GZIP;q=0.5", "*"] {
        let (enc, vary, cache, body) = get("tile/entries/000.p/3", Some(accept));
        assert_eq!(enc, "gzip", "{accept}");
        assert_eq!(vary.to_ascii_lowercase(), "accept-encoding");
        assert_eq!(cache, immutable);
        assert!(body.len() < plain.len());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain, "{accept}");
    }
    for accept in ["identity", "gzip;q=0", "br", "gzip;q=0.0, identity"] {
        let (enc, _, _, body) = get("tile/entries/000.p/3", Some(accept));
        assert_eq!(enc, "", "{accept}");
        assert_eq!(body, plain, "{accept}");
    }
    // Hash tiles are never compressed; partial ones are immutable too.
    let (enc, vary, cache, tile) = get("tile/0/000.p/3", Some("gzip"));
    assert_eq!(
        (enc.as_str(), vary.as_str(), cache.as_str()),
        ("", "", immutable)
    );
    assert_eq!(tile.len(), 96);
    assert_eq!(&tile[64..], &leaf_hash(&entries[2])[..]);
    // ... which holds: the width-3 tile is the same bytes after the log grows.
    drop(server);
    smuggle(&data, &signer, &[entry(&nsm, 3)]);
    let server2 = Server::start(&data, &dev_root, &[]);
    let again = get_bytes(&client, format!("{}/tile/0/000.p/3", server2.url));
    assert_eq!(again, tile);
}
