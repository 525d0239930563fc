//! TLS to PostgreSQL (`storage/postgres/tls.rs`) against a real PostgreSQL
//! 15 of the test's own that accepts TCP connections only over TLS, with a
//! certificate for 127.0.0.1 issued by a CA the test makes: with
//! `sslmode=verify-full` and that CA pinned the server logs and proves an
//! entry over TLS (PostgreSQL's `pg_stat_ssl` says so); a plain URL, another
//! CA, a host name the certificate does not name, and an unverified
//! `sslmode` each stop the server at start with a one-line error naming the
//! failed check.

mod common;
#[path = "common/private_pg.rs"]
mod private_pg;

use std::path::Path;

use attestlog::tlog::note::NoteSigner;
use common::*;
use private_pg::PrivatePg;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A CA: its PEM certificate and its issuer.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// `attestlog-server` on `storage` with a folder for objects; its exit
/// status and standard error when it stops by itself within 20 s.
fn start_fails(data: &Path, root: &Path, storage: &str) -> String {
    let objects = format!("file://{}", data.join("objects").display());
    let out = Server::command(data, root)
        .args(["--storage", storage, "--objects", &objects])
        .env("RUST_LOG", "error")
        .output()
        .expect("run attestlog-server");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn verify_full_with_the_pinned_ca_connects_and_everything_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca("attestlog test CA");
    let (other_pem, _) = ca("another CA");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = params.signed_by(&server_key, &issuer).unwrap();
    let pg = PrivatePg::start_tls(&cert.pem(), &server_key.serialize_pem());
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    std::fs::write(&other_file, &other_pem).unwrap();
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{}/postgres{query}", pg.port);
    let verify = |host: &str, roots: &Path| {
        url(
            host,
            &format!("?sslmode=verify-full&sslrootcert={}", roots.display()),
        )
    };

    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("log");
    write_key(&data, &NoteSigner::generate(TEST_ORIGIN).unwrap());

    // Refused before anything is written.
    let plain = start_fails(&data, &root, &url("127.0.0.1", ""));
    assert!(plain.starts_with("error: storage_unreachable: "), "{plain}");
    assert!(
        plain.contains("no encryption"),
        "pg_hba refuses plain TCP: {plain}"
    );
    let stranger = start_fails(&data, &root, &verify("127.0.0.1", &other_file));
    assert!(
        stranger.starts_with("error: storage_unreachable: "),
        "{stranger}"
    );
    assert!(stranger.contains("UnknownIssuer"), "{stranger}");
    let misnamed = start_fails(&data, &root, &verify("localhost", &ca_file));
    assert!(
        misnamed.contains("not valid for name \"localhost\""),
        "{misnamed}"
    );
    let unverified = start_fails(&data, &root, &url("127.0.0.1", "?sslmode=require"));
    assert!(
        unverified.starts_with("error: storage_url_invalid: ")
            && unverified.contains("sslmode=require"),
        "{unverified}"
    );
    assert!(
        pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == ["0"],
        "nothing was created"
    );

    // Pinned CA, the certificate's address: the log runs over TLS.
    let objects = format!("file://{}", data.join("objects").display());
    let server = Server::start(
        &data,
        &root,
        &[
            "--storage",
            &verify("127.0.0.1", &ca_file),
            "--objects",
            &objects,
        ],
    );
    let client = reqwest::blocking::Client::new();
    let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, 1)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["index"], 0, "{answer}");
    let ssl = pg.psql(
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'attestlog-server'",
    );
    assert!(!ssl.is_empty(), "the server's connections are listed");
    assert!(ssl.iter().all(|r| r.starts_with("t|TLSv1.")), "{ssl:?}");
}
