//! Attestation verifications per second on a real AWS document
//! (nitro-validator-2026-01-03.cbor at its manifest `verify_at_unix`), with a cold chain
//! (`NitroVerifier::without_cache`: 4 certificate signatures + COSE every time) and with
//! the chain cache (leaf certificate signature + COSE). Also parse alone.
//!
//! Reads ../shared like the tests (env ATTESTLOG_SHARED); skips when it is missing.

use std::hint::black_box;
use std::path::PathBuf;

use attestlog::nitro::{AttestationDocument, NitroVerifier, TrustRoots, VerifyTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SAMPLE: &str = "nitro-validator-2026-01-03.cbor";
const VERIFY_AT: u64 = 1_767_472_867;

fn sample() -> Option<Vec<u8>> {
    let dir = std::env::var_os("ATTESTLOG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    match std::fs::read(dir.join("nitro-samples").join(SAMPLE)) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!("skipped: ../shared not found (set ATTESTLOG_SHARED)");
            None
        }
    }
}

fn bench(c: &mut Criterion) {
    let Some(doc) = sample() else { return };
    let at = VerifyTime::UnixSeconds(VERIFY_AT);
    let cold = NitroVerifier::without_cache(TrustRoots::aws());
    let cached = NitroVerifier::new(TrustRoots::aws());
    cold.verify(&doc, at).expect("sample verifies");
    cached.verify(&doc, at).expect("sample verifies");

    let mut group = c.benchmark_group("attestation");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| {
        b.iter(|| AttestationDocument::parse(black_box(&doc)).is_ok())
    });
    group.bench_function("verify_cold_chain", |b| {
        b.iter(|| cold.verify(black_box(&doc), at).is_ok())
    });
    group.bench_function("verify_cached_chain", |b| {
        b.iter(|| cached.verify(black_box(&doc), at).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
