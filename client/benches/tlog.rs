//! Throughput of the verifier hot paths: Merkle inclusion verification and
//! a checkpoint with two witness cosignatures.

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::cosignature::CosignatureSigner;
use attestlog::tlog::merkle::{inclusion_proof, leaf_hash, verify_inclusion, RootBuilder};
use attestlog::tlog::note::NoteSigner;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn inclusion(c: &mut Criterion) {
    // A 2^20-leaf tree: proofs of 20 hashes, from a synthetic hash source.
    let size = 1u64 << 20;
    let node = |level: u8, n: u64| -> Result<[u8; 32], std::convert::Infallible> {
        // Complete subtree roots computed on demand from synthetic leaves.
        let mut b = RootBuilder::new();
        let start = n << level;
        for i in start..start + (1u64 << level) {
            b.push(leaf_hash(&i.to_be_bytes()));
        }
        Ok(b.root())
    };
    let index = 123_456;
    let proof = inclusion_proof(index, size, node).expect("proof");
    let root = node(20, 0).expect("root");
    let leaf = leaf_hash(&index.to_be_bytes());
    verify_inclusion(index, size, &leaf, &proof, &root).expect("verifies");
    c.bench_function("verify_inclusion (2^20 leaves)", |b| {
        b.iter(|| verify_inclusion(black_box(index), size, &leaf, black_box(&proof), &root))
    });
}

fn checkpoint(c: &mut Criterion) {
    let log = NoteSigner::from_seed("example.com/log", [1; 32]).expect("log key");
    let ws: Vec<_> = (0..2u8)
        .map(|i| CosignatureSigner::from_seed(&format!("w{i}.example"), [i + 2; 32]).expect("w"))
        .collect();
    let body = Checkpoint {
        origin: "example.com/log".into(),
        size: 1 << 20,
        root_hash: [7; 32],
        extensions: vec![],
    }
    .to_body();
    let mut note = log.sign(&body).expect("sign");
    for w in &ws {
        note.push_str(&w.cosign(&body, 1_700_000_000).expect("cosign"));
    }
    let log_key = log.verifier_key().expect("vkey");
    let wkeys: Vec<_> = ws.iter().map(|w| w.verifier_key()).collect();
    verify_checkpoint(&note, &log_key, &wkeys, 2).expect("verifies");
    c.bench_function("verify_checkpoint (log + 2 cosignatures)", |b| {
        b.iter(|| verify_checkpoint(black_box(&note), &log_key, &wkeys, 2))
    });
}

criterion_group!(benches, inclusion, checkpoint);
criterion_main!(benches);
