//! `/v1/search` beyond one page and by repository, against a real server:
//! 1,003 real entries (simulated NSM) from one repository; the first page
//! holds 1,000 indices and names where the next starts (`next_after`), the
//! next page holds the rest; every spelling of the repository URI that
//! policies treat as the same finds the same entries; bad parameters are
//! 400 `bad_parameter`.

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::Value;

const ENTRIES: u64 = 1_003;

fn search(client: &Client, url: &str, query: &str) -> (u16, Value) {
    let resp = client
        .get(format!("{url}/v1/search?{query}"))
        .send()
        .expect("GET /v1/search");
    let status = resp.status().as_u16();
    (status, resp.json().expect("JSON answer"))
}

#[test]
fn search_pages_past_the_cap_and_finds_by_repository() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let server = Server::start(&dir.path().join("data"), &root, &[]);
    let entries: Vec<Vec<u8>> = (0..ENTRIES).map(|n| entry(&nsm, n)).collect();
    // Submitted from 16 threads so batches form; each answer is awaited.
    std::thread::scope(|s| {
        for chunk in entries.chunks(entries.len().div_ceil(16)) {
            let url = server.url.clone();
            s.spawn(move || {
                let client = Client::new();
                for e in chunk {
                    let (status, answer) = submit_to(&client, &url, e).expect("submit");
                    assert_eq!(status, 200, "{answer}");
                }
            });
        }
    });
    let client = Client::new();
    let url = server.url.as_str();

    let (status, first) = search(&client, url, "repository=https://example.com/repo");
    assert_eq!(status, 200, "{first}");
    let page: Vec<u64> = serde_json::from_value(first["indices"].clone()).expect("indices");
    assert_eq!(page, (0..1000).collect::<Vec<u64>>());
    assert_eq!(first["next_after"], 999);
    let (_, second) = search(
        &client,
        url,
        "repository=https://example.com/repo&after=999",
    );
    assert_eq!(second["indices"], serde_json::json!([1000, 1001, 1002]));
    assert_eq!(second["next_after"], Value::Null);

    // The URI as the statement writes it, and with a trailing slash.
    for spelling in [
        "git%2Bhttps://example.com/repo.git",
        "https://example.com/repo/",
        "https://example.com/repo.git",
    ] {
        let (_, v) = search(&client, url, &format!("repository={spelling}&after=1001"));
        assert_eq!(v["indices"], serde_json::json!([1002]), "{spelling}");
    }
    let (_, v) = search(&client, url, "repository=https://example.com/other");
    assert_eq!(v["indices"], serde_json::json!([]));
    // The other kinds page the same way (every entry has the same PCR0).
    let pcr0 = hex::encode(&pcrs(1)[&0]);
    let (_, v) = search(&client, url, &format!("pcr0={pcr0}&after=1000"));
    assert_eq!(v["indices"], serde_json::json!([1001, 1002]));

    for bad in [
        "repository=",
        "after=5",
        "repository=x&pcr0=00",
        "repository=x&after=-1",
        &format!("repository={}", "a".repeat(4097)),
    ] {
        let (status, v) = search(&client, url, bad);
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("bad_parameter")),
            "{bad}: {v}"
        );
    }
}
