//! One attestation, one entry (issue 9 item 4), against a real server over HTTP and
//! across the schema upgrade that adds claim ids: every re-encoding of a logged entry's
//! envelope is refused, and the (r, n - s) twin of its signature, which verifies, gets
//! the logged index with `"duplicate": true` and appends nothing.

mod common;

use std::path::Path;

use attestlog::claim::{entry_claim_id, Entry};
use attestlog::nitro::CoseParts;
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use attestlog::tlog::tiles::parse_entry_bundle;
use attestlog_server::storage::{Hash, LogStore, NewEntry};
use common::*;
use reqwest::blocking::Client;
use serde_json::Value;

/// The order n of the P-384 group, big-endian.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// `entry` with its attestation replaced by `f(attestation)`.
fn with_attestation(entry: &[u8], f: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let e = Entry::decode(entry).expect("entry");
    Entry::encode(e.statement, &f(e.attestation)).expect("encode")
}

/// `entry` with the signature (r, s) replaced by (r, n - s): valid too, made by anyone.
fn twin(entry: &[u8]) -> Vec<u8> {
    with_attestation(entry, |att| {
        let mut parts = CoseParts::from_nsm_bytes(att).expect("NSM encoding");
        let s = &mut parts.signature[48..];
        let mut borrow = 0i16;
        for i in (0..48).rev() {
            let d = i16::from(P384_N[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            s[i] = d.rem_euclid(256) as u8;
        }
        parts.encode().expect("encode")
    })
}

/// A byte string with its length in `width` bytes (CBOR major type 2).
fn bstr(bytes: &[u8], width: usize) -> Vec<u8> {
    let mut out = match width {
        1 => vec![0x58, bytes.len() as u8],
        2 => [&[0x59][..], &(bytes.len() as u16).to_be_bytes()].concat(),
        _ => [&[0x5a][..], &(bytes.len() as u32).to_be_bytes()].concat(),
    };
    out.extend_from_slice(bytes);
    out
}

/// Re-encodings of `entry`'s envelope that keep its signed parts, and the code each gets.
fn reencodings(entry: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let e = Entry::decode(entry).expect("entry");
    let p = CoseParts::from_nsm_bytes(e.attestation).expect("NSM encoding");
    let rest = &e.attestation[1..]; // after the array head 0x84
    let items = |unprot: &[u8], payload: Vec<u8>, sig: Vec<u8>| {
        [&[0x44][..], &p.protected, unprot, &payload, &sig].concat()
    };
    let pay = bstr(&p.payload, 2);
    let sig = bstr(&p.signature, 1);
    let make = |att: Vec<u8>| Entry::encode(e.statement, &att).expect("encode");
    vec![
        (
            "tag 18",
            make([&[0xd2][..], e.attestation].concat()),
            "tagged_envelope",
        ),
        (
            "unprotected kid",
            make(
                [
                    &[0x84][..],
                    &items(&[0xa1, 0x04, 0x41, 0x00], pay.clone(), sig.clone()),
                ]
                .concat(),
            ),
            "unprotected_header",
        ),
        (
            "array 1-byte length",
            make([&[0x98, 0x04][..], rest].concat()),
            "noncanonical_encoding",
        ),
        (
            "array indefinite",
            make([&[0x9f][..], rest, &[0xff]].concat()),
            "noncanonical_encoding",
        ),
        (
            "unprotected indefinite",
            make([&[0x84][..], &items(&[0xbf, 0xff], pay.clone(), sig.clone())].concat()),
            "noncanonical_encoding",
        ),
        (
            "payload 4-byte length",
            make(
                [
                    &[0x84][..],
                    &items(&[0xa0], bstr(&p.payload, 4), sig.clone()),
                ]
                .concat(),
            ),
            "noncanonical_encoding",
        ),
        (
            "signature 2-byte length",
            make(
                [
                    &[0x84][..],
                    &items(&[0xa0], pay.clone(), bstr(&p.signature, 2)),
                ]
                .concat(),
            ),
            "noncanonical_encoding",
        ),
        (
            "trailing byte",
            make([e.attestation, &[0x00][..]].concat()),
            "malformed_cose",
        ),
    ]
}

fn submit(client: &Client, url: &str, body: &[u8]) -> (u16, Value) {
    submit_to(client, url, body).expect("JSON answer")
}

fn get_json(client: &Client, url: String) -> Value {
    client.get(url).send().expect("GET").json().expect("JSON")
}

/// The answer's proof shows `logged` (not necessarily the bytes sent) at its index.
fn check_logged(server: &Server, logged: &[u8], answer: &Value) -> (u64, u64) {
    let key = NoteVerifierKey::parse(&server.verifier_key).expect("vkey");
    let cp = verify_checkpoint(answer["checkpoint"].as_str().expect("cp"), &key, &[], 0)
        .expect("checkpoint verifies")
        .checkpoint;
    assert_eq!(b64d(&answer["leaf_hash"]), leaf_hash(logged));
    let proof: Vec<[u8; 32]> = answer["inclusion_proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(b64d)
        .collect();
    let index = answer["index"].as_u64().expect("index");
    verify_inclusion(index, cp.size, &leaf_hash(logged), &proof, &cp.root_hash)
        .expect("inclusion proof verifies");
    (index, cp.size)
}

fn tree_size(client: &Client, server: &Server) -> u64 {
    let cp = get_text(client, format!("{}/checkpoint", server.url));
    cp.lines().nth(1).expect("size line").parse().expect("size")
}

fn search_artifact(client: &Client, server: &Server, n: u64) -> Value {
    let artifact = hex::encode(sha256(format!("artifact {n}").as_bytes()));
    get_json(
        client,
        format!("{}/v1/search?artifact_sha256={artifact}", server.url),
    )["indices"]
        .clone()
}

#[test]
fn reencoded_copies_are_refused_and_the_signature_twin_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let client = Client::new();
    let mut server = Server::start(&data, &root, &[]);

    let first = entry(&nsm, 1);
    let (status, answer) = submit(&client, &server.url, &first);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(check_logged(&server, &first, &answer), (0, 1));
    assert_eq!(answer.get("duplicate"), None);

    // (a) Every other encoding of the same envelope: refused, nothing appended.
    for (name, copy, code) in reencodings(&first) {
        assert_ne!(copy, first, "{name}");
        if code != "malformed_cose" {
            // The same signed parts: the old verifier accepted these as new entries.
            assert_eq!(
                entry_claim_id(&copy).ok(),
                entry_claim_id(&first).ok(),
                "{name}"
            );
        }
        let (status, answer) = submit(&client, &server.url, &copy);
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"], code, "{name}: {answer}");
        assert_eq!(tree_size(&client, &server), 1, "{name}");
    }

    // (b) The high-S/low-S twin verifies, but is the same claim: the original index,
    // the original's leaf and a proof for it, and no growth. Twice, and its own twin
    // (the original bytes) too.
    let other = twin(&first);
    assert_ne!(other, first);
    assert_eq!(twin(&other), first);
    for body in [&other, &other, &first] {
        let (status, answer) = submit(&client, &server.url, body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], true, "{answer}");
        assert_eq!(check_logged(&server, &first, &answer), (0, 1));
    }
    assert_eq!(tree_size(&client, &server), 1);
    assert_eq!(search_artifact(&client, &server, 1), serde_json::json!([0]));
    let bundle = get_bytes(&client, format!("{}/tile/entries/000.p/1", server.url));
    assert_eq!(
        parse_entry_bundle(&bundle).expect("bundle"),
        vec![first.clone()]
    );

    // An entry and its twin sent together: one is logged, both get its index.
    let second = entry(&nsm, 2);
    let pair = [second.clone(), twin(&second)];
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = pair
            .iter()
            .map(|body| {
                let (client, url) = (&client, &server.url);
                s.spawn(move || submit(client, url, body))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let bundle = get_bytes(&client, format!("{}/tile/entries/000.p/2", server.url));
    let stored = parse_entry_bundle(&bundle).expect("bundle")[1].to_vec();
    assert!(pair.contains(&stored));
    let mut duplicates = 0;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(check_logged(&server, &stored, answer).0, 1);
        duplicates += usize::from(answer.get("duplicate") == Some(&Value::Bool(true)));
    }
    assert_eq!(duplicates, 1);
    assert_eq!(tree_size(&client, &server), 2);
    assert_eq!(search_artifact(&client, &server, 2), serde_json::json!([1]));

    // After a restart the claim index still answers.
    server.terminate();
    let server = Server::start(&data, &root, &[]);
    let (status, answer) = submit(&client, &server.url, &other);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true);
    assert_eq!(check_logged(&server, &first, &answer), (0, 2));
    assert_eq!(tree_size(&client, &server), 2);
    assert_eq!(search_artifact(&client, &server, 1), serde_json::json!([0]));
}

fn sign(size: u64, root: Hash) -> Result<String, String> {
    Ok(format!("test\n{size}\n{}\n", hex::encode(root)))
}

fn append(store: &LogStore, bytes: &[u8]) -> (u64, bool, Hash) {
    let out = store
        .append_batch(&[NewEntry::new(bytes.to_vec(), vec![])], &sign)
        .expect("append");
    let a = out.entries[0];
    (a.index, a.duplicate, a.leaf_hash)
}

/// Lowers a database to what schema 3 held: full leaf hashes, no claim index.
fn to_schema_3(path: &Path) {
    to_schema_5(path);
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("DROP TABLE claim_index; PRAGMA user_version = 3;")
        .expect("downgrade");
}

#[test]
fn an_upgraded_log_gets_claim_ids_for_the_entries_it_already_holds() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, _) = dev_nsm(dir.path());
    let path = dir.path().join("log.db");
    let first = entry(&nsm, 1);
    let second = entry(&nsm, 2);
    let store = LogStore::open(&path).expect("open");
    assert_eq!(append(&store, b"not an entry").0, 0);
    assert_eq!(append(&store, &first).0, 1);
    assert_eq!(append(&store, &second).0, 2);
    drop(store);
    to_schema_3(&path);

    // Opening migrates to 4 and computes the claim ids of the logged entries.
    let store = LogStore::open(&path).expect("migrate");
    let id = |e: &[u8]| entry_claim_id(e).expect("claim id");
    assert_eq!(store.find_claim(&id(&first)).expect("find"), Some(1));
    assert_eq!(store.find_claim(&id(&second)).expect("find"), Some(2));
    // So a twin of an entry logged before the upgrade is a duplicate of it.
    assert_eq!(append(&store, &twin(&first)), (1, true, leaf_hash(&first)));
    assert_eq!(
        append(&store, &twin(&second)),
        (2, true, leaf_hash(&second))
    );
    assert_eq!(store.tree_size(), 3);
    // Same bytes still dedup by leaf hash; a new claim is appended.
    assert_eq!(
        append(&store, b"not an entry"),
        (0, true, leaf_hash(b"not an entry"))
    );
    let third = entry(&nsm, 3);
    assert_eq!(append(&store, &third), (3, false, leaf_hash(&third)));
    assert_eq!(append(&store, &twin(&third)), (3, true, leaf_hash(&third)));
    let v: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, attestlog_server::storage::SCHEMA_VERSION);
}

