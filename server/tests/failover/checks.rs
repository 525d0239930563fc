//! The checks after a failover test (see the crate documentation).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::tiles::parse_entry_bundle;
use attestlog_server::storage::objects::Objects;
use serde_json::Value;

use crate::common::{get_bytes, get_text};
use crate::go_tlog;
use crate::harness::{proof, Cluster, Outcome, Record};
use crate::postgres_common::query_on;

/// Sends every submission that got no 200 again (all services are up):
/// each must now be accepted; returns the new records.
pub fn resubmit_unacked(c: &Cluster, records: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if matches!(r.outcome, Outcome::Acked(_)) {
            continue;
        }
        let outcome = c.submit(&r.entry, i);
        assert!(
            matches!(outcome, Outcome::Acked(_)),
            "resubmission after recovery: {outcome:?}"
        );
        out.push(Record {
            entry: r.entry.clone(),
            outcome,
        });
    }
    let duplicates = out
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Acked(a) if a["duplicate"] == true))
        .count();
    eprintln!(
        "resubmitted {} unanswered: {duplicates} were already logged",
        out.len()
    );
    out
}

/// The checks of the module documentation, against frontend `f`.
pub fn check_log(c: &Cluster, f: usize, records: &[Record]) {
    let url = c.url(f);
    // Everything sequenced is integrated (the integrator catches up).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (size, root) = loop {
        let next: u64 = query_on(&c.pg_url, "SELECT next_idx FROM seq_head")[0]
            .parse()
            .unwrap();
        let note = get_text(&c.client, format!("{url}/checkpoint"));
        let cp = verify_checkpoint(&note, &c.key, &[], 0)
            .expect("final checkpoint verifies")
            .checkpoint;
        if cp.size == next {
            break (cp.size, cp.root_hash);
        }
        assert!(Instant::now() < deadline, "stuck at {} of {next}", cp.size);
        std::thread::sleep(Duration::from_millis(200));
    };
    // Dense: the bundles hold exactly `size` entries; so does PostgreSQL.
    let mut logged: Vec<Vec<u8>> = Vec::new();
    for n in 0..size.div_ceil(256) {
        let w = (size - n * 256).min(256);
        let path = match w {
            256 => format!("tile/entries/{n:03}"),
            w => format!("tile/entries/{n:03}.p/{w}"),
        };
        let bundle = get_bytes(&c.client, format!("{url}/{path}"));
        let entries = parse_entry_bundle(&bundle).expect("bundle parses");
        assert_eq!(entries.len() as u64, w, "{path}");
        logged.extend(entries.into_iter().map(|e| e.to_vec()));
    }
    let rows = query_on(
        &c.pg_url,
        "SELECT count(*)::text || ' ' || COALESCE(max(idx) + 1, 0)::text FROM entries",
    );
    assert_eq!(rows[0], format!("{size} {size}"), "entries in PostgreSQL");

    let mut handed: BTreeMap<u64, String> = BTreeMap::new();
    let mut acked = 0;
    for r in records {
        let Outcome::Acked(answer) = &r.outcome else {
            continue;
        };
        acked += 1;
        let index = answer["index"].as_u64().expect("index");
        assert_eq!(
            logged.get(index as usize),
            Some(&r.entry),
            "acknowledged entry at index {index}"
        );
        let note = answer["checkpoint"].as_str().expect("checkpoint");
        let cp = verify_checkpoint(note, &c.key, &[], 0)
            .expect("handed-out checkpoint verifies")
            .checkpoint;
        verify_inclusion(
            index,
            cp.size,
            &leaf_hash(&r.entry),
            &proof(answer, "inclusion_proof"),
            &cp.root_hash,
        )
        .expect("inclusion proof of an answer");
        let seen = handed.entry(cp.size).or_insert_with(|| note.to_string());
        assert_eq!(seen, note, "two checkpoints of size {}", cp.size);
    }
    for (s, note) in &handed {
        let cp = verify_checkpoint(note, &c.key, &[], 0).unwrap().checkpoint;
        let p: Value = c
            .client
            .get(format!(
                "{url}/v1/proof/consistency?first={s}&second={size}"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        verify_consistency(*s, size, &cp.root_hash, &root, &proof(&p, "proof"))
            .unwrap_or_else(|e| panic!("checkpoint {s} inconsistent with {size}: {e}"));
        let stored = query_on(
            &c.pg_url,
            &format!("SELECT note FROM checkpoints WHERE size = {s}"),
        );
        assert_eq!(stored, vec![note.clone()], "the stored checkpoint of {s}");
    }
    // Straight from the bucket: its checkpoint is one the log signed, and
    // the last bundle is the one served.
    for (k, v) in &c.weed_env {
        std::env::set_var(k, v); // one test at a time (SERIAL)
    }
    // The bucket lags the head by up to a flush interval (spec/cluster.md,
    // "The hot edge"): wait until its checkpoint names the final size.
    let bucket = Objects::open(&c.objects).expect("bucket");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (note, cp) = loop {
        let note = String::from_utf8(
            bucket
                .get("checkpoint")
                .unwrap()
                .expect("bucket checkpoint"),
        )
        .unwrap();
        let cp = verify_checkpoint(&note, &c.key, &[], 0)
            .expect("bucket checkpoint verifies")
            .checkpoint;
        if cp.size == size || Instant::now() >= deadline {
            break (note, cp);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cp.size, size, "the bucket's checkpoint caught up");
    let stored = query_on(
        &c.pg_url,
        &format!("SELECT note FROM checkpoints WHERE size = {}", cp.size),
    );
    assert_eq!(stored, vec![note], "the bucket's checkpoint");
    if let Some(n) = size.checked_sub(1).map(|last| last / 256) {
        let w = size - n * 256;
        let path = match w {
            256 => format!("tile/entries/{n:03}"),
            w => format!("tile/entries/{n:03}.p/{w}"),
        };
        assert_eq!(
            bucket.get(&path).unwrap().as_deref(),
            Some(get_bytes(&c.client, format!("{url}/{path}")).as_slice()),
            "{path} in the bucket"
        );
    }
    // Go's sumdb/tlog client reads the final log through a read-only
    // reader and straight from the bucket (SigV4-signed: the test bucket is
    // not public): every entry's inclusion.
    let reader = c.reader();
    let state = |name: &str| c.dir.path().join(format!("go-{name}"));
    let vkey = &c.signer_vkey;
    assert_eq!(go_tlog::check(&reader.url, vkey, &state("reader")), size);
    let (url, env) = (c.bucket_url(), &c.weed_env);
    assert_eq!(
        go_tlog::check_signed(&url, vkey, &state("bucket"), env),
        size
    );
    eprintln!(
        "checked: {size} entries, {acked} acknowledged answers, {} checkpoint sizes handed out",
        handed.len()
    );
}
