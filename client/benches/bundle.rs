//! Bundle verifications/s: everything `attestlog verify` checks, on a
//! simulated-NSM entry in a 1,000-entry log with two witness cosignatures.

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use attestlog::nitro::sim::SimulatedNsm;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixtures::*;

fn bundle_verification(c: &mut Criterion) {
    let nsm = SimulatedNsm::generate(NOW_MS / 1000 - 3600).expect("nsm");
    let artifact = b"artifact".to_vec();
    let mut entries: Vec<Vec<u8>> = (0..999u32).map(|i| i.to_be_bytes().to_vec()).collect();
    entries.push(entry(&nsm, &artifact, &commit(1), &pcrs(10)));
    let log = TestLog::new(entries, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("root.pem"), nsm.root_pem()).expect("root");
    let policy =
        Policy::from_toml(&log.policy_toml("root.pem", &pcrs(10), 2), dir.path()).expect("policy");
    let bundle = log.bundle(999, 2);
    let digest = sha256(&artifact);
    let verifier = BundleVerifier::new(policy.clone());
    verifier.verify(&bundle, &digest).expect("valid bundle");

    let mut group = c.benchmark_group("bundle");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify (warm chain cache)", |b| {
        b.iter(|| verifier.verify(&bundle, &digest).expect("valid"))
    });
    group.bench_function("verify (new verifier each time)", |b| {
        b.iter(|| {
            BundleVerifier::new(policy.clone())
                .verify(&bundle, &digest)
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, bundle_verification);
criterion_main!(benches);