#[test]
fn a_batch_holding_an_entry_and_its_twin_appends_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, _) = dev_nsm(dir.path());
    let store = LogStore::open(&dir.path().join("log.db")).expect("open");
    let e = entry(&nsm, 7);
    let batch = [
        NewEntry::new(twin(&e), vec![]),
        NewEntry::new(e.clone(), vec![]),
        NewEntry::new(twin(&e), vec![]),
    ];
    let out = store.append_batch(&batch, &sign).expect("append");
    let got: Vec<(u64, bool, Hash)> = out
        .entries
        .iter()
        .map(|a| (a.index, a.duplicate, a.leaf_hash))
        .collect();
    let logged = leaf_hash(&twin(&e));
    assert_eq!(
        got,
        vec![(0, false, logged), (0, true, logged), (0, true, logged)]
    );
    assert_eq!(out.tree_size, 1);
}

/// An entry a log accepted before the one-encoding rule (here a tagged
/// COSE_Sign1, smuggled straight into the store) is still served: raw bytes
/// as logged, and the JSON view names today's refusal in `decode_error`
/// instead of failing with a server error.
#[test]
fn entries_logged_under_laxer_rules_are_still_served() {
    use attestlog::tlog::note::NoteSigner;

    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("log");
    let signer = NoteSigner::generate(TEST_ORIGIN).expect("key");
    write_key(&data, &signer);
    let good = entry(&nsm, 1);
    let (_, tagged, code) = reencodings(&good).remove(0);
    assert_eq!(code, "tagged_envelope");
    smuggle(&data, &signer, &[tagged.clone(), entry(&nsm, 2)]);

    let server = Server::start(&data, &root, &[]);
    let client = Client::new();
    let raw = client
        .get(format!("{}/v1/entries/0", server.url))
        .send()
        .expect("get");
    assert_eq!(raw.status().as_u16(), 200);
    assert_eq!(raw.bytes().expect("body").as_ref(), &tagged[..]);
    let old = get_json(&client, format!("{}/v1/entries/0?format=json", server.url));
    assert_eq!(old["index"], 0);
    assert_eq!(old["decode_error"]["error"], "tagged_envelope", "{old}");
    assert!(old.get("statement").is_none());
    let new = get_json(&client, format!("{}/v1/entries/1?format=json", server.url));
    assert!(new.get("decode_error").is_none(), "{new}");
    assert!(new["statement"].is_object());
}
